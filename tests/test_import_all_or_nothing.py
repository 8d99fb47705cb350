"""A large import never takes one query parameter per row of its file, and an import that fails, whatever the
stage it fails in, leaves the database exactly as it was (issue 14, point 1).

The reported file had 314,581 payments: on SQLite a query with one parameter per payment failed with
"too many SQL variables" after the payments had been committed. Here the database's own limit is lowered
(SQLite) and every query's parameters are counted (both databases), so a file of a few thousand rows shows
the same fault quickly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from core.imports.jobs import run_import_job, start_import_job
from core.imports.resource import run_import
from core.models import AuditEvent, ImportJob
from loans import resources
from loans.models import Customer, Installment, Loan, Payment
from notifications.models import NotificationItem, NotificationLog
from tests.factories import make_customer, make_tier, make_user
from tests.factories_reminders import make_rule

pytestmark = pytest.mark.django_db

ROWS = 3000
#: Above every batch the import writes (Django's own batches stay under 999 parameters on SQLite) and below
#: the rows of the file: a query taking one parameter per row fails as the 314,581-row file did.
PARAMETER_LIMIT = ROWS - 1

PAYMENTS = "ref,loan_ref,installment_seq,amount,received_at,source"


def _count_parameters(seen: list[int]):
    def wrapper(execute, sql, params, many, context):
        if params is not None and not many:
            seen.append(len(params))
        elif params is not None:
            seen.extend(len(p) for p in params)
        return execute(sql, params, many, context)

    return wrapper


@contextlib.contextmanager
def few_sql_variables(limit: int = PARAMETER_LIMIT):
    """On SQLite the connection refuses a query of more than ``limit`` parameters; on both databases the
    largest query's parameter count is collected."""
    connection.ensure_connection()
    raw = connection.connection
    previous = None
    features = connection.features
    assumed = features.max_query_params
    if connection.vendor == "sqlite":
        # As on a connection opened with this limit (``notifications.apps`` reads it when one is created).
        previous = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        features.max_query_params = limit
    seen: list[int] = []
    try:
        with connection.execute_wrapper(_count_parameters(seen)):
            yield seen
    finally:
        if previous is not None:
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, previous)
            features.max_query_params = assumed


def book(rows: int = ROWS) -> list[Loan]:
    """``rows`` loans, each with one instalment of 100.00 and a planned reminder listing it."""
    tier = make_tier()
    customer = make_customer(tier=tier)
    loans = Loan.objects.bulk_create(
        Loan(
            ref=f"AL{i:06d}",
            customer=customer,
            principal=Decimal("100.00"),
            currency="CNY",
            disbursed_on=dt.date(2026, 1, 1),
        )
        for i in range(rows)
    )
    loans = list(Loan.objects.filter(ref__startswith="AL").order_by("ref"))
    Installment.objects.bulk_create(
        Installment(loan=loan, seq=1, due_date=dt.date(2026, 12, 1), amount_due=Decimal("100.00"))
        for loan in loans
    )
    installments = list(Installment.objects.filter(loan__in=loans[:1]))
    notice = NotificationLog.objects.create(
        customer=customer,
        tier=tier,
        channel="sms",
        kind="pre_due",
        status=NotificationLog.Status.PLANNED,
        due_date=dt.date(2026, 12, 1),
        scheduled_for=dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC),
        dedupe_key="all-or-nothing-1",
    )
    NotificationItem.objects.create(notification=notice, installment=installments[0])
    return loans


def payments_file(loans: list[Loan], *, amount: str = "100.00") -> str:
    lines = [PAYMENTS]
    lines += [
        f"AP{i:06d},{loan.ref},1,{amount},2026-11-30T10:00:00+08:00,bank_transfer"
        for i, loan in enumerate(loans)
    ]
    return "\n".join(lines) + "\n"


def state() -> dict:
    """What an import of payments can change: payments, instalments, loans, contacts and the audit trail."""
    return {
        "payments": Payment.objects.count(),
        "installments": sorted(Installment.objects.values_list("pk", "amount_paid", "paid_at")),
        "loans": sorted(Loan.objects.values_list("pk", "status")),
        "contacts": sorted(NotificationLog.objects.values_list("pk", "status", "reason")),
        "audit": AuditEvent.objects.count(),
        "customers": Customer.objects.count(),
    }


def test_it_imports_a_large_payments_file_without_a_parameter_per_row(django_capture_on_commit_callbacks):
    loans = book()
    with few_sql_variables() as seen, django_capture_on_commit_callbacks(execute=True):
        _result, errors = run_import(resources.PaymentResource(), payments_file(loans), file_name="p.csv")
    assert errors == []
    assert max(seen) < PARAMETER_LIMIT
    assert Payment.objects.count() == ROWS
    assert not Installment.objects.filter(paid_at__isnull=True).exists()
    assert not Loan.objects.exclude(status=Loan.Status.PAID_OFF).exists()
    # The receivers that ran after the commit saw every payment too: the reminder of a paid instalment is off.
    assert NotificationLog.objects.get().status == NotificationLog.Status.CANCELLED


def test_it_reimports_a_large_file_that_updates_every_row():
    loans = book()
    run_import(resources.PaymentResource(), payments_file(loans, amount="60.00"), file_name="p.csv")
    assert not Installment.objects.filter(paid_at__isnull=False).exists()
    with few_sql_variables() as seen:
        result, errors = run_import(resources.PaymentResource(), payments_file(loans), file_name="p.csv")
    assert errors == []
    assert max(seen) < PARAMETER_LIMIT
    assert result.totals["update"] == ROWS
    assert Payment.objects.count() == ROWS
    assert not Installment.objects.filter(paid_at__isnull=True).exists()


