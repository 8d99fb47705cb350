"""Payments keep their instalment's paid state: the sum of payments, never counted twice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEvent
from loans import signals
from loans.models import Loan, Payment
from loans.services import record_payment, refresh_installments
from tests.factories import make_installment, make_loan, make_payment

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 11, 30, 4, 0, tzinfo=dt.UTC)


@pytest.fixture
def received():
    got = {"paid": [], "recorded": []}

    def on_paid(sender, installment_ids, at, **kwargs):
        got["paid"].append(installment_ids)

    def on_recorded(sender, installment_ids, loan_ids, at, **kwargs):
        got["recorded"].append((installment_ids, loan_ids))

    signals.installments_paid.connect(on_paid)
    signals.payments_recorded.connect(on_recorded)
    yield got
    signals.installments_paid.disconnect(on_paid)
    signals.payments_recorded.disconnect(on_recorded)


def test_a_partial_payment_is_counted_but_does_not_mark_the_instalment_paid(
    received, django_capture_on_commit_callbacks
):
    installment = make_installment(amount_due=Decimal("500.00"))
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(
            loan=installment.loan, installment=installment, amount=Decimal("200"), received_at=AT, ref="RP1"
        )
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("200.00") and installment.paid_at is None
    assert received["recorded"] == [([installment.pk], [installment.loan_id])]
    assert received["paid"] == []


def test_the_payment_that_covers_the_instalment_sets_paid_at_and_pays_off_the_loan(
    received, django_capture_on_commit_callbacks
):
    installment = make_installment(amount_due=Decimal("500.00"))
    record_payment(
        loan=installment.loan, installment=installment, amount=Decimal("200"), received_at=AT, ref="RP2"
    )
    later = AT + dt.timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(
            loan=installment.loan,
            installment=installment,
            amount=Decimal("300"),
            received_at=later,
            ref="RP3",
        )
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("500.00") and installment.paid_at == later
    assert received["paid"] == [[installment.pk]]
    assert Loan.objects.get(pk=installment.loan_id).status == Loan.Status.PAID_OFF
    assert AuditEvent.objects.filter(
        action="loans.loan.paid_off", object_id=str(installment.loan_id)
    ).exists()
    assert AuditEvent.objects.filter(action="loans.payment.recorded").count() == 2


def test_recording_the_same_payment_twice_counts_it_once():
    installment = make_installment(amount_due=Decimal("500.00"))
    for _ in range(2):
        record_payment(
            loan=installment.loan, installment=installment, amount=Decimal("200"), received_at=AT, ref="RP4"
        )
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("200.00")
    assert Payment.objects.filter(ref="RP4").count() == 1


def test_a_payment_without_instalment_pays_the_earliest_one_still_open():
    loan = make_loan()
    first = make_installment(loan, seq=1, due_date=dt.date(2026, 10, 1), amount_due=Decimal("100"))
    second = make_installment(loan, seq=2, due_date=dt.date(2026, 11, 1), amount_due=Decimal("100"))
    record_payment(loan=loan, amount=Decimal("100"), received_at=AT, ref="RP5")
    payment = record_payment(loan=loan, amount=Decimal("100"), received_at=AT, ref="RP6")
    assert [(a.installment, a.amount) for a in payment.allocations.all()] == [(second, Decimal("100.00"))]
    first.refresh_from_db()
    assert first.paid_at == AT


def test_a_payment_must_be_positive():
    installment = make_installment()
    with pytest.raises(ValidationError):
        record_payment(
            loan=installment.loan, installment=installment, amount=Decimal("-1"), received_at=AT, ref="RP7"
        )


def test_refreshing_recomputes_from_the_payments_and_reopens_what_is_no_longer_covered():
    installment = make_installment(amount_due=Decimal("500.00"))
    payment = make_payment(installment, amount=Decimal("500.00"))
    refresh_installments([installment.pk], AT)
    refresh_installments([installment.pk], AT)  # twice: still the sum, not double
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("500.00") and installment.paid_at == payment.received_at
    payment.delete()
    counts = refresh_installments([installment.pk], AT)
    installment.refresh_from_db()
    assert installment.amount_paid == 0 and installment.paid_at is None
    assert counts["reopened"] == 1 and counts["loans_reopened"] == 1
    assert Loan.objects.get(pk=installment.loan_id).status == Loan.Status.ACTIVE
