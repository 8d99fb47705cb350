"""A bad row anywhere in a large file, in its first chunk or its last, fails the whole file: the error names
the row's line and column, and nothing of the file is saved (issue 18, point 2: the file is imported a chunk at
a time, still all or nothing). The chunks are made small so that a few hundred rows take several."""

from __future__ import annotations

import datetime as dt

import pytest

from core.imports.resource import BookResource, run_import
from core.models import AuditEvent
from loans import resources
from loans.models import Installment, Loan, Payment, PaymentAllocation
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

CHUNK = 50
ROWS = 230
INSTALMENTS = "loan_ref,seq,due_date,amount_due"
PAYMENTS = "ref,loan_ref,installment_seq,amount,received_at,source"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(BookResource, "chunk_rows", CHUNK)


def book(loans: int, *, with_instalments: bool = False) -> list[Loan]:
    customer = make_customer()
    made = Loan.objects.bulk_create(
        Loan(ref=f"LB{i:05d}", customer=customer, principal=1000, disbursed_on=dt.date(2026, 1, 1))
        for i in range(loans)
    )
    made = list(Loan.objects.filter(ref__startswith="LB").order_by("ref"))
    if with_instalments:
        Installment.objects.bulk_create(
            Installment(loan=loan, seq=seq, due_date=dt.date(2026, seq + 1, 15), amount_due=250)
            for loan in made
            for seq in range(1, 5)
        )
    return made


def instalment_lines() -> list[str]:
    return [f"LB{i // 4:05d},{i % 4 + 1},2026-{i % 4 + 2:02d}-15,250.00" for i in range(ROWS)]


def payment_lines() -> list[str]:
    return [
        f"PB{i:06d},LB{i // 4:05d},,100.00,2026-11-{i % 28 + 1:02d}T10:00:00+08:00,bank_transfer"
        for i in range(ROWS)
    ]


def data(header: str, lines: list[str]) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def nothing_saved(instalments: int = 0) -> bool:
    return (
        Installment.objects.count() == instalments
        and not Payment.objects.exists()
        and not AuditEvent.objects.filter(action="backoffice.import.completed").exists()
    )


@pytest.mark.parametrize("line", [3, ROWS + 1], ids=["first chunk", "last chunk"])
def test_a_bad_amount_fails_the_instalments_file_with_its_line_and_column(line):
    book(60)
    lines = instalment_lines()
    lines[line - 2] = lines[line - 2].replace("250.00", "25O.00")

    _result, errors = run_import(resources.InstallmentResource(), data(INSTALMENTS, lines))

    assert errors == [f"line {line}, column amount_due: “25O.00” is not an amount (write it like 1234.50)."]
    assert nothing_saved()


@pytest.mark.parametrize("line", [2, ROWS + 1], ids=["first chunk", "last chunk"])
def test_a_bad_date_fails_the_payments_file_with_its_line_and_column(line):
    book(60, with_instalments=True)
    lines = payment_lines()
    cells = lines[line - 2].split(",")
    cells[4] = "2026-11-31T10:00:00+08:00"
    lines[line - 2] = ",".join(cells)

    _result, errors = run_import(resources.PaymentResource(), data(PAYMENTS, lines))

    assert len(errors) == 1
    assert errors[0].startswith(f"line {line}, column received_at: “2026-11-31T10:00:00+08:00”")
    assert nothing_saved(instalments=240)
    assert not PaymentAllocation.objects.exists()


def test_a_key_repeated_in_a_later_chunk_names_the_line_it_repeats():
    book(60)
    lines = instalment_lines()
    lines[ROWS - 1] = lines[3]  # line 231 repeats line 5 (LB00000, seq 4)

    _result, errors = run_import(resources.InstallmentResource(), data(INSTALMENTS, lines))

    assert errors == ["line 231, column seq: this key repeats line 5; each row must have its own key."]
    assert nothing_saved()


def test_a_payment_ref_repeated_in_a_later_chunk_names_the_line_it_repeats():
    book(60, with_instalments=True)
    lines = payment_lines()
    lines[ROWS - 1] = lines[0]  # line 231 repeats line 2

    _result, errors = run_import(resources.PaymentResource(), data(PAYMENTS, lines))

    assert errors == ["line 231, column ref: this key repeats line 2; each row must have its own key."]
    assert nothing_saved(instalments=240)


def test_a_bad_row_in_the_last_chunk_of_a_dry_run_is_reported_too():
    book(60)
    lines = instalment_lines()
    lines[-1] = lines[-1].replace("2026-", "2026/")

    _result, errors = run_import(
        resources.InstallmentResource(), data(INSTALMENTS, lines), dry_run=True, preview_rows=False
    )

    assert len(errors) == 1
    assert errors[0].startswith(f"line {ROWS + 1}, column due_date:")
    assert nothing_saved()