CUSTOMERS = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)


def test_it_imports_a_large_customers_file_that_moves_every_tier_without_a_parameter_per_row(
    django_capture_on_commit_callbacks,
):
    low, high = make_tier(min_score=300, max_score=599), make_tier(min_score=600, max_score=900)
    make_rule(high, -3)  # the new tier plans reminders: the customers who moved are planned again
    Customer.objects.bulk_create(
        Customer(ref=f"AC{i:06d}", name=f"C {i}", phone=f"+86138{i:08d}", credit_score=400, tier=low)
        for i in range(ROWS)
    )
    lines = [CUSTOMERS] + [
        f"AC{i:06d},C {i},+86138{i:08d},,,zh-hans,Asia/Shanghai,700,,,,,," for i in range(ROWS)
    ]
    with few_sql_variables() as seen, django_capture_on_commit_callbacks(execute=True):
        _result, errors = run_import(resources.CustomerResource(), "\n".join(lines) + "\n", file_name="c.csv")
    assert errors == []
    assert max(seen) < PARAMETER_LIMIT
    assert Customer.objects.filter(tier=high).count() == ROWS


@contextlib.contextmanager
def failing(statement: str, *, after: int = 0):
    """The database fails the statement starting with ``statement`` once ``after`` of them have run (the
    import is then well past its first writes)."""
    runs = []

    def wrapper(execute, sql, params, many, context):
        if sql.lstrip().startswith(statement):
            runs.append(sql)
            if len(runs) > after:
                raise OperationalError(f"injected failure of {statement}")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield runs


#: Late stages of an import of payments, each the statement that fails there.
STAGES = {
    "the second batch of payments": ('INSERT INTO "loans_payment"', 1),
    "the instalments' paid state": ('UPDATE "loans_installment"', 0),
    "the loans paid off": ('UPDATE "loans_loan"', 0),
    "the audit trail": ('INSERT INTO "backoffice_auditevent"', 0),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_an_import_that_fails_late_leaves_the_database_as_it_was(stage):
    loans = book(1200)
    before = state()
    statement, after = STAGES[stage]
    with failing(statement, after=after) as runs:
        _result, errors = run_import(resources.PaymentResource(), payments_file(loans), file_name="p.csv")
    assert len(runs) > after, f"{stage} never ran"
    assert errors == [f"file: injected failure of {statement}"]
    assert state() == before


def test_the_command_reports_a_late_failure_and_saves_nothing(tmp_path):
    loans = book(1200)
    path = tmp_path / "payments.csv"
    path.write_text(payments_file(loans))
    before = state()
    with failing('UPDATE "loans_installment"'), pytest.raises(CommandError, match="nothing of this file"):
        call_command("import", "loans.resources.PaymentResource", str(path), "--noinput")
    assert state() == before


def test_a_background_job_that_fails_late_saves_nothing_and_says_why(settings, tmp_path):
    settings.IMPORT_ROOT = tmp_path / "imports"
    loans = book(1200)
    user = make_user("importer", is_superuser=True)
    job = start_import_job(
        user,
        resources.PaymentResource,
        payments_file(loans).encode(),
        file_name="payments.csv",
        format_name="CSV",
        dry_run=False,
    )
    before = state()
    with failing('INSERT INTO "backoffice_auditevent"'):
        run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.errors == [
        {"line": None, "column": None, "message": 'injected failure of INSERT INTO "backoffice_auditevent"'}
    ]
    assert (job.rows_new, job.rows_updated) == (0, 0)
    assert state() == before


def test_a_payment_receiver_failing_inside_the_import_leaves_nothing_saved():
    """The payment signals' receivers (reminders cancelled, cases closed) run inside the import's transaction:
    one failing is the import failing, and nothing of the file is saved."""
    from loans import signals

    loans = book(3)
    before = state()

    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    signals.payments_recorded.connect(broken, dispatch_uid="test.broken")
    try:
        _result, errors = run_import(resources.PaymentResource(), payments_file(loans), file_name="p.csv")
    finally:
        signals.payments_recorded.disconnect(dispatch_uid="test.broken")
    assert errors == ["file: receiver broke"]
    assert state() == before


@pytest.mark.django_db(transaction=True)
def test_a_tier_receiver_failing_after_the_commit_does_not_report_the_saved_import_as_failed(caplog):
    """A customer import's tier changes are re-planned after the commit: the customers are saved whatever the
    receivers do, so the import says so (the receiver's error is logged) and the other receivers still run."""
    from loans import signals

    low, high = make_tier(min_score=300, max_score=599), make_tier(min_score=600, max_score=900)
    Customer.objects.create(ref="TC1", name="C 1", phone="+8613800138000", credit_score=400, tier=low)

    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    signals.tier_changed.connect(broken, dispatch_uid="test.broken")
    try:
        _result, errors = run_import(
            resources.CustomerResource(),
            f"{CUSTOMERS}\nTC1,C 1,+8613800138000,,,zh-hans,Asia/Shanghai,700,,,,,,\n",
            file_name="c.csv",
        )
    finally:
        signals.tier_changed.disconnect(dispatch_uid="test.broken")
    assert errors == []
    assert Customer.objects.get(ref="TC1").tier == high
    assert "receiver broke" in caplog.text
