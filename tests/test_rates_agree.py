"""The dashboard and the outcomes job count cure, roll and promise-kept by one definition each: on a book where
the dashboard's window and an outcome cohort hold the same rows, both show the same figure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.cache import cache

from backoffice.dashboard import dashboard_figures
from debt_collection.models import CollectionCase, PromiseToPay
from strategy.models import OutcomeFigure
from strategy.outcomes import run_outcomes
from tests.factories import make_customer, make_installment, make_loan, make_tier
from tests.factories_operator import local

pytestmark = pytest.mark.django_db
Metric = OutcomeFigure.Metric
TODAY = dt.date(2026, 6, 15)
ROLLS = {1: ("1-30", Metric.ROLL_1_30), 31: ("31-60", Metric.ROLL_31_60), 61: ("61-90", Metric.ROLL_61_90)}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def outcome(metric) -> tuple[int, int]:
    rows = OutcomeFigure.objects.filter(metric=metric)
    return sum(r.numerator for r in rows), sum(r.denominator for r in rows)


def book_entering_bucket_on_snapshot(first_dpd: int):
    """Instalments of one tier, all due the day that puts them at ``first_dpd`` days past due 30 days ago (the
    dashboard's snapshot), so the dashboard's bucket then and the outcome cohort's bucket hold the same rows."""
    tier = make_tier(code="A")
    due = TODAY - dt.timedelta(days=first_dpd + 30)
    paid_after = [0, first_dpd, first_dpd + 5, first_dpd + 30, None, None]
    for days in paid_after:
        paid = (
            {}
            if days is None
            else {"paid_at": local(due + dt.timedelta(days=days)), "amount_paid": Decimal(500)}
        )
        make_installment(make_loan(make_customer(tier=tier)), due_date=due, amount_due=Decimal(500), **paid)
    return tier


@pytest.mark.parametrize("first_dpd", sorted(ROLLS))
def test_the_dashboard_and_the_outcomes_count_roll_and_cure_alike(first_dpd):
    book_entering_bucket_on_snapshot(first_dpd)

    run_outcomes(local(TODAY, 20))
    board = dashboard_figures(TODAY)

    bucket, metric = ROLLS[first_dpd]
    roll = next(r for r in board["roll_rates"] if r["from_bucket"] == bucket)
    # Paid on the day it entered the bucket: never in it at the day's end; a week later or on the 30th day:
    # in it, not rolled; never paid: rolled.
    assert (roll["rolled"], roll["base"]) == (2, 4)
    assert outcome(metric) == (2, 4)
    if first_dpd + 30 <= 90:  # inside the dashboard's cure window
        (cure,) = board["cure_rates"]
        assert (cure["cured"], cure["overdue"]) == (3, 5)
        assert outcome(Metric.CURE) == (3, 5)


def test_the_dashboard_and_the_outcomes_count_kept_promises_alike():
    tier = make_tier(code="A")
    opened = local(TODAY - dt.timedelta(days=40))
    for status, days_ago in (("kept", 5), ("kept", 20), ("broken", 10), ("pending", 2)):
        loan = make_loan(make_customer(tier=tier))
        case = CollectionCase.objects.create(
            loan=loan,
            tier=tier,
            opened_at=opened,
            oldest_due_date=TODAY - dt.timedelta(days=45),
            stage="call",
        )
        PromiseToPay.objects.create(
            case=case,
            amount=Decimal("100.00"),
            promised_date=TODAY - dt.timedelta(days=days_ago),
            status=status,
            created_at=opened,
        )

    run_outcomes(local(TODAY, 20))
    promises = dashboard_figures(TODAY)["morning"]["promises"]

    assert (promises["kept"], promises["resolved"]) == (2, 3)
    assert outcome(Metric.PROMISE_KEPT) == (2, 3)
