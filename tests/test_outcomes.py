"""The outcomes job counts what each version and arm achieved by cohort month, with intervals that say when a
difference may be noise."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from debt_collection.advance import advance_collections
from loans.models import Arm, PolicyAssignment, PolicyVersion
from strategy.models import OutcomeFigure
from strategy.outcomes import compute_outcomes, run_outcomes
from strategy.stats import overlaps, wilson

from .factories import make_tier
from .factories_collections import (
    DUE,
    count_queries,
    day,
    make_ladder,
    make_overdue_loan,
    overdue_templates,
    pay,
)
from .factories_operator import make_log

pytestmark = pytest.mark.django_db
Metric = OutcomeFigure.Metric


def figure(metric, **filters) -> tuple[int, int]:
    rows = OutcomeFigure.objects.filter(metric=metric, **filters)
    return sum(r.numerator for r in rows), sum(r.denominator for r in rows)


def test_the_wilson_interval_holds_small_counts_inside_zero_and_one():
    low, high = wilson(5, 10)
    assert round(low, 4) == 0.2366 and round(high, 4) == 0.7634
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.27 < high < 0.28
    assert wilson(0, 0) is None
    assert overlaps(wilson(5, 10), wilson(6, 10)) and not overlaps(wilson(1, 100), wilson(60, 100))


def test_it_counts_payments_by_the_due_date_and_within_7_and_30_days_and_cures():
    overdue_templates()
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(3, "early", "sms", "overdue")])
    on_time, late, never = (make_overdue_loan(tier) for _ in range(3))
    pay(on_time, Decimal("500.00"), day(-1))
    advance_collections(day(3))
    pay(late, Decimal("500.00"), day(5))

    result = run_outcomes(day(40))

    assert result["figures"] > 0
    assert figure(Metric.PAID_BY_DUE, tier=tier) == (1, 3)
    assert figure(Metric.PAID_WITHIN_7, tier=tier) == (2, 3)
    assert figure(Metric.PAID_WITHIN_30, tier=tier) == (2, 3)
    assert figure(Metric.CURE, tier=tier) == (1, 2)
    cohorts = set(OutcomeFigure.objects.filter(tier=tier).values_list("cohort", flat=True))
    assert cohorts == {DUE.replace(day=1)}
    assert {r.arm for r in OutcomeFigure.objects.filter(tier=tier)} == {"champion"}
    cure = OutcomeFigure.objects.get(tier=tier, metric=Metric.CURE)
    assert cure.policy_version.tier == tier


def test_running_it_again_replaces_the_figures():
    tier = make_tier()
    make_overdue_loan(tier)
    run_outcomes(day(40))
    first = OutcomeFigure.objects.count()

    run_outcomes(day(41))

    assert OutcomeFigure.objects.count() == first
    assert set(OutcomeFigure.objects.values_list("computed_at", flat=True)) == {day(41)}


def test_a_figure_whose_horizon_has_not_passed_counts_nothing_yet():
    tier = make_tier()
    make_overdue_loan(tier)

    run_outcomes(day(3))

    assert figure(Metric.PAID_BY_DUE, tier=tier) == (0, 1)
    assert figure(Metric.PAID_WITHIN_7, tier=tier) == (0, 0)
    assert dt.date(2026, 12, 1) == DUE


def test_the_job_runs_the_same_queries_whatever_the_size_of_the_book():
    overdue_templates()
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(3, "early", "sms", "overdue"), (5, "call", "call_task", "")])

    def grow(n):
        loans = [make_overdue_loan(tier) for _ in range(n)]
        advance_collections(day(3 * n))
        pay(loans[0], Decimal("500.00"), day(3 * n + 1))

    grow(1)
    small, _ = count_queries(compute_outcomes, day(40))
    small_run, _ = count_queries(run_outcomes, day(40))
    grow(6)
    large, figures = count_queries(compute_outcomes, day(40))
    large_run, _ = count_queries(run_outcomes, day(40))

    assert figure(Metric.CURE, tier=tier)[0] == 2  # the larger book was counted
    assert len(figures) > 0
    # instalments (every instalment figure in one query), promises, contacts, calls
    assert (small, large) == (4, 4)
    assert small_run == large_run


def test_an_instalment_counts_under_its_first_contacts_version_and_its_customers_latest_arm():
    tier = make_tier()
    v1 = PolicyVersion.objects.filter(tier=tier).order_by("-number").first()
    v2 = PolicyVersion.objects.create(
        tier=tier,
        number=v1.number + 1,
        grace_period_days=v1.grace_period_days,
        max_contacts_per_week=v1.max_contacts_per_week,
        channel_order=v1.channel_order,
        created_at=day(-30),
        created_by="test",
        reason="test",
    )
    contacted, silent = make_overdue_loan(tier), make_overdue_loan(tier)
    instalment = contacted.installments.get()
    make_log(contacted.customer, installments=[instalment], tier=tier, policy_version=v2)  # the first
    make_log(contacted.customer, installments=[instalment], tier=tier, policy_version=v1)
    for seed, arm, at in (("s1", Arm.CHALLENGER, day(-20)), ("s2", Arm.HOLDOUT, day(-10))):
        PolicyAssignment.objects.create(
            customer=contacted.customer, tier=tier, seed=seed, arm=arm, policy_version=v1, assigned_at=at
        )

    run_outcomes(day(40))

    rows = OutcomeFigure.objects.filter(metric=Metric.PAID_BY_DUE)
    assert {(r.policy_version_id, r.arm, r.denominator) for r in rows} == {
        (v2.pk, Arm.HOLDOUT, 1),
        (None, Arm.CHAMPION, 1),
    }
    assert silent.customer.policy_assignments.count() == 0
