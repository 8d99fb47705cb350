"""Importing the same payments file again changes nothing and writes nothing but the import's own audit event
(issue 18, point 2: a 314,581-row payments file imported again took 10 minutes, every row written again and
every loan re-allocated). A row that changes nothing of its payment is not written, and its loan is not
re-allocated; a corrected row still is."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.imports.resource import BookResource, run_import
from core.models import AuditEvent
from loans import resources
from loans.models import Installment, Loan, Payment, PaymentAllocation
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

CHUNK = 50
ROWS = 200
HEADER = "ref,loan_ref,installment_seq,amount,received_at,source"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(BookResource, "chunk_rows", CHUNK)


@pytest.fixture
def book():
    customer = make_customer()
    Loan.objects.bulk_create(
        Loan(ref=f"LA{i:05d}", customer=customer, principal=1000, disbursed_on=dt.date(2026, 1, 1))
        for i in range(ROWS // 4)
    )
    Installment.objects.bulk_create(
        Installment(loan=loan, seq=seq, due_date=dt.date(2026, seq + 1, 15), amount_due=250)
        for loan in Loan.objects.filter(ref__startswith="LA")
        for seq in range(1, 5)
    )


def payments(amount: str = "100.00") -> bytes:
    lines = [HEADER]
    for i in range(ROWS):
        lines.append(
            f"PA{i:06d},LA{i // 4:05d},,{amount},2026-11-{i % 28 + 1:02d}T10:00:00+08:00,bank_transfer"
        )
    return ("\n".join(lines) + "\n").encode()


def test_it_writes_nothing_but_the_imports_own_event_when_the_same_file_comes_again(book):
    _result, errors = run_import(resources.PaymentResource(), payments())
    assert errors == []
    allocations = sorted(PaymentAllocation.objects.values_list("payment_id", "installment_id", "amount"))
    events = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as captured:
        result, errors = run_import(resources.PaymentResource(), payments())

    assert errors == []
    assert result.totals["update"] == ROWS
    writes = [
        q["sql"] for q in captured if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert all("audit" in sql or "import" in sql.lower() for sql in writes), writes
    assert list(AuditEvent.objects.filter(seq__gt=events).values_list("action", flat=True)) == [
        "backoffice.import.completed"
    ]
    assert (
        sorted(PaymentAllocation.objects.values_list("payment_id", "installment_id", "amount")) == allocations
    )


def test_its_queries_grow_by_a_few_per_chunk(book):
    run_import(resources.PaymentResource(), payments())

    with CaptureQueriesContext(connection) as captured:
        run_import(resources.PaymentResource(), payments())

    assert len(captured) <= 4 * (ROWS // CHUNK) + 15


def test_a_corrected_amount_is_written_and_its_loan_allocated_again(book):
    run_import(resources.PaymentResource(), payments("100.00"))

    _result, errors = run_import(resources.PaymentResource(), payments("250.00"))

    assert errors == []
    assert set(Payment.objects.values_list("amount", flat=True)) == {Decimal("250.00")}
    assert not Installment.objects.filter(paid_at__isnull=True).exists()
    assert set(Loan.objects.values_list("status", flat=True)) == {Loan.Status.PAID_OFF}
