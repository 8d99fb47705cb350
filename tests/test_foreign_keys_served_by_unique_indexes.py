"""An instalment's loan and an allocation's payment are searched through the unique indexes that begin with them:
no index of their own, which every instalment and allocation written paid one more entry for."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection

from loans.models import Installment, Payment, PaymentAllocation
from loans.services import reallocate_loans

from .factories import make_customer, make_installment, make_loan

pytestmark = pytest.mark.django_db


def _indexes(model) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {name: c["columns"] for name, c in constraints.items() if c["index"] or c["unique"]}


@pytest.mark.parametrize(
    "model, column, unique",
    [
        (Installment, "loan_id", ["loan_id", "seq"]),
        (PaymentAllocation, "payment_id", ["payment_id", "installment_id"]),
    ],
)
def test_the_foreign_key_has_no_index_of_its_own_and_the_unique_index_begins_with_it(model, column, unique):
    indexes = _indexes(model)
    assert [column] not in indexes.values()
    assert unique in indexes.values()


def test_a_loans_instalments_and_a_payments_allocations_are_still_found_and_deleted_with_them():
    loan = make_loan(make_customer())
    first = make_installment(loan, seq=1, due_date=dt.date(2026, 2, 1), amount_due=Decimal("100.00"))
    make_installment(loan, seq=2, due_date=dt.date(2026, 3, 1), amount_due=Decimal("100.00"))
    payment = Payment.objects.create(
        ref="FK-1",
        loan=loan,
        amount=Decimal("150.00"),
        received_at=dt.datetime(2026, 2, 1, 9, tzinfo=dt.UTC),
        source="app",
    )
    reallocate_loans([loan.pk], dt.datetime(2026, 2, 1, 10, tzinfo=dt.UTC))
    assert list(loan.installments.values_list("seq", flat=True)) == [1, 2]
    assert list(payment.allocations.order_by("installment__seq").values_list("amount", flat=True)) == [
        Decimal("100.00"),
        Decimal("50.00"),
    ]
    payment.delete()
    assert not PaymentAllocation.objects.filter(installment=first).exists()
