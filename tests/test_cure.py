"""A payment that brings a loan out of arrears cures it at once, in the payment's own transaction: the case
closes with the reason, open call tasks are cancelled and leave the queue, planned contacts for what it covered
are cancelled as ``paid``, a promise it satisfies is kept. Nothing waits for the next daily run.

These tests never run the on-commit callbacks: what they assert happened inside the payment's transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction

from backoffice.jobs import run_pipeline
from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.models import CallTask, CollectionCase, PromiseToPay
from loans.models import Payment
from loans.services import record_payment
from notifications.models import NotificationLog

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_collections import make_collector, make_ladder, open_case, open_tasks, overdue_templates
from .factories_reminders import SHANGHAI, local

pytestmark = pytest.mark.django_db

FOUR_THOUSAND = Decimal("4000.00")
NOW = local(SHANGHAI, 2026, 12, 10, 7)  # before the contact window opens: the ladder's SMS waits, planned


@pytest.fixture
def arrears():
    """A loan of four instalments of 4,000: the first paid, the second and third overdue (8,000 in arrears),
    the fourth not yet due; its case is open at the call step with a call task in the collector's queue and a
    ladder SMS planned."""
    overdue_templates()
    tier = make_tier(risk_level="high", grace_period_days=2, max_contacts_per_week=5)
    make_ladder(
        tier, [(1, "early", "sms", "overdue"), (3, "call", "sms", "overdue"), (3, "call", "call_task", "")]
    )
    make_collector("zhao")
    loan = make_loan(make_customer(tier=tier))
    instalments = [
        make_installment(loan, seq=n, due_date=due, amount_due=FOUR_THOUSAND)
        for n, due in enumerate(
            [dt.date(2026, 10, 1), dt.date(2026, 11, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1)], 1
        )
    ]
    record_payment(
        loan=loan, amount=FOUR_THOUSAND, received_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC), ref="OK1"
    )
    advance_collections(NOW)
    case = open_case(loan)
    assert case is not None and case.amount_overdue == Decimal("8000.00")
    assert len(open_tasks(loan)) == 1
    assert NotificationLog.objects.pending().filter(customer=loan.customer).exists()
    return loan, instalments, case


def test_it_cures_a_loan_at_once_when_an_operator_pays_the_arrears_on_the_instalment_chosen(arrears):
    loan, (_first, second, third, fourth), case = arrears
    task = open_tasks(loan)[0]

    with transaction.atomic():
        record_payment(
            loan=loan, installment=second, amount=Decimal("8000"), received_at=NOW, ref="CURE1", now=NOW
        )
        # Inside the payment's transaction: nothing waits for a commit or the next run.
        case.refresh_from_db()
        assert case.status == CollectionCase.Status.CLOSED
        assert case.close_reason == CollectionCase.CloseReason.PAID

    second.refresh_from_db(), third.refresh_from_db(), fourth.refresh_from_db()
    assert (second.amount_paid, third.amount_paid, fourth.amount_paid) == (FOUR_THOUSAND, FOUR_THOUSAND, 0)
    assert second.paid_at == NOW and third.paid_at == NOW and fourth.paid_at is None
    task.refresh_from_db()
    assert task.status == CallTask.Status.CANCELLED and task.cancel_reason == "paid"
    assert not open_tasks(loan)
    assert not NotificationLog.objects.pending().filter(customer=loan.customer).exists()
    assert NotificationLog.objects.filter(customer=loan.customer, status="cancelled", reason="paid").exists()
    closed = AuditEvent.objects.get(action="collections.case.closed", object_id=str(case.pk))
    assert closed.after["reason"] == "paid" and closed.after["payment_refs"] == ["CURE1"]
    assert AuditEvent.objects.filter(
        action="collections.call.cancelled", object_id=str(task.pk), after__reason="paid"
    ).exists()

    # The next daily run has nothing left to do for this loan: the customer is not called.
    run_pipeline(NOW + dt.timedelta(days=1))
    assert not open_case(loan) and not open_tasks(loan)


def test_it_keeps_the_case_open_when_the_payment_leaves_arrears(arrears):
    loan, (_first, second, third, _fourth), case = arrears
    record_payment(loan=loan, amount=Decimal("5000"), received_at=NOW, ref="PART1", now=NOW)
    case.refresh_from_db()
    assert case.status == CollectionCase.Status.OPEN and case.amount_overdue == Decimal("3000.00")
    second.refresh_from_db(), third.refresh_from_db()
    assert second.paid_at == NOW and third.amount_paid == Decimal("1000.00") and third.paid_at is None
    assert len(open_tasks(loan)) == 1


def test_it_keeps_the_promise_a_payment_satisfies(arrears):
    loan, _instalments, case = arrears
    promise = PromiseToPay.objects.create(
        case=case,
        amount=Decimal("8000.00"),
        promised_date=dt.date(2026, 12, 12),
        created_at=NOW - dt.timedelta(hours=1),
    )
    record_payment(loan=loan, amount=Decimal("8000"), received_at=NOW, ref="PROM1", now=NOW)
    promise.refresh_from_db()
    assert promise.status == PromiseToPay.Status.KEPT
    assert AuditEvent.objects.filter(action="collections.promise.kept", object_id=str(promise.pk)).exists()


def test_it_cures_a_loan_when_an_imported_payment_pays_the_arrears(arrears):
    from core.imports.resource import run_import
    from loans.resources import PaymentResource

    loan, _instalments, case = arrears
    data = f"ref,loan_ref,installment_seq,amount,received_at,source\nIMP1,{loan.ref},,8000,2026-12-10T07:00:00+08:00,bank_transfer\n"
    result, errors = run_import(PaymentResource(), data, file_name="payments.csv")
    assert not errors
    case.refresh_from_db()
    assert case.status == CollectionCase.Status.CLOSED and not open_tasks(loan)


def test_it_cures_a_loan_when_the_auto_debit_of_the_due_day_pays_the_arrears_first():
    from loans.autodebit import run_autodebit

    overdue_templates()
    tier = make_tier(risk_level="high", grace_period_days=2, max_contacts_per_week=5)
    make_ladder(
        tier, [(1, "early", "sms", "overdue"), (3, "call", "sms", "overdue"), (3, "call", "call_task", "")]
    )
    make_collector("qian")
    loan = make_loan(make_customer(tier=tier), autopay=True)
    late = make_installment(loan, seq=1, due_date=dt.date(2026, 11, 1), amount_due=FOUR_THOUSAND)
    today = make_installment(loan, seq=2, due_date=dt.date(2026, 12, 10), amount_due=FOUR_THOUSAND)
    advance_collections(NOW)
    case = open_case(loan)
    assert case is not None and open_tasks(loan)

    assert run_autodebit(NOW)["succeeded"] == 1

    # The money of the due day goes to the oldest unpaid instalment first: the arrears are gone.
    late.refresh_from_db(), today.refresh_from_db()
    assert late.paid_at == NOW and today.paid_at is None and today.amount_paid == 0
    case.refresh_from_db()
    assert case.status == CollectionCase.Status.CLOSED and not open_tasks(loan)
    assert Payment.objects.get(loan=loan).source == Payment.Source.AUTODEBIT
