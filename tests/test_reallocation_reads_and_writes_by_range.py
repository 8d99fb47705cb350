"""An import and a payments file's re-allocation read and write only the rows of each chunk: reads neither join
nor sort what they did not ask for, reads by a list of ids also give the list's least and greatest id, and each
batch of rows updated is bounded by its least and greatest key. Before, each chunk joined and sorted every
allocation with its payment and instalment (the allocations' default order), PostgreSQL read the whole table for a
chunk's list of loans (its estimate of a list's rows lags behind a file being written), and each batch of
instalments updated was joined to the whole instalments table (read once per 5,000 rows): all grew with the file,
so a 1,000,000-row file spent most of its time on them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.bulk import update_rows
from core.imports.resource import run_import
from loans.models import Installment, Payment
from loans.resources import InstallmentResource, PaymentResource
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


def test_it_reads_a_chunks_instalments_payments_and_allocations_within_the_chunks_bounds():
    loans = _loans_with_payments()
    ids = [loan.pk for loan in loans]
    reallocate_loans(ids, AT)
    instalment_ids = list(Installment.objects.filter(loan__in=loans).values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as ctx:
        reallocate_loans(ids, AT)
    reads = {
        table: [sql for sql in _selects_from(ctx, table) if f'"{table}"."{column}" >= ' in sql]
        for table, column in (
            ("loans_installment", "loan_id"),
            ("loans_payment", "loan_id"),
            ("loans_paymentallocation", "installment_id"),
        )
    }
    for table, (low, high) in (
        ("loans_installment", (min(ids), max(ids))),
        ("loans_payment", (min(ids), max(ids))),
        ("loans_paymentallocation", (min(instalment_ids), max(instalment_ids))),
    ):
        assert reads[table], table
        assert all(f">= {low}" in sql and f"<= {high}" in sql for sql in reads[table]), table


def test_an_import_reads_a_chunks_existing_rows_within_its_loans_bounds_but_never_bounds_texts():
    loans = [make_loan(make_customer()) for _ in range(3)]
    lines = ["loan_ref,seq,due_date,amount_due"] + [f"{loan.ref},1,2026-02-01,100.00" for loan in loans]
    with CaptureQueriesContext(connection) as ctx:
        _result, errors = run_import(InstallmentResource(), "\n".join(lines) + "\n")
    assert errors == []
    low, high = min(loan.pk for loan in loans), max(loan.pk for loan in loans)
    existing = [sql for sql in _selects_from(ctx, "loans_installment") if '"loan_id" >= ' in sql]
    assert existing and all(f">= {low}" in sql and f"<= {high}" in sql for sql in existing)

    # A payment's key is its ref, a text: the database orders texts by its collation, not as Python does, so
    # a range taken in Python could leave rows out; on PostgreSQL the database takes the range itself.
    payments = ["ref,loan_ref,installment_seq,amount,received_at,source"] + [
        f"ref-{n},{loan.ref},,10.00,2026-03-01T09:00:00+00:00,app" for n, loan in enumerate(loans)
    ]
    with CaptureQueriesContext(connection) as ctx:
        _result, errors = run_import(PaymentResource(), "\n".join(payments) + "\n")
    assert errors == []
    by_ref = [sql for sql in _selects_from(ctx, "loans_payment") if '"loans_payment"."ref" = ANY' in sql]
    by_ref = by_ref or [  # SQLite: a list is json_each
        sql for sql in _selects_from(ctx, "loans_payment") if '"loans_payment"."ref" IN (SELECT' in sql
    ]
    assert by_ref and not any('"ref" >=' in sql or '"ref" <=' in sql for sql in by_ref)
    if connection.vendor == "postgresql":
        by_loan_ref = [sql for sql in _selects_from(ctx, "loans_loan") if '"loans_loan"."ref" = ANY' in sql]
        assert by_ref and by_loan_ref
        assert all("BETWEEN (SELECT min(v) FROM unnest(" in sql for sql in by_ref + by_loan_ref)
    assert Payment.objects.filter(ref__startswith="ref-").count() == 3


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
