"""Champion/challenger tests: starting a challenger (a proposed policy run beside the tier's current one on a
share of its customers, with a holdout share that gets no pre-due reminders), assigning customers to arms
(stable per customer, recorded), and promoting the challenger (one audited action).

The arms change what is planned, never a gate: every contact of every arm goes through the same send-time gates
(window, weekly cap, opt-outs, do-not-contact, legal hold, paid...), and the holdout loses only the reminders
before the due date; due-day and grace reminders and every collections step still go out.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from core.audit import Event, about, actor_name, log_event, log_events
from loans.arms import arm_for
from loans.models import Arm, CreditTier, Customer, Loan, PolicyAssignment, PolicyExperiment, PolicyVersion
from loans.policy_changes import policy_change

from .policy import Policy, write_policy
from .versions import policy_of_version, record_versions, version_fields

ASSIGN_ACTOR = "job:assign_arms"
ASSIGN_BATCH = 5000


def start_test(
    tier: CreditTier,
    *,
    challenger: Policy | None,
    challenger_share: Decimal,
    holdout_share: Decimal,
    actor: Any,
    reason: str,
    at: dt.datetime,
) -> PolicyExperiment:
    """Start (or restart) the tier's test: ``challenger`` (None: no challenger, a holdout only) is stored as a
    proposal version; a new seed puts every customer in an arm afresh. A challenger may differ from the champion
    in its reminder rules and ladder only: the grace period, the weekly cap and the channel order are the tier's,
    read by the gates for every arm. Raises ValidationError for shares outside 0..1 together or a challenger
    that changes what only the tier holds. Writes ``strategy.policy_version.created`` for the proposal and
    ``strategy.test.started``."""
    actor = actor_name(actor)
    challenger_share, holdout_share = Decimal(challenger_share), Decimal(holdout_share)
    if challenger_share < 0 or holdout_share < 0 or challenger_share + holdout_share > 1:
        raise ValidationError(_("The challenger and holdout shares are between 0 and 1 together."))
    if challenger is None and challenger_share:
        raise ValidationError(_("A challenger share needs a challenger policy."))
    with transaction.atomic():
        record_versions(at=at, actor=actor, reason=reason, tier_ids=[tier.pk])
        champion = Policy.of(tier)
        proposal = None
        if challenger is not None:
            same = ("grace_period_days", "max_contacts_per_week", "channel_order")
            if any(getattr(challenger, f) != getattr(champion, f) for f in same):
                raise ValidationError(
                    _(
                        "A challenger differs from the champion in its reminder rules and ladder only: the "
                        "grace period, weekly cap and channel order are the tier's."
                    )
                )
            number = PolicyVersion.objects.filter(tier=tier).aggregate(n=Max("number"))["n"] or 0
            proposal = PolicyVersion.objects.create(
                tier=tier,
                number=number + 1,
                created_at=at,
                created_by=actor,
                reason=reason[:300],
                is_proposal=True,
                **version_fields(challenger),
            )
            log_event(
                "strategy.policy_version.created",
                actor=actor,
                obj=proposal,
                at=at,
                after={
                    "tier_id": tier.pk,
                    "number": proposal.number,
                    "is_proposal": True,
                    "reason": proposal.reason,
                    "rules": proposal.rules,
                    "ladder": proposal.ladder,
                },
            )
        test, _created = PolicyExperiment.objects.update_or_create(
            tier=tier,
            defaults={
                "challenger": proposal,
                "challenger_share": challenger_share if proposal else Decimal("0"),
                "holdout_share": holdout_share,
                "seed": secrets.token_hex(8),
                "updated_at": at,
                "updated_by": actor,
            },
        )
        log_event(
            "strategy.test.started",
            actor=actor,
            obj=test,
            at=at,
            after={
                "tier_id": tier.pk,
                "challenger_version_id": test.challenger_id,
                "challenger_share": test.challenger_share,
                "holdout_share": test.holdout_share,
                "seed": test.seed,
                "reason": reason,
            },
        )
    return test


def assign_arms(
    now: dt.datetime,
    *,
    customer_ids: Iterable[int] | None = None,
    customer_id_range: tuple[int, int] | None = None,
) -> dict:
    """Put every customer of a tier under test (of ``customer_ids``, of a chunk ``customer_id_range``) who has an active loan and no arm yet in its arm
    (``loans.arms.arm_for``), recorded as a ``PolicyAssignment`` with the version that arm follows. Set-based:
    a few queries per ``ASSIGN_BATCH`` customers; safe to run twice (a customer's row for a test is unique).
    Writes one ``strategy.arms.assigned`` event per tier with the counts. Returns counts."""
    tests = {t.tier_id: t for t in PolicyExperiment.objects.all() if t.is_running}
    if not tests:
        return {}
    champions = PolicyVersion.objects.latest_ids(tests)
    counts: dict[str, int] = {}
    for tier_id, test in sorted(tests.items()):
        customers = Customer.objects.filter(tier_id=tier_id, loans__status=Loan.Status.ACTIVE).exclude(
            policy_assignments__tier_id=tier_id, policy_assignments__seed=test.seed
        )
        if customer_ids is not None:
            customers = customers.filter(id__any_of=list(customer_ids))
        if customer_id_range is not None:
            customers = customers.filter(id__gte=customer_id_range[0], id__lt=customer_id_range[1])
        ids = sorted(set(customers.values_list("id", flat=True)))
        by_arm: dict[str, int] = {}
        for start in range(0, len(ids), ASSIGN_BATCH):
            rows = []
            for customer_id in ids[start : start + ASSIGN_BATCH]:
                arm = arm_for(customer_id, test.seed, test.challenger_share, test.holdout_share)
                version = test.challenger_id if arm == Arm.CHALLENGER else champions.get(tier_id)
                rows.append(
                    PolicyAssignment(
                        customer_id=customer_id,
                        tier_id=tier_id,
                        seed=test.seed,
                        arm=arm,
                        policy_version_id=version,
                        assigned_at=now,
                    )
                )
                by_arm[arm] = by_arm.get(arm, 0) + 1
            PolicyAssignment.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        if by_arm:
            log_events(
                [
                    Event(
                        action="strategy.arms.assigned",
                        actor=ASSIGN_ACTOR,
                        **about(PolicyExperiment, test.pk),
                        at=now,
                        after={"tier_id": tier_id, "seed": test.seed, "customers": by_arm},
                    )
                ]
            )
            for arm, n in by_arm.items():
                counts[arm] = counts.get(arm, 0) + n
    return counts


def promote_challenger(tier: CreditTier, *, actor: Any, at: dt.datetime, reason: str = "") -> PolicyVersion:
    """Make the tier's challenger its policy: the challenger's rules and ladder are written over the tier's saved
    ones, which records the next version (saved by ``actor``, "promoted challenger vN"); the test ends its
    challenger arm (the holdout stays). Open cases keep the version they opened under. One transaction, one
    ``strategy.challenger.promoted`` event naming both versions. Raises ValidationError without a challenger."""
    actor = actor_name(actor)
    with transaction.atomic():
        test = PolicyExperiment.objects.select_for_update().filter(tier=tier).first()
        if test is None or test.challenger_id is None:
            raise ValidationError(_("This tier has no challenger to promote."))
        challenger = test.challenger
        previous = PolicyVersion.objects.latest_ids([tier.pk]).get(tier.pk)
        why = reason or _("promoted challenger v%(n)s") % {"n": challenger.number}
        with policy_change(actor, why, at):
            write_policy(tier, policy_of_version(challenger))
        champion = PolicyVersion.objects.get(pk=PolicyVersion.objects.latest_ids([tier.pk])[tier.pk])
        PolicyExperiment.objects.filter(pk=test.pk).update(
            challenger=None, challenger_share=Decimal("0"), updated_at=at, updated_by=actor
        )
        log_event(
            "strategy.challenger.promoted",
            actor=actor,
            obj=test,
            at=at,
            before={"champion_version_id": previous, "challenger_version_id": challenger.pk},
            after={"champion_version_id": champion.pk, "reason": why},
        )
    return champion
