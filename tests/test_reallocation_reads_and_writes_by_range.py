"""A payments file's re-allocation reads and writes only the rows of each chunk: its reads neither join nor sort
what they did not ask for, and each batch of rows updated is bounded by its least and greatest key. Before, each
chunk joined and sorted every allocation with its payment and instalment (the allocations' default order), and
each batch of instalments updated was joined to the whole instalments table (PostgreSQL read it once per 5,000
rows): both grew with the file, so a 1,000,000-row payments file spent most of its time on them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.bulk import update_rows
from loans.models import Installment, Payment
from loans.services import reallocate_loans

from .factories import make_customer, make_installment, make_loan

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _loans_with_payments(count: int = 3):
    loans = []
    for n in range(count):
        loan = make_loan(make_customer())
        for seq in (1, 2):
            make_installment(loan, seq=seq, due_date=dt.date(2026, 2, seq), amount_due=Decimal("100.00"))
        Payment.objects.create(
            ref=f"RANGE-{n}", loan=loan, amount=Decimal("150.00"), received_at=AT, source="bank_transfer"
        )
        loans.append(loan)
    return loans


def _selects_from(ctx, table: str) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith(f'SELECT "{table}".')]


def test_it_reads_a_chunks_payments_and_allocations_without_joining_or_sorting_them():
    loans = _loans_with_payments()
    reallocate_loans([loan.pk for loan in loans], AT)
    Payment.objects.filter(ref="RANGE-0").update(amount=Decimal("200.00"))
    with CaptureQueriesContext(connection) as ctx:
        reallocate_loans([loan.pk for loan in loans], AT)
    allocations = _selects_from(ctx, "loans_paymentallocation")
    payments = [sql for sql in _selects_from(ctx, "loans_payment") if '"loans_payment"."loan_id"' in sql]
    assert allocations and payments
    assert not any("JOIN" in sql or "ORDER BY" in sql for sql in allocations + payments)
    # And the re-allocation still did its work: the corrected payment now pays both instalments.
    assert list(
        Installment.objects.filter(loan=loans[0]).order_by("seq").values_list("amount_paid", flat=True)
    ) == [Decimal("100.00"), Decimal("100.00")]


def test_instalments_read_in_their_default_order_join_no_loan():
    loan = make_loan(make_customer())
    second = make_installment(loan, seq=2, due_date=dt.date(2026, 2, 2))
    first = make_installment(loan, seq=1, due_date=dt.date(2026, 2, 1))
    query = Installment.objects.filter(loan_id__in=[loan.pk]).values_list("pk", flat=True)
    assert "JOIN" not in str(query.query)
    assert list(query) == [first.pk, second.pk]


@pytest.mark.postgres_only
def test_each_batch_of_rows_updated_is_bounded_by_its_least_and_greatest_key_on_postgresql():
    loans = _loans_with_payments(2)
    rows = [
        (pk, Decimal("7.00"), AT)
        for pk in Installment.objects.filter(loan__in=loans).values_list("pk", flat=True)
    ]
    rows.reverse()  # in any order: the bounds are the least and the greatest
    with CaptureQueriesContext(connection) as ctx:
        assert update_rows(Installment, ["amount_paid", "paid_at"], rows) == len(rows)
    [update] = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('UPDATE "loans_installment"')]
    low, high = min(r[0] for r in rows), max(r[0] for r in rows)
    assert re.search(rf'"loans_installment"\."id" BETWEEN {low}\b.* AND {high}\b', update)
    assert set(Installment.objects.filter(loan__in=loans).values_list("amount_paid", "paid_at")) == {
        (Decimal("7.00"), AT)
    }
