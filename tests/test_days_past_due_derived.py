"""A case's days past due are counted when read, from the date of its oldest instalment past due: the daily run
writes nothing to a case on a day nothing happened to it, a payment of the oldest instalment moves the date, and
a closed case keeps the days past due it closed at."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from debt_collection.advance import advance_collections
from debt_collection.models import CollectionCase

from .factories import make_tier
from .factories_collections import DUE, day, make_collector, make_ladder, make_overdue_loan, open_tasks, pay

pytestmark = pytest.mark.django_db


def case_of(loan) -> CollectionCase:
    return CollectionCase.objects.select_related("loan__customer").filter(loan=loan).latest("opened_at")


@pytest.fixture
def tier():
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(1, "call", "call_task", "")])
    make_collector("ann")
    return tier


def test_it_counts_days_past_due_from_the_oldest_due_date_when_read(tier):
    loan = make_overdue_loan(tier)
    advance_collections(day(3))

    case = case_of(loan)
    assert case.oldest_due_date == DUE
    assert case.days_past_due(day(3)) == 3 and case.days_past_due(day(45)) == 45
    assert case.dpd_bucket(day(45)) == "31-60"
    # A date is taken as the customer's day.
    assert case.days_past_due(DUE + dt.timedelta(days=10)) == 10


def test_the_daily_run_writes_nothing_to_a_case_on_a_day_nothing_happened_to_it(tier):
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    before = case_of(loan)
    task = open_tasks(loan)[0]

    with CaptureQueriesContext(connection) as ctx:
        advance_collections(day(4))

    writes = [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert not any("collections_collectioncase" in sql for sql in writes)
    assert not any(
        "collections_calltask" in sql for sql in writes
    )  # the queue's order needs no daily rewrite
    after = case_of(loan)
    assert after.updated_at == before.updated_at and after.days_past_due(day(4)) == 4
    assert open_tasks(loan)[0].priority == task.priority


def test_a_payment_of_the_oldest_instalment_moves_the_date_days_past_due_count_from(tier):
    loan = make_overdue_loan(tier, installments=2)  # due on DUE and 30 days later
    advance_collections(day(33))
    case = case_of(loan)
    assert case.days_past_due(day(33)) == 33 and case.amount_overdue == 1000

    pay(loan, "500.00", day(34))

    case = case_of(loan)
    assert case.is_open and case.oldest_due_date == DUE + dt.timedelta(days=30)
    assert case.days_past_due(day(34)) == 4 and case.amount_overdue == 500


def test_a_closed_case_keeps_the_days_past_due_it_closed_at(tier):
    loan = make_overdue_loan(tier)
    advance_collections(day(3))

    pay(loan, "500.00", day(10))

    case = case_of(loan)
    assert not case.is_open
    assert case.days_past_due(day(10)) == 10 and case.days_past_due(day(400)) == 10
