"""The fast path of a real import (``BookResource.import_rows_fast``) gives exactly what django-import-export's
own row loop gives: the same rows saved, the same errors with line and column, nothing saved when a row is bad,
the same audit events, totals, row results and progress. Each file here is imported twice in the same database
state, once with ``fast_import`` off and once on, and the two outcomes are compared."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import transaction
from django.utils import timezone

from core.imports.resource import run_import
from core.models import AuditEvent
from debt_collection.models import EscalationStep
from debt_collection.resources import EscalationStepResource
from loans import resources
from loans.models import CreditScore, CreditTier, Customer, Installment, Loan, Payment
from notifications.models import ReminderRule, ReminderTemplate
from notifications.resources import ReminderRuleResource, ReminderTemplateResource
from tests.factories import make_customer, make_installment, make_loan, make_payment, make_tier
from tests.test_imports import BAD_ROWS, CUSTOMER_HEADER

pytestmark = pytest.mark.django_db

INSTALMENTS = "loan_ref,seq,due_date,amount_due"


def csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


_STARTED: list[dt.datetime] = []


@pytest.fixture(autouse=True)
def _note_when_the_test_started():
    _STARTED[:] = [timezone.now()]


def table(model) -> list[dict]:
    """Every row of the table but its id; a moment set by the import itself (``paid_at`` of an instalment its
    amount covers) reads as ``"now"``, as the two imports run a few milliseconds apart. Only moments since the
    test started count: a fixture's fixed time must not read as "now" on the day the suite runs near it."""
    fields = [
        f.attname for f in model._meta.concrete_fields if f.attname not in ("id", "created_at", "updated_at")
    ]
    now = timezone.now()
    since = _STARTED[0] - dt.timedelta(seconds=1) if _STARTED else now - dt.timedelta(minutes=5)
    return sorted(
        (
            {
                name: "now" if isinstance(value, dt.datetime) and since <= value <= now else value
                for name, value in zip(fields, row)
            }
            for row in model.objects.values_list(*fields)
        ),
        key=repr,
    )


def audit_trail(existing: dict[str, set[str]]) -> list[tuple]:
    """The events (not their time or hashes). An object the import created is named ``"new"`` and a moment
    set by the import reads ``"now"``: PostgreSQL does not give back the ids a rolled-back import used, and
    the two imports run a few milliseconds apart."""
    return [
        (
            e.action,
            e.actor,
            e.object_type,
            e.object_id if e.object_id in existing.get(e.object_type, ()) or not e.object_id else "new",
            _now_as_text(e.before),
            _now_as_text(_new_instalments_named(e.after, existing)),
        )
        for e in AuditEvent.objects.order_by("seq")
    ]


def _new_instalments_named(values, existing: dict[str, set[str]]):
    """An allocation event lists its instalments by id: one the import created is named ``"new"`` too."""
    if not isinstance(values, dict) or not isinstance(values.get("allocations"), list):
        return values
    known = existing.get("loans.Installment", ())
    return {
        **values,
        "allocations": [
            {**entry, "id": entry["id"] if str(entry.get("id")) in known else "new"}
            if isinstance(entry, dict) and "id" in entry
            else entry
            for entry in values["allocations"]
        ],
    }


def _now_as_text(values):
    if not isinstance(values, dict):
        return values
    today = timezone.now().date().isoformat()
    return {k: "now" if isinstance(v, str) and v.startswith(today + "T") else v for k, v in values.items()}


def object_ids() -> dict[str, set[str]]:
    return {
        model._meta.label: {str(pk) for pk in model.objects.values_list("pk", flat=True)}
        for model in apps.get_models()
    }


def outcome(resource_class, data, fast: bool, models, **kwargs) -> dict:
    """Import ``data`` with the fast path on or off, note everything the import shows and changes, roll back."""
    progress: list[tuple[int, int | None]] = []
    existing = object_ids()
    with transaction.atomic():
        resource = resource_class()
        resource.fast_import = fast
        original = resource.import_rows_fast
        calls = []

        def spy(*args, **kw):
            calls.append(1)
            return original(*args, **kw)

        resource.import_rows_fast = spy
        result, errors = run_import(
            resource, data, progress=lambda done, total: progress.append((done, total)), **kwargs
        )
        seen = {
            "errors": errors,
            "records": result.book_error_records,
            "totals": dict(result.totals),
            "total_rows": result.total_rows,
            # The fast path keeps the first rows' results (``rows_kept``); the totals count every row.
            "rows": [(r.import_type, r.object_id, r.object_repr) for r in result.rows][: resource.rows_kept],
            "invalid": [(r.number, r.error_dict, r.values) for r in result.invalid_rows],
            "base_errors": [str(e.error) for e in result.base_errors],
            "progress": progress,
            "tables": {model.__name__: table(model) for model in models},
            "audit": audit_trail(existing),
        }
        transaction.set_rollback(True)
    seen["fast"] = bool(calls)
    return seen


