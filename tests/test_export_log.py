from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from io import StringIO

import openpyxl
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.audit import log_event
from core.exports.audit import AUDIT_COLUMNS
from core.exports.files import export_to_file
from core.models import AuditEvent
from notifications.exports import NOTIFICATION_COLUMNS
from notifications.models import NotificationLog
from tests.factories import make_customer
from tests.factories_audit import make_notification

SECRETS = (
    "Alice Smith",
    "Alice",
    "Smith",
    "张小明",
    "小明",
    "+8613812345678",
    "13812345678",
    "13912345678",
    "alice.smith@example.com",
    "xiaoming@example.cn",
    "bob@other.org",
)


@pytest.fixture
def book(db):
    alice = make_customer(name="Alice Smith", phone="+8613812345678", email="alice.smith@example.com")
    ming = make_customer(name="张小明", phone="+8613912345678", email="xiaoming@example.cn")
    make_notification(
        alice,
        channel="email",
        destination=alice.email,
        subject="Alice Smith: payment due",
        body="Dear Alice, call us back on 138 1234 5678 or write to bob@other.org. Due 2026-12-01, CNY 500.00.",
    )
    make_notification(ming, body="张小明您好，请致电13912345678确认。到期日 2026-12-01。")
    make_notification(
        ming, channel="push", destination="device-token-abcdef", status="suppressed", reason="frequency_cap"
    )
    log_event(
        "loans.customer.changed",
        actor="operator",
        object_type="loans.Customer",
        object_id=str(alice.pk),
        before={"name": "Alice Smith", "phone": "+8613812345678"},
        after={"name": "Alice Smith", "phone": "+8613812345678", "email": "alice.smith@example.com"},
    )
    log_event(
        "notifications.contact.sent",
        actor="job:dispatch",
        after={"destination": "+8613912345678", "body": "张小明您好，请致电13912345678确认。"},
    )
    return {"alice": alice, "ming": ming}


def read_rows(path, fmt) -> list[list]:
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return list(csv.reader(fh))
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(path, read_only=True).active
        # openpyxl leaves the XML escape of a carriage return as it is.
        return [
            ["" if v is None else v.replace("_x000D_", "\r") if isinstance(v, str) else v for v in row]
            for row in sheet.iter_rows(values_only=True)
        ]
    data = json.loads(path.read_text(encoding="utf-8"))
    return [list(data[0].keys()) if data else []] + [list(r.values()) for r in data]


