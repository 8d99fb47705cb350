"""Promises to pay: the ladder waits, a reminder the day before, kept by payment or broken the day after."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from backoffice.jobs import run_pipeline
from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.calls import call_priority
from debt_collection.models import CaseStepRun, PromiseToPay
from notifications.models import NotificationLog

from .factories_collections import (
    day,
    high_risk_tier,
    make_collector,
    make_overdue_loan,
    open_case,
    open_tasks,
    overdue_templates,
    pay,
)

pytestmark = pytest.mark.django_db


def promise(loan, collector, *, on_day, promised_day, amount="500.00"):
    advance_collections(day(on_day))
    return record_call_outcome(
        open_tasks(loan)[0],
        outcome="promise_to_pay",
        promise_amount=Decimal(amount),
        promise_date=day(promised_day).date(),
        actor=collector,
        at=day(on_day, hour=11),
    )


def test_a_broken_promise_is_marked_the_day_after_and_the_ladder_resumes():
    overdue_templates()
    tier = high_risk_tier()
    collector = make_collector("qian")
    loan = make_overdue_loan(tier)
    promise(loan, collector, on_day=3, promised_day=9)
    case = open_case(loan)

    for n in range(4, 10):  # through the promised date: paused, and the firm SMS (7 DPD) waits
        run_pipeline(day(n))
        case.refresh_from_db()
        assert case.is_paused and case.stage == "call"
    assert not CaseStepRun.objects.filter(case=case, min_dpd=7).exists()
    reminder = NotificationLog.objects.get(customer=loan.customer, kind="promise_reminder")
    assert reminder.scheduled_for.date() == day(8).date() and reminder.status == "sent"

    run_pipeline(day(10))

    p = PromiseToPay.objects.get(case=case)
    case.refresh_from_db()
    assert p.status == "broken" and case.broken_promises == 1 and not case.is_paused
    assert (
        case.stage == "firm" and CaseStepRun.objects.filter(case=case, min_dpd=7, result="performed").exists()
    )
    event = AuditEvent.objects.get(action="collections.promise.broken")
    assert event.after["promised_date"] == day(9).date().isoformat() and event.after["broken_promises"] == 1
    assert NotificationLog.objects.filter(customer=loan.customer, kind="promise_reminder").count() == 1
    # The collector who took the promise calls again, not within 7 days of that conversation (its day being the
    # first): the pause ended at midnight before day 10, so the call is due at once.
    follow_up = open_tasks(loan)[0]
    assert follow_up.assigned_to == collector
    assert follow_up.scheduled_for == day(10)
    assert follow_up.priority > call_priority(
        broken_promises=0,
        amount_overdue=Decimal("10000"),
        oldest_due_date=day(10).date() - dt.timedelta(days=90),
    )


def test_a_promise_kept_by_payment_closes_the_case(django_capture_on_commit_callbacks):
    tier = high_risk_tier()
    collector = make_collector("wu")
    loan = make_overdue_loan(tier)
    promise(loan, collector, on_day=3, promised_day=6)

    with django_capture_on_commit_callbacks(execute=True):
        pay(loan, "500.00", day(5, hour=15))

    p = PromiseToPay.objects.get()
    case = p.case
    case.refresh_from_db()
    assert p.status == "kept" and case.status == "closed" and case.close_reason == "paid"
    advance_collections(day(8))
    p.refresh_from_db()
    assert p.status == "kept"


def test_a_partial_promise_kept_resumes_the_ladder_without_breaking(django_capture_on_commit_callbacks):
    tier = high_risk_tier()
    collector = make_collector("zheng")
    loan = make_overdue_loan(tier)
    promise(loan, collector, on_day=3, promised_day=6, amount="200.00")

    with django_capture_on_commit_callbacks(execute=True):
        pay(loan, "200.00", day(4, hour=15))

    p = PromiseToPay.objects.get()
    case = open_case(loan)
    assert p.status == "kept" and not case.is_paused and case.amount_overdue == Decimal("300.00")
    advance_collections(day(8))
    case.refresh_from_db()
    assert case.stage == "firm" and case.broken_promises == 0


def test_only_one_promise_may_be_pending_and_the_date_must_be_ahead():
    tier = high_risk_tier()
    collector = make_collector("feng")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    task = open_tasks(loan)[0]
    with pytest.raises(ValidationError) as exc:
        record_call_outcome(
            task,
            outcome="promise_to_pay",
            promise_amount=Decimal("10"),
            promise_date=day(1).date(),
            actor=collector,
            at=day(3),
        )
    assert "promise_date" in exc.value.message_dict
    task.refresh_from_db()
    assert task.status == "open"