def assert_same(resource_class, data, models, *, fast_expected=True, **kwargs) -> dict:
    stock = outcome(resource_class, data, False, models, **kwargs)
    fast = outcome(resource_class, data, True, models, **kwargs)
    assert not stock["fast"]
    assert fast["fast"] is fast_expected
    stock.pop("fast"), fast.pop("fast")
    for key in stock:
        assert fast[key] == stock[key], key
    return fast


@pytest.fixture
def book():
    customer = make_customer(ref="FC1")
    first = make_loan(customer, ref="FL1")
    second = make_loan(customer, ref="FL2")
    paid = make_installment(first, seq=1, amount_due=Decimal("100.00"), due_date=dt.date(2026, 2, 1))
    make_payment(paid, amount=Decimal("100.00"))
    make_installment(second, seq=1, amount_due=Decimal("200.00"), due_date=dt.date(2026, 2, 10))
    make_tier(code="FZ", min_score=700, max_score=799)
    return customer


INSTALMENT_MODELS = (Installment, Loan, Payment)

GOOD_INSTALMENT_FILES = [
    pytest.param(
        [
            INSTALMENTS,
            "FL1,2,2026-03-01,100.00",
            "FL1,3,2026-04-01,100",
            "FL2,2,2026-03-10,0",
            "FL2,3,2026-04-10,0.5",
        ],
        id="new rows",
    ),
    pytest.param(
        [INSTALMENTS, "FL1,1,2026-02-01,150.00", "FL2,1,2026-02-11,200.00", "FL2,2,2026-03-11,200.00"],
        id="updates a paid and an unpaid instalment and adds one",
    ),
    pytest.param(
        [INSTALMENTS, "FL1,1,2026-02-01,40", "  FL1 , 2 ,2026-03-01, 100.00 ", "FL1,3.0,2026-04-01,1e2"],
        id="cells with spaces, 3.0 and 1e2",
    ),
]


@pytest.mark.parametrize("lines", GOOD_INSTALMENT_FILES)
def test_a_good_instalment_file_saves_the_same_rows_both_ways(book, lines):
    seen = assert_same(resources.InstallmentResource, csv(*lines), INSTALMENT_MODELS)
    assert seen["errors"] == [] and "backoffice.import.completed" in [event[0] for event in seen["audit"]]
    assert seen["progress"][-1] == (len(lines) - 1, len(lines) - 1)


BAD_INSTALMENT_FILES = [
    pytest.param(["FL1,2,2026-03-01,-5"], id="negative amount"),
    pytest.param(["NOLOAN,2,2026-03-01,5"], id="unknown loan"),
    pytest.param(["FL1,2,2026-03-01,5", "FL1,2,2026-04-01,5"], id="repeated key"),
    pytest.param(["FL1,2,2026-02-30,5"], id="no such date"),
    pytest.param(["FL1,2,01/03/2026,5"], id="date in another format"),
    pytest.param(["FL1,abc,2026-03-01,5"], id="seq not a number"),
    pytest.param(["FL1,1.5,2026-03-01,5"], id="seq not whole"),
    pytest.param(["FL1,99999999999999,2026-03-01,5"], id="seq too large"),
    pytest.param(["FL1,-1,2026-03-01,5"], id="seq negative"),
    pytest.param(["FL1,,2026-03-01,5"], id="seq empty"),
    pytest.param([",2,2026-03-01,5"], id="loan empty"),
    pytest.param(["FL1,2,,5"], id="date empty"),
    pytest.param(["FL1,2,2026-03-01,"], id="amount empty"),
    pytest.param(["FL1,2,2026-03-01,12345678901234567"], id="amount too many digits"),
    pytest.param(["FL1,2,2026-03-01,1.234"], id="amount too many decimals"),
    pytest.param(["FL1,2,2026-03-01,abc"], id="amount not a number"),
    pytest.param(["NOLOAN,x,2026-13-01,-5"], id="bad key cells hide the others"),
    pytest.param(["FL1,2,2026-13-01,-5"], id="two bad cells in a row"),
    pytest.param(
        ["FL1,2,2026-03-01,-5", "FL1,3,2026-03-01,-5", "FL2,2,2026-03-01,-5"],
        id="same bad cell on three lines",
    ),
    pytest.param(["FL1,2,2026-03-01,5", "FL1,2,2026-13-01,-5"], id="repeated key with bad cells"),
]