def all_text(path, fmt) -> str:
    return "\n".join(" | ".join(str(c) for c in row) for row in read_rows(path, fmt))


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
@pytest.mark.parametrize("kind", ["notifications", "audit"])
def test_no_full_name_phone_or_email_appears_in_a_masked_export(book, tmp_path, fmt, kind):
    out = tmp_path / f"{kind}.{fmt}"
    call_command("export_log", kind, "--format", fmt, "--output", str(out), stdout=StringIO())
    text = all_text(out, fmt)
    for secret in SECRETS:
        assert secret not in text, secret
    assert "A**** S****" in text and "138****5678" in text
    if kind == "notifications":
        assert "张**" in text and "a***@example.com" in text
    else:
        assert "[withheld: " in text  # a message body in the trail with no known name in it


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_an_unmasked_export_keeps_personal_data(book, tmp_path, fmt):
    out = tmp_path / f"n.{fmt}"
    call_command(
        "export_log", "notifications", "--format", fmt, "--output", str(out), "--unmasked", stdout=StringIO()
    )
    text = all_text(out, fmt)
    assert "Alice Smith" in text and "张小明" in text and "bob@other.org" in text
    assert json.loads((tmp_path / f"n.{fmt}.manifest.json").read_text())["masked"] is False


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
@pytest.mark.parametrize("kind", ["notifications", "audit"])
def test_the_columns_are_exactly_the_specs(book, tmp_path, fmt, kind):
    out = tmp_path / f"{kind}.{fmt}"
    export_to_file(kind, fmt, out)
    rows = read_rows(out, fmt)
    assert tuple(rows[0]) == (NOTIFICATION_COLUMNS if kind == "notifications" else AUDIT_COLUMNS)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_the_manifest_holds_the_files_hash_row_count_and_filters(book, tmp_path, fmt):
    out = tmp_path / f"n.{fmt}"
    call_command(
        "export_log",
        "notifications",
        "--format",
        fmt,
        "--output",
        str(out),
        "--since",
        "2026-11-01",
        "--until",
        "2026-12-01T00:00:00+08:00",
        stdout=StringIO(),
    )
    manifest = json.loads((tmp_path / f"n.{fmt}.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["rows"] == 3 == len(read_rows(out, fmt)) - 1
    assert manifest["format"] == fmt and manifest["masked"] is True and manifest["kind"] == "notifications"
    assert manifest["columns"] == list(NOTIFICATION_COLUMNS)
    assert manifest["filters"] == {"since": "2026-11-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"}
    assert manifest["generated_at"] and manifest["generated_by"]


def test_since_and_until_select_the_rows(book, tmp_path):
    make_notification(scheduled_for=dt.datetime(2026, 10, 1, tzinfo=dt.UTC))
    out = tmp_path / "n.json"
    result = export_to_file("notifications", "json", out, filters={"until": "2026-11-01T00:00:00+00:00"})
    assert result.rows == 1
    result = export_to_file("notifications", "json", out, filters={"since": "2026-11-01T00:00:00+00:00"})
    assert result.rows == 3


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_cells_a_spreadsheet_would_run_are_escaped(db, tmp_path, fmt):
    dangerous = ['=HYPERLINK("http://evil","x")', "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR"]
    customer = make_customer(name="=1+1")
    make_notification(
        customer,
        subject=dangerous[0],
        body=dangerous[1],
        provider_message_id=dangerous[3],
        loan_refs=dangerous[2],
        destination=dangerous[4],
        reason="",
    )
    make_notification(customer, subject=dangerous[5])
    out = tmp_path / f"n.{fmt}"
    export_to_file("notifications", fmt, out, masked=False)
    cells = [c for row in read_rows(out, fmt)[1:] for c in row if isinstance(c, str) and c]
    for value in dangerous + ["=1+1"]:
        assert value not in cells
        assert "'" + value in cells
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(out).active
        assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_an_audit_export_is_recorded_after_its_snapshot_and_does_not_contain_itself(book, tmp_path):
    out = tmp_path / "audit.json"
    before = AuditEvent.objects.order_by("-seq").first()
    result = export_to_file("audit", "json", out, generated_by="tests")
    exported = json.loads(out.read_text())
    assert exported[-1]["seq"] == before.seq == result.manifest["through_seq"]
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "backoffice.export.completed" and event.seq == before.seq + 1
    assert event.after["manifest_sha256"] == hashlib.sha256(result.manifest_path.read_bytes()).hexdigest()
    assert event.after["rows"] == len(exported) and event.after["kind"] == "audit"


def test_the_command_line_export_is_audited_with_its_filters(book, tmp_path):
    out = tmp_path / "n.csv"
    call_command(
        "export_log",
        "notifications",
        "--output",
        str(out),
        "--since",
        "2026-11-01T00:00:00+00:00",
        stdout=StringIO(),
    )
    event = AuditEvent.objects.filter(action="backoffice.export.completed").get()
    assert event.after["filters"] == {"since": "2026-11-01T00:00:00+00:00"}
    assert event.after["masked"] is True and event.actor.startswith("command line")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_the_number_of_queries_does_not_grow_with_the_rows(db, tmp_path, fmt):
    customer = make_customer()

    def queries_for_export() -> int:
        with CaptureQueriesContext(connection) as ctx:
            export_to_file("notifications", fmt, tmp_path / f"n.{fmt}")
        return len(ctx.captured_queries)

    make_notification(customer)
    few = queries_for_export()
    NotificationLog.objects.bulk_create(
        NotificationLog(
            customer=customer,
            channel="sms",
            kind="pre_due",
            status="sent",
            body="x",
            scheduled_for=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
            dedupe_key=f"bulk-{i}",
        )
        for i in range(4500)
    )
    assert queries_for_export() == few
    assert len(read_rows(tmp_path / f"n.{fmt}", fmt)) == 4502
