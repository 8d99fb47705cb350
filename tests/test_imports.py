"""Imports of the loan book: exact columns, all-or-nothing, errors with line and column, idempotent re-import."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from core.imports.resource import run_import
from core.models import AuditEvent
from loans import resources
from loans.models import CreditScore, CreditTier, Customer, Installment, Loan, Payment
from tests.factories import make_customer, make_installment, make_loan, make_tier

pytestmark = pytest.mark.django_db

CUSTOMER_HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)


def csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def run(resource_class, data, **kwargs):
    return run_import(resource_class(), data, **kwargs)


def test_each_resource_has_exactly_the_columns_of_the_spec():
    expected = {
        resources.CreditTierResource: "code, name, min_score, max_score, risk_level, grace_period_days, max_contacts_per_week, channel_order",
        resources.CustomerResource: CUSTOMER_HEADER.replace(",", ", "),
        resources.LoanResource: "ref, customer_ref, principal, currency, disbursed_on, status, autopay",
        resources.InstallmentResource: "loan_ref, seq, due_date, amount_due",
        resources.PaymentResource: "ref, loan_ref, installment_seq, amount, received_at, source",
        resources.CreditScoreResource: "customer_ref, score, scored_at",
    }
    for resource_class, columns in expected.items():
        assert resource_class().get_export_headers() == columns.split(", ")


def test_it_imports_tiers_with_a_channel_list_in_one_cell():
    result, errors = run(
        resources.CreditTierResource,
        csv(
            "code,name,min_score,max_score,risk_level,grace_period_days,max_contacts_per_week,channel_order",
            'IA,Prime,750,950,low,7,2,"push, email,sms"',
            "ID,High risk,300,549,very_high,3,6,sms",
        ),
    )
    assert errors == []
    assert CreditTier.objects.get(code="IA").channel_order == "push,email,sms"
    assert CreditTier.objects.get(code="ID").grace_period_days == 3


def test_it_imports_customers_with_e164_phones_booleans_and_a_derived_tier():
    tier = make_tier(code="IB", min_score=650, max_score=749)
    _result, errors = run(
        resources.CustomerResource,
        csv(
            CUSTOMER_HEADER,
            "IC1,张伟,138 0013 8000,zw@example.com,tok-1,zh-hans,Asia/Shanghai,700,yes,0,FALSE,,,",
            "IC2,Amy Lee,+1 415 555 2671,amy@example.com,,en,America/Los_Angeles,,1,no,true,0,1,dispute",
        ),
    )
    assert errors == []
    zhang, amy = Customer.objects.get(ref="IC1"), Customer.objects.get(ref="IC2")
    assert zhang.phone == "+8613800138000"
    assert zhang.tier == tier and zhang.opt_out_sms and not zhang.opt_out_push
    assert amy.phone == "+14155552671" and amy.timezone == "America/Los_Angeles"
    assert (
        amy.tier is None
        and amy.opt_out_push
        and amy.do_not_contact
        and amy.do_not_contact_reason == "dispute"
    )


def test_reimporting_the_same_file_updates_and_never_duplicates():
    data = csv(CUSTOMER_HEADER, "IC3,Bob,13800138003,,,en,Asia/Shanghai,,,,,,,")
    run(resources.CustomerResource, data)
    result, errors = run(resources.CustomerResource, data.replace("Bob", "Bobby"))
    assert errors == []
    assert Customer.objects.filter(ref="IC3").count() == 1
    assert Customer.objects.get(ref="IC3").name == "Bobby"
    assert result.totals["new"] == 0 and result.totals["update"] == 1


def test_it_imports_loans_and_instalments_keyed_by_loan_ref_and_seq():
    customer = make_customer(ref="IC4")
    _r, errors = run(
        resources.LoanResource,
        csv(
            "ref,customer_ref,principal,currency,disbursed_on,status,autopay",
            "IL1,IC4,3000.00,,2026-01-05,,yes",
        ),
    )
    assert errors == []
    loan = Loan.objects.get(ref="IL1")
    assert loan.customer == customer and loan.currency == "CNY" and loan.autopay and loan.status == "active"
    data = csv("loan_ref,seq,due_date,amount_due", "IL1,1,2026-02-05,1000.00", "IL1,2,2026-03-05,1000.00")
    run(resources.InstallmentResource, data)
    _r, errors = run(
        resources.InstallmentResource, data.replace("IL1,2,2026-03-05,1000.00", "IL1,2,2026-03-06,1100.00")
    )
    assert errors == []
    assert list(loan.installments.values_list("seq", "due_date", "amount_due")) == [
        (1, dt.date(2026, 2, 5), Decimal("1000.00")),
        (2, dt.date(2026, 3, 6), Decimal("1100.00")),
    ]


def test_payment_import_updates_the_instalment_and_a_second_import_does_not_count_twice():
    loan = make_loan(ref="IL2")
    first = make_installment(loan, seq=1, amount_due=Decimal("1000.00"))
    second = make_installment(loan, seq=2, amount_due=Decimal("500.00"))
    data = csv(
        "ref,loan_ref,installment_seq,amount,received_at,source",
        "IP1,IL2,1,600,2026-02-01T10:00:00+08:00,app",
        "IP2,IL2,1,400.00,2026-02-03T09:30:00+08:00,bank_transfer",
        "IP3,IL2,,500,2026-03-01T02:00:00Z,",
    )
    for _ in range(2):
        _r, errors = run(resources.PaymentResource, data)
        assert errors == []
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.amount_paid == Decimal("1000.00")
    assert first.paid_at == dt.datetime(2026, 2, 3, 1, 30, tzinfo=dt.UTC)  # the payment that covered it
    assert (
        second.amount_paid == Decimal("500.00") and second.paid_at is not None
    )  # blank seq: earliest unpaid
    assert Payment.objects.get(ref="IP3").source == "other"
    loan.refresh_from_db()
    assert loan.status == Loan.Status.PAID_OFF
    assert Payment.objects.filter(loan=loan).count() == 3


def test_it_imports_credit_scores_keyed_by_customer_and_time():
    make_customer(ref="IC5")
    data = csv(
        "customer_ref,score,scored_at",
        "IC5,640,2026-03-01T00:00:00+08:00",
        "IC5,655,2026-04-01T00:00:00+08:00",
    )
    run(resources.CreditScoreResource, data)
    _r, errors = run(resources.CreditScoreResource, data.replace("655", "660"))
    assert errors == []
    assert list(
        CreditScore.objects.filter(customer__ref="IC5").order_by("scored_at").values_list("score", flat=True)
    ) == [640, 660]


BAD_ROWS = [
    pytest.param(
        resources.LoanResource,
        [
            "ref,customer_ref,principal,currency,disbursed_on,status,autopay",
            "BL1,BC1,100,CNY,2026-01-01,active,0",
            "BL2,NOPE,100,CNY,2026-01-01,active,0",
        ],
        "line 3, column customer_ref: no customer with reference “NOPE”.",
        Loan,
        id="unknown customer ref",
    ),
    pytest.param(
        resources.LoanResource,
        [
            "ref,customer_ref,principal,currency,disbursed_on,status,autopay",
            "BL1,BC1,100,CNY,2026-01-01,active,0",
            "BL2,BC1,100,CNY,2026-13-01,active,0",
        ],
        "line 3, column disbursed_on: “2026-13-01” is not a date (write it as YYYY-MM-DD).",
        Loan,
        id="bad date",
    ),
    pytest.param(
        resources.LoanResource,
        [
            "ref,customer_ref,principal,currency,disbursed_on,status,autopay",
            "BL1,BC1,100,CNY,2026-01-01,active,0",
            "BL2,BC1,100,CNY,2026-01-01,active,maybe",
        ],
        "line 3, column autopay: “maybe” is not a yes/no value (use 1/0, true/false or yes/no).",
        Loan,
        id="bad boolean",
    ),
    pytest.param(
        resources.CustomerResource,
        [
            CUSTOMER_HEADER,
            "BC2,Ann,13800138002,,,en,Asia/Shanghai,,,,,,,",
            "BC3,Ben,12ab,,,en,Asia/Shanghai,,,,,,,",
        ],
        "line 3, column phone: “12ab” is not a phone number.",
        Customer,
        id="bad phone",
    ),
    pytest.param(
        resources.CustomerResource,
        [
            CUSTOMER_HEADER,
            "BC2,Ann,13800138002,,,en,Asia/Shanghai,,,,,,,",
            "BC3,Ben,13800138003,,,en,Mars/Base,,,,,,,",
        ],
        "line 3, column timezone: “Mars/Base” is not a known time zone.",
        Customer,
        id="bad time zone",
    ),
    pytest.param(
        resources.InstallmentResource,
        ["loan_ref,seq,due_date,amount_due", "BL0,1,2026-02-01,100", "BL0,2,2026-03-01,-5"],
        "line 3, column amount_due: Ensure this value is greater than or equal to 0.",
        Installment,
        id="negative amount",
    ),
    pytest.param(
        resources.InstallmentResource,
        ["loan_ref,seq,due_date,amount_due", "BL0,1,2026-02-01,100", "NOLOAN,2,2026-03-01,5"],
        "line 3, column loan_ref: no loan with reference “NOLOAN”.",
        Installment,
        id="unknown loan in the key",
    ),
    pytest.param(
        resources.InstallmentResource,
        ["loan_ref,seq,due_date,amount_due", "BL0,1,2026-02-01,100", "BL0,1,2026-03-01,5"],
        "line 3, column seq: this key repeats line 2; each row must have its own key.",
        Installment,
        id="key repeated in the file",
    ),
    pytest.param(
        resources.PaymentResource,
        [
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "BP1,BL0,1,10,2026-02-01T10:00:00+08:00,app",
            "BP2,BL0,1,-10,2026-02-01T10:00:00+08:00,app",
        ],
        "line 3, column amount: Ensure this value is greater than or equal to 0.01.",
        Payment,
        id="negative payment",
    ),
    pytest.param(
        resources.PaymentResource,
        [
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "BP1,BL0,1,10,2026-02-01T10:00:00+08:00,app",
            "BP2,BL0,1,10,2026-02-01 10:00,app",
        ],
        "line 3, column received_at: “2026-02-01 10:00” has no UTC offset (write it like 2026-11-30T10:00:00+08:00).",
        Payment,
        id="time without offset",
    ),
    pytest.param(
        resources.PaymentResource,
        [
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "BP1,BL0,1,10,2026-02-01T10:00:00+08:00,app",
            f"{'B' * 41},BL0,1,10,2026-02-01T10:00:00+08:00,app",
        ],
        "line 3, column ref: Ensure this value has at most 40 characters (it has 41).",
        Payment,
        id="reference too long",
    ),
    pytest.param(
        resources.PaymentResource,
        [
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "BP1,BL0,1,10,2026-02-01T10:00:00+08:00,app",
            "BP2,BL0,7,10,2026-02-01T10:00:00+08:00,app",
        ],
        "line 3, column installment_seq: loan “BL0” has no instalment 7.",
        Payment,
        id="unknown instalment",
    ),
    pytest.param(
        resources.CreditTierResource,
        [
            "code,name,min_score,max_score,risk_level,grace_period_days,max_contacts_per_week,channel_order",
            "BA,Prime,800,950,low,7,2,sms",
            "BB,Good,700,820,medium,5,3,sms",
        ],
        "line 3, column min_score: Scores 700-820 overlap tier BZ (700-799).",
        CreditTier,
        id="overlapping tier",
    ),
]


@pytest.mark.parametrize(("resource_class", "lines", "message", "model"), BAD_ROWS)
def test_a_bad_row_is_reported_with_line_and_column_and_nothing_is_saved(
    resource_class, lines, message, model
):
    customer = make_customer(ref="BC1")
    make_installment(make_loan(customer, ref="BL0"), seq=1)
    make_tier(code="BZ", min_score=700, max_score=799)
    before = model.objects.count()
    audit_before = AuditEvent.objects.count()
    _result, errors = run(resource_class, csv(*lines))
    assert message in errors
    assert model.objects.count() == before  # the good row before the bad one is not saved either
    assert AuditEvent.objects.count() == audit_before


def test_a_payment_file_with_an_error_changes_no_instalment():
    installment = make_installment(make_loan(ref="BL9"), seq=1, amount_due=Decimal("100"))
    _r, errors = run(
        resources.PaymentResource,
        csv(
            "ref,loan_ref,installment_seq,amount,received_at,source",
            "BP9,BL9,1,100,2026-02-01T10:00:00+08:00,app",
            "BP10,BL9,1,abc,2026-02-01T10:00:00+08:00,app",
        ),
    )
    assert errors == ["line 3, column amount: “abc” is not an amount (write it like 1234.50)."]
    installment.refresh_from_db()
    assert installment.amount_paid == 0 and installment.paid_at is None


def test_a_dry_run_checks_everything_and_saves_nothing():
    result, errors = run(
        resources.CustomerResource,
        csv(CUSTOMER_HEADER, "DC1,Dee,13800138009,,,en,Asia/Shanghai,,,,,,,"),
        dry_run=True,
    )
    assert errors == [] and result.totals["new"] == 1
    assert not Customer.objects.filter(ref="DC1").exists()
    assert not AuditEvent.objects.filter(action="backoffice.import.completed").exists()


def test_it_imports_an_xlsx_file_with_native_date_and_number_cells():
    import openpyxl

    make_customer(ref="XC1")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["ref", "customer_ref", "principal", "currency", "disbursed_on", "status", "autopay"])
    sheet.append(["XL1", "XC1", 2500.5, "CNY", dt.datetime(2026, 5, 6), "active", 1])
    sheet.append([1002, "XC1", 800, None, "2026-05-07", None, "no"])
    buffer = io.BytesIO()
    book.save(buffer)
    _r, errors = run(resources.LoanResource, buffer.getvalue(), format_name="XLSX")
    assert errors == []
    first, second = Loan.objects.get(ref="XL1"), Loan.objects.get(ref="1002")
    assert (
        first.principal == Decimal("2500.50") and first.disbursed_on == dt.date(2026, 5, 6) and first.autopay
    )
    assert second.currency == "CNY" and not second.autopay


def test_the_import_command_saves_a_good_file_and_writes_the_audit_event(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(
        csv(CUSTOMER_HEADER, "MC1,梅,13800138011,,,zh-hans,Asia/Shanghai,,,,,,,"), encoding="utf-8"
    )
    out = io.StringIO()
    call_command("import", "loans.resources.CustomerResource", str(path), "--noinput", stdout=out)
    assert "1 new" in out.getvalue()
    event = AuditEvent.objects.get(action="backoffice.import.completed")
    assert event.after["file_name"] == "customers.csv"
    assert event.after["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert event.after["rows"] == {"total": 1, "new": 1, "updated": 0, "skipped": 0, "errors": 0}
    assert event.after["resource"] == "loans.resources.CustomerResource"
    assert event.actor == "command:import"


def test_the_import_command_prints_line_and_column_and_fails_on_a_bad_file(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(
        csv(
            CUSTOMER_HEADER,
            "MC2,Ann,13800138012,,,en,Asia/Shanghai,,,,,,,",
            "MC3,Ben,12ab,,,en,Asia/Shanghai,,,,,,,",
        ),
        encoding="utf-8",
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing of this file was saved"):
        call_command("import", "loans.resources.CustomerResource", str(path), "--noinput", stderr=err)
    assert "line 3, column phone: “12ab” is not a phone number." in err.getvalue()
    assert not Customer.objects.filter(ref__in=["MC2", "MC3"]).exists()


def test_the_import_command_dry_run_saves_nothing(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(csv(CUSTOMER_HEADER, "MC4,Ann,13800138014,,,en,Asia/Shanghai,,,,,,,"), encoding="utf-8")
    out = io.StringIO()
    call_command(
        "import", "loans.resources.CustomerResource", str(path), "--noinput", "--dry-run", stdout=out
    )
    assert "nothing saved" in out.getvalue()
    assert not Customer.objects.filter(ref="MC4").exists()


def test_an_export_escapes_cells_a_spreadsheet_would_run_as_formulas():
    make_customer(ref="EX1", name='=HYPERLINK("http://evil")')
    dataset = resources.CustomerResource().export(Customer.objects.filter(ref="EX1"))
    assert dataset.dict[0]["name"] == '\'=HYPERLINK("http://evil")'
    assert dataset.dict[0]["phone"].startswith("+86")  # a number, not a formula: it re-imports as it is


def test_an_export_reimports_as_the_same_rows():
    make_tier(code="RT1", min_score=100, max_score=199)
    exported = resources.CreditTierResource().export(CreditTier.objects.filter(code="RT1")).export("csv")
    result, errors = run(resources.CreditTierResource, exported)
    assert (
        errors == [] and result.totals["update"] == 1 and CreditTier.objects.filter(code="RT1").count() == 1
    )