@pytest.mark.parametrize("bad", BAD_INSTALMENT_FILES)
def test_a_bad_instalment_file_gives_the_same_errors_both_ways_and_saves_nothing(book, bad):
    lines = [INSTALMENTS, "FL1,1,2026-02-01,120.00", "FL2,5,2026-06-10,10", *bad, "FL2,6,2026-07-10,10"]
    before = {"tables": {m.__name__: table(m) for m in INSTALMENT_MODELS}, "audit": audit_trail(object_ids())}
    seen = assert_same(resources.InstallmentResource, csv(*lines), INSTALMENT_MODELS)
    assert seen["errors"], "the file has a bad row"
    assert all(error.startswith("line ") for error in seen["errors"])
    assert seen["tables"] == before["tables"] and seen["audit"] == before["audit"]


def test_errors_name_line_and_column_on_the_fast_path(book):
    data = csv(
        INSTALMENTS,
        "FL1,2,2026-03-01,5",
        "FL1,3,2026-13-01,-5",
        "NOLOAN,2,2026-03-01,5",
        "FL1,2,2026-03-01,5",
    )
    seen = assert_same(resources.InstallmentResource, data, INSTALMENT_MODELS)
    assert seen["errors"] == [
        "line 3, column due_date: “2026-13-01” is not a date (write it as YYYY-MM-DD).",
        "line 3, column amount_due: Ensure this value is greater than or equal to 0.",
        "line 4, column loan_ref: no loan with reference “NOLOAN”.",
        "line 5, column seq: this key repeats line 2; each row must have its own key.",
    ]


def test_a_bad_last_row_of_a_file_of_several_batches_saves_nothing(book):
    """The first batches are written before the bad row is read: the import's transaction takes them back."""
    loans = [make_loan(book, ref=f"FB{n}") for n in range(30)]
    lines = [INSTALMENTS] + [
        f"{loan.ref},{seq},2026-03-01,{seq}.25" for loan in loans for seq in range(1, 81)
    ]
    lines.append("FB0,81,2026-03-01,-1")
    assert len(lines) - 2 > 2 * resources.InstallmentResource._meta.batch_size
    count, audit = Installment.objects.count(), AuditEvent.objects.count()
    seen = assert_same(resources.InstallmentResource, csv(*lines), INSTALMENT_MODELS)
    assert seen["errors"] == [
        "line 2402, column amount_due: Ensure this value is greater than or equal to 0."
    ]
    assert Installment.objects.count() == count and AuditEvent.objects.count() == audit
    good = assert_same(resources.InstallmentResource, csv(*lines[:-1]), INSTALMENT_MODELS)
    assert good["errors"] == [] and good["totals"]["new"] == 2400


def test_an_xlsx_file_with_typed_cells_gives_the_same_result(book):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["loan_ref", "seq", "due_date", "amount_due"])
    sheet.append(["FL1", 2, dt.datetime(2026, 3, 1), 100.5])
    sheet.append(["FL1", 3.0, "2026-04-01", 100])
    sheet.append(["FL2", 2, dt.datetime(2026, 3, 10), -1.5])
    buffer = io.BytesIO()
    workbook.save(buffer)
    seen = assert_same(
        resources.InstallmentResource, buffer.getvalue(), INSTALMENT_MODELS, format_name="XLSX"
    )
    assert seen["errors"] == ["line 4, column amount_due: Ensure this value is greater than or equal to 0."]


def test_a_dry_run_keeps_the_preview_of_the_library(book):
    """The preview shows each row's diff and unchanged rows as skipped: the library's own loop, not the fast path."""
    data = csv(INSTALMENTS, "FL2,1,2026-02-10,200.00", "FL2,2,2026-03-10,200.00")
    seen = assert_same(
        resources.InstallmentResource, data, INSTALMENT_MODELS, fast_expected=False, dry_run=True
    )
    assert seen["totals"]["skip"] == 1 and seen["totals"]["new"] == 1
    result, _errors = run_import(resources.InstallmentResource(), data, dry_run=True)
    assert all(row.diff for row in result.rows)
    assert Installment.objects.filter(loan__ref="FL2").count() == 1


