"""A large file is imported a chunk of rows at a time, in bounded memory (issue 18, point 2).

A 314,581-row payments file took 2.6 GB: the whole file became a tablib ``Dataset``, every row kept its model
instance and row result to the end, and every reference of the file was loaded at once. Now the rows are read
from the file as they are imported, ``chunk_rows`` at a time: each chunk's references and existing rows are
loaded for that chunk, its rows written, and only the first rows' results kept (the totals count them all).
Here the chunks are made small so that a few hundred rows take several of them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.imports import files
from core.imports.resource import BookResource, run_import
from loans import resources
from loans.models import Installment, Loan
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

CHUNK = 50
HEADER = "loan_ref,seq,due_date,amount_due"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(BookResource, "chunk_rows", CHUNK)


def loans(n: int) -> list[str]:
    customer = make_customer()
    Loan.objects.bulk_create(
        Loan(ref=f"LS{i:05d}", customer=customer, principal=1000, disbursed_on=dt.date(2026, 1, 1))
        for i in range(n)
    )
    return [f"LS{i:05d}" for i in range(n)]


def instalments_file(refs: list[str], rows: int) -> bytes:
    lines = [HEADER]
    for i in range(rows):
        lines.append(f"{refs[i // 4]},{i % 4 + 1},2026-{i % 4 + 2:02d}-15,250.00")
    return ("\n".join(lines) + "\n").encode()


def test_it_imports_a_file_without_building_a_dataset_of_the_whole_file(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was read into a Dataset")

    monkeypatch.setattr(files.CSV, "create_dataset", refuse)
    monkeypatch.setattr(files.XLSX, "create_dataset", refuse)
    data = instalments_file(loans(60), 230)

    result, errors = run_import(resources.InstallmentResource(), data, format_name="CSV")

    assert errors == []
    assert Installment.objects.count() == 230
    assert result.total_rows == 230


def test_it_reads_and_prepares_the_rows_a_chunk_at_a_time(monkeypatch):
    seen: list[int] = []
    original = BookResource.preload_chunk

    def spy(self, rows):
        seen.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(BookResource, "preload_chunk", spy)
    data = instalments_file(loans(60), 230)

    run_import(resources.InstallmentResource(), data, format_name="CSV")

    assert seen == [CHUNK, CHUNK, CHUNK, CHUNK, 30]


def test_its_queries_grow_by_a_few_per_chunk_not_per_row():
    refs = loans(120)

    def queries(rows: int) -> int:
        Installment.objects.all().delete()
        with CaptureQueriesContext(connection) as captured:
            _result, errors = run_import(
                resources.InstallmentResource(), instalments_file(refs, rows), format_name="CSV"
            )
        assert errors == []
        return len(captured)

    small, large = queries(200), queries(400)

    assert large - small <= 6 * (400 - 200) // CHUNK


def test_it_keeps_the_first_rows_results_and_counts_them_all(monkeypatch):
    monkeypatch.setattr(BookResource, "rows_kept", 20)
    data = instalments_file(loans(60), 230)

    result, errors = run_import(resources.InstallmentResource(), data, format_name="CSV")

    assert errors == []
    assert len(result.rows) == 20
    assert result.totals["new"] == 230


def test_an_xlsx_file_is_read_a_chunk_at_a_time_too(monkeypatch):
    import openpyxl

    refuse_called = []
    monkeypatch.setattr(files.XLSX, "create_dataset", lambda *a, **k: refuse_called.append(1))
    refs = loans(30)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER.split(","))
    for i in range(110):
        sheet.append([refs[i // 4], i % 4 + 1, f"2026-{i % 4 + 2:02d}-15", "250.00"])
    import io

    out = io.BytesIO()
    workbook.save(out)

    result, errors = run_import(resources.InstallmentResource(), out.getvalue(), format_name="XLSX")

    assert errors == []
    assert not refuse_called
    assert Installment.objects.count() == 110
