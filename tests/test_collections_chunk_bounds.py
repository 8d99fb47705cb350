"""Each chunk of the daily advance reads its loans' positions and open cases within the bounds of its loan ids,
so PostgreSQL reads the index over that range rather than every case or active loan of the book per chunk."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from debt_collection.advance import advance_collections

from .factories import make_customer, make_installment, make_loan

pytestmark = pytest.mark.django_db


def test_a_chunk_of_collections_reads_its_positions_and_cases_within_its_loans_bounds():
    loans = [make_loan(make_customer()) for _ in range(3)]
    for loan in loans:
        make_installment(loan, due_date=dt.date(2026, 1, 1))
    with CaptureQueriesContext(connection) as queries:
        advance_collections(dt.datetime(2026, 3, 1, 4, tzinfo=dt.UTC))
    low, high = min(loan.pk for loan in loans), max(loan.pk for loan in loans)
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT")
        and ('FROM "loans_installment"' in q["sql"] or 'FROM "collections_collectioncase"' in q["sql"])
        and '"loan_id" >= ' in q["sql"]
    ]
    assert {'FROM "loans_installment"' in sql for sql in reads} == {True, False}
    assert all(f">= {low}" in sql and f"<= {high}" in sql for sql in reads)
