"""Whatever cancels a call task (a cure, legal, a dispute, a request to stop calling, a tier change, a
do-not-contact flag) records why, in the task and in a ``collections.call.cancelled`` event."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.legal import refer_to_legal
from debt_collection.models import CallTask
from loans.models import Customer

from .factories import make_installment, make_loan
from .factories_collections import (
    DUE,
    day,
    high_risk_tier,
    make_collector,
    make_overdue_loan,
    open_case,
    open_tasks,
)

pytestmark = pytest.mark.django_db


def cancelled_events(task: CallTask) -> list[dict]:
    return [
        e.after
        for e in AuditEvent.objects.filter(action="collections.call.cancelled", object_id=str(task.pk))
    ]


def test_it_records_the_legal_reason_when_a_referral_cancels_the_open_call():
    make_collector("wu")
    loan = make_overdue_loan(high_risk_tier())
    advance_collections(day(3))
    [task] = open_tasks(loan)

    refer_to_legal(open_case(loan), actor="ops", at=day(3, hour=11))

    task.refresh_from_db()
    assert (task.status, task.cancel_reason) == (CallTask.Status.CANCELLED, CallTask.CancelReason.LEGAL)
    assert [e["reason"] for e in cancelled_events(task)] == ["legal"]


def test_it_cancels_the_other_loans_call_with_the_dispute_reason():
    collector = make_collector("xu")
    loan = make_overdue_loan(high_risk_tier())
    second = make_loan(loan.customer)
    make_installment(second, due_date=DUE, amount_due=loan.installments.get().amount_due)
    advance_collections(day(3))
    [task], [other] = open_tasks(loan), open_tasks(second)

    record_call_outcome(task, outcome="dispute", actor=collector, at=day(3, hour=11))

    other.refresh_from_db()
    assert (other.status, other.cancel_reason) == (CallTask.Status.CANCELLED, CallTask.CancelReason.DISPUTE)
    assert [e["reason"] for e in cancelled_events(other)] == ["dispute"]
    assert Customer.objects.get(pk=loan.customer_id).do_not_contact


def test_it_cancels_the_other_loans_call_when_the_customer_asks_us_to_stop_calling():
    collector = make_collector("yu")
    loan = make_overdue_loan(high_risk_tier())
    second = make_loan(loan.customer)
    make_installment(second, due_date=DUE, amount_due=loan.installments.get().amount_due)
    advance_collections(day(3))
    [task], [other] = open_tasks(loan), open_tasks(second)

    record_call_outcome(task, outcome="stop_calling", actor=collector, at=day(3, hour=11))

    other.refresh_from_db()
    assert (other.status, other.cancel_reason) == (CallTask.Status.CANCELLED, CallTask.CancelReason.OPTED_OUT)
    assert [e["reason"] for e in cancelled_events(other)] == ["opted_out"]


def test_it_cancels_the_call_of_a_customer_put_on_do_not_contact_at_the_next_run():
    make_collector("zu")
    loan = make_overdue_loan(high_risk_tier())
    advance_collections(day(3))
    [task] = open_tasks(loan)
    Customer.objects.filter(pk=loan.customer_id).update(
        do_not_contact=True, do_not_contact_reason="bereavement"
    )

    counts = advance_collections(day(4))

    task.refresh_from_db()
    assert task.cancel_reason == CallTask.CancelReason.DO_NOT_CONTACT and counts["call_tasks_cancelled"] == 1
    assert cancelled_events(task) == [
        {"case_id": task.case_id, "reason": "do_not_contact", "customer_id": loan.customer_id}
    ]
