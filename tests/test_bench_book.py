"""The benchmarks' loan book (``bench/book.py``), written in SQL: the same book on SQLite and PostgreSQL (every
choice is a hash of the row's number), in the shape the benchmarks read (states of the instalments on the run's
day, refs the import bench's files name)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from django.db.models import Count

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import book  # noqa: E402

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 3, 15)
EXPECTED = {
    "paid": 2322,
    "not due": 1447,
    "due today": 39,
    "in grace": 15,
    "overdue": 177,
    "overdue > 30 days": 116,
}


def test_the_book_is_the_same_on_every_database_and_has_its_shape():
    from loans.models import Customer, Loan

    book.configure()
    assert book.generate(1000, TODAY) == {"customers": 910, "loans": 1000, "installments": 4000}

    states = book.states(TODAY)
    # The same figures on SQLite and PostgreSQL (this test runs on both).
    assert states == EXPECTED
    # And the shares the book is meant to have (the former Python generator's, drawn at random): a loan falls due
    # on one cycle day in 28; 93% of the instalments already due are paid; the rest are in grace or overdue.
    assert 1000 / 28 * 0.75 < states["due today"] < 1000 / 28 * 1.25
    past = 4000 - states["not due"] - states["due today"]
    assert 0.90 < states["paid"] / past < 0.95
    assert states["in grace"] > 0 and states["overdue > 30 days"] > 0

    assert Customer.objects.annotate(n=Count("loans")).filter(n=2).count() == 90
    assert sorted(Customer.objects.values_list("tier__code", flat=True).order_by().distinct()) == [
        "A",
        "B",
        "C",
        "D",
    ]
    assert Loan.objects.filter(ref="BL000001000", customer__ref="BC00000910").exists()
    assert 250 < Loan.objects.filter(autopay=True).count() < 350


def test_without_instalments_for_the_import_bench():
    from loans.models import Installment, Loan

    book.configure()
    assert book.generate(12, TODAY, installments=False) == {"customers": 11, "loans": 12, "installments": 0}
    assert Loan.objects.count() == 12 and not Installment.objects.exists()
