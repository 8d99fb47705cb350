"""An instalment knows its own standing: its state, days past due and end of grace, in its customer's calendar
and with its tier's grace period (a customer without a tier has the product's default of 3 days)."""

from __future__ import annotations

import datetime as dt

import pytest

from loans.schedule import DEFAULT_GRACE_PERIOD_DAYS, DpdBucket, InstallmentState

from .factories import make_customer, make_installment, make_loan, make_tier

pytestmark = pytest.mark.django_db

DUE = dt.date(2026, 12, 1)


def instalment(*, tier=None, timezone="Asia/Shanghai", **kwargs):
    customer = make_customer(tier=tier, timezone=timezone) if tier else make_customer(timezone=timezone)
    return make_installment(make_loan(customer), due_date=DUE, **kwargs)


def test_it_walks_from_upcoming_to_overdue_through_the_tiers_grace_period():
    inst = instalment(tier=make_tier(grace_period_days=5))

    assert inst.state(DUE - dt.timedelta(days=1)) == InstallmentState.UPCOMING
    assert inst.state(DUE) == InstallmentState.DUE
    assert inst.state(DUE + dt.timedelta(days=5)) == InstallmentState.GRACE
    assert inst.state(DUE + dt.timedelta(days=6)) == InstallmentState.OVERDUE
    assert inst.grace_end(inst.loan.customer.tier) == DUE + dt.timedelta(days=5)


def test_it_gives_a_customer_without_a_tier_the_default_grace_period():
    inst = instalment()

    assert DEFAULT_GRACE_PERIOD_DAYS == 3
    assert inst.grace_end(None) == DUE + dt.timedelta(days=3)
    assert inst.state(DUE + dt.timedelta(days=3)) == InstallmentState.GRACE
    assert inst.state(DUE + dt.timedelta(days=4)) == InstallmentState.OVERDUE


def test_it_counts_days_past_due_in_the_customers_calendar():
    inst = instalment(timezone="America/Los_Angeles")
    # 2 December 06:00 UTC is still 1 December in Los Angeles, and 2 December in Shanghai.
    moment = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)

    assert inst.days_past_due(moment) == 0
    assert inst.state(moment) == InstallmentState.DUE
    assert instalment(timezone="Asia/Shanghai").days_past_due(moment) == 1


def test_a_paid_instalment_is_paid_and_not_past_due_whatever_the_day():
    inst = instalment(paid_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    later = DUE + dt.timedelta(days=45)

    assert inst.state(later) == InstallmentState.PAID
    assert inst.days_past_due(later) == 0
    assert inst.dpd_bucket(later) == DpdBucket.CURRENT


def test_it_buckets_days_past_due():
    inst = instalment()

    assert inst.dpd_bucket(DUE) == DpdBucket.CURRENT
    assert inst.dpd_bucket(DUE + dt.timedelta(days=30)) == DpdBucket.B1_30
    assert inst.dpd_bucket(DUE + dt.timedelta(days=31)) == DpdBucket.B31_60
    assert inst.dpd_bucket(DUE + dt.timedelta(days=91)) == DpdBucket.B90_PLUS
