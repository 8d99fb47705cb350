"""A tier runs a challenger beside its champion on a share of its customers and keeps a holdout that gets no
pre-due reminders; arms are stable per customer, recorded, and never break a gate; promotion is one audited
action."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.models import EscalationStep
from loans.arms import arm_for
from loans.models import PolicyAssignment, PolicyExperiment, PolicyVersion
from notifications.models import NotificationLog, ReminderRule
from strategy.engine import plan
from strategy.experiments import assign_arms, promote_challenger, start_test
from strategy.policy import Policy, RuleSpec, StepSpec
from strategy.versions import policy_of_version

from .factories import make_tier
from .factories_collections import day, make_ladder, make_overdue_loan, open_case, overdue_templates
from .factories_reminders import SHANGHAI, local, make_debtor, make_rule

pytestmark = pytest.mark.django_db
DUE = dt.date(2026, 12, 1)
NOW = local(SHANGHAI, 2026, 11, 20, 9)


def challenger_of(tier, **changes) -> Policy:
    return Policy.of(tier).changed(**changes)


def one_customer_per_arm(tier, test, make=make_debtor):
    """Customers of ``tier`` made until each arm has one (arms are a hash of the id and the seed)."""
    found = {}
    for _ in range(60):
        customer = make(tier)
        arm = arm_for(customer.pk, test.seed, test.challenger_share, test.holdout_share)
        found.setdefault(arm, customer)
        if len(found) == 3:
            return found
    raise AssertionError("no customer in some arm")


def test_an_arm_is_fixed_by_the_customer_and_the_seed_and_follows_the_shares():
    arms = [arm_for(n, "seed-1", Decimal("0.2"), Decimal("0.1")) for n in range(1, 10001)]

    assert arms == [arm_for(n, "seed-1", Decimal("0.2"), Decimal("0.1")) for n in range(1, 10001)]
    assert 0.08 < arms.count("holdout") / 10000 < 0.12
    assert 0.18 < arms.count("challenger") / 10000 < 0.22
    assert arms != [arm_for(n, "seed-2", Decimal("0.2"), Decimal("0.1")) for n in range(1, 10001)]


def test_each_customer_is_assigned_once_and_the_assignment_is_recorded_with_its_version():
    tier = make_tier()
    make_rule(tier, -3)
    test = start_test(
        tier,
        challenger=challenger_of(tier, rules=(RuleSpec(-1, "sms", "pre_due", dt.time(9, 0)),)),
        challenger_share=Decimal("0.4"),
        holdout_share=Decimal("0.3"),
        actor="ops",
        reason="does the day-before SMS beat three days before?",
        at=NOW,
    )
    customers = one_customer_per_arm(tier, test, lambda t: make_debtor(t, due_date=DUE)[0])

    first = assign_arms(NOW)
    again = assign_arms(NOW + dt.timedelta(days=1))

    assert sum(first.values()) == PolicyAssignment.objects.count() and again == {}
    champion = PolicyVersion.objects.latest_ids([tier.pk])[tier.pk]
    for arm, customer in customers.items():
        row = PolicyAssignment.objects.get(customer=customer)
        assert row.arm == arm and row.seed == test.seed
        assert row.policy_version_id == (test.challenger_id if arm == "challenger" else champion)
    assert AuditEvent.objects.filter(action="strategy.arms.assigned").count() == 1
    started = AuditEvent.objects.get(action="strategy.test.started")
    assert started.actor == "ops" and started.after["challenger_version_id"] == test.challenger_id


def test_the_holdout_gets_no_pre_due_reminder_but_its_due_day_one_and_the_challenger_its_own_rules():
    tier = make_tier()
    make_rule(tier, -3)
    make_rule(tier, 0)
    test = start_test(
        tier,
        challenger=challenger_of(
            tier,
            rules=(
                RuleSpec(-2, "sms", "pre_due", dt.time(10, 0)),
                RuleSpec(0, "sms", "due_today", dt.time(10, 0)),
            ),
        ),
        challenger_share=Decimal("0.34"),
        holdout_share=Decimal("0.33"),
        actor="ops",
        reason="test",
        at=NOW,
    )
    arms = one_customer_per_arm(tier, test, lambda t: make_debtor(t, due_date=DUE)[0])

    for n in (28, 29, 30):
        plan(local(SHANGHAI, 2026, 11, n, 1))
    plan(local(SHANGHAI, 2026, 12, 1, 1))

    def planned(customer):
        return sorted(
            NotificationLog.objects.filter(customer=customer).values_list("offset_days", "policy_version")
        )

    champion = PolicyVersion.objects.latest_ids([tier.pk])[tier.pk]
    assert planned(arms["champion"]) == [(-3, champion), (0, champion)]
    assert planned(arms["holdout"]) == [(0, champion)]
    assert planned(arms["challenger"]) == [(-2, test.challenger_id), (0, test.challenger_id)]


def test_the_holdout_still_gets_every_collections_step_and_a_challenger_case_walks_the_challengers_ladder():
    overdue_templates()
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(3, "early", "sms", "overdue")])
    test = start_test(
        tier,
        challenger=challenger_of(tier, ladder=(StepSpec(3, "email", "early", "overdue"),)),
        challenger_share=Decimal("0.34"),
        holdout_share=Decimal("0.33"),
        actor="ops",
        reason="email first",
        at=day(0),
    )
    arms = one_customer_per_arm(tier, test, lambda t: make_overdue_loan(t).customer)
    assign_arms(day(1))

    advance_collections(day(3))

    def ladder_channels(customer):
        return list(
            NotificationLog.objects.filter(customer=customer, dedupe_key__startswith="case:").values_list(
                "channel", flat=True
            )
        )

    assert ladder_channels(arms["holdout"]) == ["sms"] and ladder_channels(arms["champion"]) == ["sms"]
    assert ladder_channels(arms["challenger"]) == ["email"]
    case = open_case(arms["challenger"].loans.get())
    assert case.policy_version_id == test.challenger_id


def test_a_challenger_contact_still_passes_every_gate():
    from notifications.dispatch import dispatch_due

    from .factories_reminders import make_template

    make_template("pre_due", "sms", "zh-hans")
    tier = make_tier()
    make_rule(tier, -3)
    test = start_test(
        tier,
        challenger=challenger_of(tier, rules=(RuleSpec(-3, "sms", "pre_due", dt.time(10, 0)),)),
        challenger_share=Decimal("1"),
        holdout_share=Decimal("0"),
        actor="ops",
        reason="all in",
        at=NOW,
    )
    customer, _ = make_debtor(tier, due_date=DUE, do_not_contact=True, do_not_contact_reason="dispute")

    plan(local(SHANGHAI, 2026, 11, 28, 1))
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 12))

    log = NotificationLog.objects.get(customer=customer)
    assert log.policy_version_id == test.challenger_id
    assert (log.status, log.reason) == ("suppressed", "do_not_contact")


def test_a_challenger_may_not_change_the_tiers_cap_grace_or_channel_order():
    tier = make_tier(max_contacts_per_week=3)

    with pytest.raises(ValidationError):
        start_test(
            tier,
            challenger=challenger_of(tier, max_contacts_per_week=9),
            challenger_share=Decimal("0.5"),
            holdout_share=Decimal("0"),
            actor="ops",
            reason="more",
            at=NOW,
        )
    with pytest.raises(ValidationError):
        start_test(
            tier,
            challenger=None,
            challenger_share=Decimal("0.5"),
            holdout_share=Decimal("0.6"),
            actor="ops",
            reason="",
            at=NOW,
        )
    assert not PolicyExperiment.objects.exists()


def test_promoting_the_challenger_is_one_audited_action_that_makes_it_the_tiers_policy():
    tier = make_tier()
    make_rule(tier, -3)
    EscalationStep.objects.create(tier=tier, min_dpd=5, stage="early", action="sms", kind="overdue")
    proposal = challenger_of(
        tier,
        rules=(RuleSpec(-1, "sms", "pre_due", dt.time(9, 0)),),
        ladder=(StepSpec(5, "email", "early", "overdue"),),
    )
    test = start_test(
        tier,
        challenger=proposal,
        challenger_share=Decimal("0.5"),
        holdout_share=Decimal("0.1"),
        actor="ops",
        reason="trial",
        at=NOW,
    )
    before = PolicyVersion.objects.latest_ids([tier.pk])[tier.pk]

    champion = promote_challenger(tier, actor="lead", at=NOW + dt.timedelta(days=30))

    assert champion.pk != before and not champion.is_proposal
    assert policy_of_version(champion) == policy_of_version(test.challenger) == Policy.of(tier)
    assert list(
        ReminderRule.objects.filter(tier=tier, is_active=True).values_list("offset_days", flat=True)
    ) == [-1]
    test.refresh_from_db()
    assert test.challenger is None and test.holdout_share == Decimal("0.1")
    event = AuditEvent.objects.get(action="strategy.challenger.promoted")
    assert event.actor == "lead"
    assert event.before == {
        "champion_version_id": before,
        "challenger_version_id": proposal and champion.pk - 1,
    }
    assert event.after["champion_version_id"] == champion.pk
    with pytest.raises(ValidationError):
        promote_challenger(tier, actor="lead", at=NOW)


def test_promoting_a_challenger_that_only_drops_a_rule_still_records_the_next_version():
    tier = make_tier()
    make_rule(tier, -3)
    make_rule(tier, -1)
    proposal = challenger_of(tier, rules=(RuleSpec(-3, "sms", "pre_due", dt.time(10, 0)),))
    start_test(
        tier,
        challenger=proposal,
        challenger_share=Decimal("0.5"),
        holdout_share=Decimal("0"),
        actor="ops",
        reason="one less",
        at=NOW,
    )

    champion = promote_challenger(tier, actor="lead", at=NOW)

    assert champion.rules == [[-3, "sms", "pre_due", "10:00"]] and champion.created_by == "lead"
    assert Policy.of(tier) == policy_of_version(champion)
