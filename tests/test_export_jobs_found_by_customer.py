"""An operator finds the exports that concern a customer by typing the customer's reference on the Exports list:
those whose export form named the customer and those exported from a log searched for them. The export form
and ``manage.py export_log --customer`` keep that customer's rows only (contacts; audit events about them)."""

from __future__ import annotations

import csv
import io
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from core.audit import log_event
from core.models import ExportJob
from tests.factories import make_customer, make_loan
from tests.factories_audit import make_compliance_officer, make_notification

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def two_customers(db):
    alice = make_customer(ref="C200001", name="Alice Smith")
    bob = make_customer(ref="C200002", name="Bob Lee")
    for customer in (alice, bob):
        make_notification(customer, status="sent")
        log_event("loans.customer.changed", actor="ops", obj=customer, after={"opt_out_sms": True})
        log_event("loans.loan.created", actor="ops", obj=make_loan(customer), after={"ref": "x"})
    return alice, bob


def export(client, model: str, *, query: str = "", customer: str = "", fmt: str = "json"):
    return client.post(
        reverse(f"admin:{model}_export"), {"format": fmt, "query": query, "customer_ref": customer}
    )


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.content[:300]
    return json.loads(b"".join(response.streaming_content))


def test_it_finds_the_exports_filtered_by_or_searched_for_a_customer(client, two_customers):
    alice, bob = two_customers
    client.force_login(make_compliance_officer())
    export(client, "notifications_notificationlog", customer="c200001")  # typed in lower case
    export(client, "core_auditevent", query="q=C200001")
    export(client, "notifications_notificationlog")  # the whole log: every customer's
    export(client, "core_auditevent", customer="C200002")
    by_customer = {job.pk: job.filters for job in ExportJob.objects.all()}
    assert len(by_customer) == 4

    page = client.get(reverse("admin:core_exportjob_changelist"), {"q": "c200001"})

    assert page.status_code == 200
    found = [job.pk for job in page.context["cl"].result_list]
    assert sorted(by_customer[pk].get("customer_ref") or by_customer[pk].get("q") for pk in found) == [
        "C200001",
        "c200001",
    ]
    html = page.content.decode()
    assert "c200001" in html and "search “C200001”" in html and "C200002" not in html


def test_a_search_for_a_customer_without_exports_finds_none_and_an_empty_one_lists_all(client, two_customers):
    client.force_login(make_compliance_officer())
    export(client, "notifications_notificationlog", customer="C200001")

    nothing = client.get(reverse("admin:core_exportjob_changelist"), {"q": "C999999"})
    everything = client.get(reverse("admin:core_exportjob_changelist"), {"q": " "})

    assert len(nothing.context["cl"].result_list) == 0
    assert len(everything.context["cl"].result_list) == 1


def test_the_export_forms_customer_keeps_that_customers_contacts_and_events(client, two_customers):
    alice, bob = two_customers
    client.force_login(make_compliance_officer())

    contacts = rows_of(export(client, "notifications_notificationlog", customer="c200001"))
    events = rows_of(export(client, "core_auditevent", customer="C200001"))

    assert {row["customer_ref"] for row in contacts} == {"C200001"}
    assert {(row["action"], row["object_id"]) for row in events} == {
        ("loans.customer.changed", str(alice.pk)),
        ("loans.loan.created", str(alice.loans.get().pk)),
    }


def test_the_command_exports_one_customers_rows_and_names_the_filter_in_the_manifest(tmp_path, two_customers):
    alice, bob = two_customers
    out = tmp_path / "audit.json"

    call_command(
        "export_log",
        "audit",
        "--format",
        "json",
        "--output",
        str(out),
        "--customer",
        "C200002",
        stdout=StringIO(),
    )

    events = json.loads(out.read_text())
    manifest = json.loads((tmp_path / "audit.json.manifest.json").read_text())
    assert {row["object_id"] for row in events} == {str(bob.pk), str(bob.loans.get().pk)}
    assert manifest["filters"] == {"customer_ref": "C200002"}


def test_an_unknown_customer_exports_no_row(tmp_path, two_customers):
    out = tmp_path / "log.csv"

    call_command("export_log", "notifications", "--output", str(out), "--customer", "C404", stdout=StringIO())

    [header, *rows] = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert header[:2] == ["id", "customer_ref"] and rows == []
