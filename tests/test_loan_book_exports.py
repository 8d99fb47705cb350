"""Exports of the loan book from the admin's "Export" button: masked for whoever may not see personal data,
escaped against spreadsheet formulas in CSV and XLSX, and recorded in the audit trail."""

from __future__ import annotations

import csv
import hashlib
import io

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from backoffice import roles
from core.models import AuditEvent
from tests.factories import make_customer, make_tier, make_user

pytestmark = pytest.mark.django_db

FORMULAS = [
    '=HYPERLINK("http://evil.example")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd",
    "\tTAB",
    "\rCR",
]


def export(client, model_name: str, fmt: str, query: str = "") -> bytes:
    """Open the export page as the user does, tick every column, choose the format and download."""
    url = reverse(f"admin:loans_{model_name}_export") + (f"?{query}" if query else "")
    form = client.get(url).context["form"]
    data = {name: "on" for name, field in form.fields.items() if field.__class__.__name__ == "BooleanField"}
    choices = dict((label, value) for value, label in form.fields["format"].choices)
    data.update({"format": choices[fmt], "resource": "0"})
    response = client.post(url, data)
    assert response.status_code == 200 and response.get("Content-Disposition", "").startswith("attachment"), (
        response
    )
    return b"".join(response) if response.streaming else response.content


def rows(payload: bytes, fmt: str) -> list[dict]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"), newline="")))
    sheet = openpyxl.load_workbook(io.BytesIO(payload)).active
    # XML turns a carriage return into a line feed: compare them as one.
    values = [
        [v.replace("\n", "\r") if isinstance(v, str) else v for v in r]
        for r in sheet.iter_rows(values_only=True)
    ]
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type != "f", f"{cell.coordinate} is a formula"
    return [dict(zip(values[0], r, strict=True)) for r in values[1:]]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_compliance_officer_exports_customers_masked_and_the_export_is_audited(client, fmt):
    make_customer(
        ref="MX1",
        name="王小明",
        phone="+8613812345678",
        email="wang.xiaoming@example.com",
        push_token="tok-abcdef123",
        language="en",
    )
    make_customer(
        ref="MX2", name="Alice Smith", phone="+8613987654321", email="alice@example.com", language="en"
    )
    make_customer(ref="MX9", language="zh-hans")
    client.force_login(make_user("officer", group=roles.COMPLIANCE_OFFICER))
    payload = export(client, "customer", fmt, "language__exact=en")
    text = payload.decode("utf-8-sig", errors="ignore") if fmt == "csv" else str(rows(payload, fmt))
    for secret in (
        "王小明",
        "小明",
        "13812345678",
        "wang.xiaoming@example.com",
        "Alice Smith",
        "13987654321",
        "alice@example.com",
        "tok-abcdef123",
    ):
        assert secret not in text
    by_ref = {r["ref"]: r for r in rows(payload, fmt)}
    assert by_ref["MX1"]["name"] == "王**" and by_ref["MX1"]["phone"] == "'+86138****5678"
    assert by_ref["MX1"]["email"] == "w***@example.com" and by_ref["MX2"]["name"] == "A**** S****"
    event = AuditEvent.objects.get(action="backoffice.export.completed")
    assert event.actor == "officer" and event.object_type == "loans.Customer"
    assert event.after["masked"] is True and event.after["format"] == fmt and event.after["rows"] == 2
    assert event.after["filters"] == {"language__exact": "en"} and "MX9" not in by_ref
    assert event.after["sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_user_with_the_personal_data_permission_exports_customers_in_clear(client):
    make_customer(ref="MX3", name="王小明", phone="+8613812345678", email="wang@example.com")
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    (row,) = [r for r in rows(export(client, "customer", "csv"), "csv") if r["ref"] == "MX3"]
    assert (row["name"], row["phone"], row["email"]) == ("王小明", "+8613812345678", "wang@example.com")
    assert AuditEvent.objects.get(action="backoffice.export.completed").after["masked"] is False


def test_exporting_from_the_admin_needs_the_export_permission(client):
    user = make_user("viewer")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_customer", "view_personal_data"])
    )
    client.force_login(user)
    assert client.get(reverse("admin:loans_customer_export")).status_code == 403
    assert (
        client.post(reverse("admin:loans_customer_export"), {"format": "0", "resource": "0"}).status_code
        == 403
    )
    assert not AuditEvent.objects.filter(action="backoffice.export.completed").exists()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_formula_like_cell_of_an_admin_export_is_escaped(client, fmt):
    for n, text in enumerate(FORMULAS):
        make_tier(code=f"FX{n}", name=text, min_score=20000 + n * 10, max_score=20000 + n * 10 + 9)
        make_customer(ref=f"FC{n}", name=text, push_token=text, email=f"{text}@example.com")
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    tiers = {r["code"]: r for r in rows(export(client, "credittier", fmt), fmt)}
    customers = {r["ref"]: r for r in rows(export(client, "customer", fmt), fmt)}
    for n, text in enumerate(FORMULAS):
        assert tiers[f"FX{n}"]["name"] == "'" + text
        assert customers[f"FC{n}"]["name"] == "'" + text
        assert customers[f"FC{n}"]["push_token"] == "'" + text
        assert customers[f"FC{n}"]["email"] == f"'{text}@example.com"