OTHER_GOOD_FILES = [
    pytest.param(
        resources.CustomerResource,
        [
            CUSTOMER_HEADER,
            "FC1,Ann,138 0013 8000,ann@example.com,,en,Asia/Shanghai,720,yes,0,,,,",
            "FC2,Ben,+1 415 555 2671,,,en,America/Los_Angeles,,1,no,true,0,1,dispute",
        ],
        (Customer,),
        id="customers",
    ),
    pytest.param(
        resources.LoanResource,
        [
            "ref,customer_ref,principal,currency,disbursed_on,status,autopay",
            "FL1,FC1,3000,,2026-01-05,,yes",
            "FL3,FC1,800.5,CNY,2026-01-06,active,0",
        ],
        (Loan,),
        id="loans",
    ),
    pytest.param(
        resources.PaymentResource,
        [
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "FP1,FL2,1,50,2026-02-01T10:00:00+08:00,app",
            "FP2,FL2,,150.00,2026-02-03T09:30:00+08:00,",
        ],
        (Payment, Installment, Loan),
        id="payments",
    ),
    pytest.param(
        resources.CreditScoreResource,
        ["customer_ref,score,scored_at", "FC1,640,2026-03-01T00:00:00+08:00", "FC1,655,2026-04-01T00:00:00Z"],
        (CreditScore,),
        id="scores",
    ),
    pytest.param(
        ReminderTemplateResource,
        [
            "kind,channel,language,subject,body",
            'due_today,sms,en,,"Hello {customer_name}, {amount_due} is due."',
        ],
        (ReminderTemplate,),
        id="templates",
    ),
    pytest.param(
        ReminderRuleResource,
        [
            "tier_code,offset_days,channel,kind,send_time",
            "FZ,-3,sms,pre_due,09:30",
            "FZ,0,push,due_today,10:00",
        ],
        (ReminderRule,),
        id="rules",
    ),
    pytest.param(
        EscalationStepResource,
        ["tier_code,min_dpd,stage,action,kind", "FZ,1,early,sms,overdue", "FZ,30,call,call_task,overdue"],
        (EscalationStep,),
        id="escalation steps",
    ),
]


@pytest.mark.parametrize(("resource_class", "lines", "models"), OTHER_GOOD_FILES)
def test_every_import_of_the_book_gives_the_same_result_both_ways(book, resource_class, lines, models):
    seen = assert_same(resource_class, csv(*lines), models)
    assert seen["errors"] == []
    # Twice: the second import updates what the first created.
    with transaction.atomic():
        run_import(resource_class(), csv(*lines))
        assert_same(resource_class, csv(*lines), models)
        transaction.set_rollback(True)


@pytest.mark.parametrize(("resource_class", "lines", "message", "model"), BAD_ROWS)
def test_the_bad_rows_of_every_import_give_the_same_errors_both_ways(resource_class, lines, message, model):
    customer = make_customer(ref="BC1")
    make_installment(make_loan(customer, ref="BL0"), seq=1)
    make_tier(code="BZ", min_score=700, max_score=799)
    # Tiers check overlaps in ``import_instance``: that import keeps the library's loop.
    fast_expected = resource_class is not resources.CreditTierResource
    seen = assert_same(resource_class, csv(*lines), (model, CreditTier), fast_expected=fast_expected)
    assert message in seen["errors"]


def test_the_cycle_collector_is_back_after_an_import_as_it_was_before(book):
    import gc

    good = csv(INSTALMENTS, "FL1,2,2026-03-01,5")
    bad = csv(INSTALMENTS, "FL1,2,2026-03-01,-5")
    assert gc.isenabled()
    seen = []
    for data in (good, bad):
        run_import(
            resources.InstallmentResource(), data, progress=lambda done, total: seen.append(gc.isenabled())
        )
        assert gc.isenabled()
    assert seen == [False, False]  # paused while the rows are read
    gc.disable()
    try:
        run_import(resources.InstallmentResource(), good)
        assert not gc.isenabled()  # a process that runs without it keeps running without it
    finally:
        gc.enable()
