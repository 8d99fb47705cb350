"""Who may find, see and fetch what: search by reference only without personal data, exports for their owner,
permissions that exist and are granted, private files, a Content-Security-Policy on every page."""

from __future__ import annotations

import stat

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from backoffice import roles
from core.exports.files import export_to_file
from core.exports.jobs import run_export_job
from core.imports.jobs import import_root, store_upload
from core.models import ExportJob
from tests.factories import make_customer, make_user
from tests.factories_audit import make_notification

pytestmark = pytest.mark.django_db

NAME = "Alice Smith"
PHONE = "+8613812345678"
EMAIL = "alice.smith@example.com"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    customer = make_customer(ref="C7000001", name=NAME, phone=PHONE, email=EMAIL)
    make_notification(customer, status="sent", body=f"Dear {NAME}, call us.", destination=PHONE)
    return customer


def officer():
    return make_user("officer", group=roles.COMPLIANCE_OFFICER)


def operations(username="ops"):
    return make_user(username, group=roles.OPERATIONS)


def listed(response) -> list:
    return list(response.context["cl"].result_list)


# --- search and filters match references only without loans.view_personal_data -------------------------


def test_it_matches_a_compliance_officers_customer_search_on_references_only(client, alice):
    url = reverse("admin:loans_customer_changelist")
    client.force_login(officer())
    for term in ("Alice", NAME, PHONE, "13812345678"):
        assert listed(client.get(url, {"q": term})) == [], term
    assert listed(client.get(url, {"q": alice.ref})) == [alice]

    client.force_login(operations())
    assert listed(client.get(url, {"q": "Alice"})) == [alice]
    assert listed(client.get(url, {"q": PHONE})) == [alice]


def test_it_matches_admin_autocomplete_on_references_only(client, alice):
    url = reverse("admin:autocomplete")
    query = {"app_label": "loans", "model_name": "loan", "field_name": "customer"}
    client.force_login(officer())
    assert client.get(url, {**query, "term": "Alice"}).json()["results"] == []
    assert client.get(url, {**query, "term": PHONE}).json()["results"] == []
    found = client.get(url, {**query, "term": alice.ref}).json()["results"]
    assert [r["text"] for r in found] == [alice.ref]

    client.force_login(operations())
    assert [r["text"] for r in client.get(url, {**query, "term": "Alice"}).json()["results"]] == [alice.ref]


@pytest.mark.parametrize(
    "changelist, lookup, value",
    [
        ("loans_customer", "name__startswith", "Ali"),
        ("loans_customer", "phone", PHONE),
        ("loans_customer", "email__contains", "alice"),
        ("notifications_notificationlog", "destination", PHONE),
        ("notifications_notificationlog", "body__contains", "Alice"),
        ("notifications_notificationlog", "customer__name__startswith", "Ali"),
        ("notifications_outboxmessage", "destination__startswith", "+86138"),
        ("core_auditevent", "after__name", NAME),
    ],
)
def test_it_refuses_a_list_filter_on_personal_data_from_a_compliance_officer(
    client, alice, changelist, lookup, value
):
    client.force_login(officer())
    response = client.get(reverse(f"admin:{changelist}_changelist"), {lookup: value})
    assert response.status_code == 400


def test_operations_may_still_filter_customers_by_phone(client, alice):
    client.force_login(operations())
    response = client.get(reverse("admin:loans_customer_changelist"), {"phone": PHONE})
    assert response.status_code == 200 and listed(response) == [alice]


# --- exports belong to their owner --------------------------------------------------------------------


def _export_of(client, user, kind="audit", settings=None) -> ExportJob:
    client.force_login(user)
    model = "core_auditevent" if kind == "audit" else "notifications_notificationlog"
    client.post(reverse(f"admin:{model}_export"), {"format": "csv", "query": ""})
    job = ExportJob.objects.filter(user=user).latest("pk")
    if job.status == ExportJob.Status.QUEUED:
        run_export_job(job.pk)
        job.refresh_from_db()
    assert job.status == ExportJob.Status.DONE
    return job


def _job_urls(job) -> list[str]:
    return [
        reverse("admin:core_exportjob_download", args=[job.pk]),
        reverse("admin:core_exportjob_manifest", args=[job.pk]),
        reverse("admin:core_exportjob_status", args=[job.pk]),
    ]


def test_operations_cannot_fetch_an_administrators_unmasked_audit_export(client, alice):
    administrator = make_user("boss", group=roles.ADMINISTRATOR)
    job = _export_of(client, administrator)
    assert not job.is_masked

    client.force_login(operations())
    for url in _job_urls(job):
        assert client.get(url).status_code == 403, url
    change = client.get(reverse("admin:core_exportjob_change", args=[job.pk]))
    assert change.status_code in (302, 403)
    assert job not in listed(client.get(reverse("admin:core_exportjob_changelist")))


def test_a_compliance_officer_cannot_fetch_a_colleagues_masked_export(client, alice):
    job = _export_of(client, officer(), kind="notifications")
    assert job.is_masked
    client.force_login(make_user("colleague", group=roles.COMPLIANCE_OFFICER))
    for url in _job_urls(job):
        assert client.get(url).status_code == 403, url


def test_the_owner_and_a_role_granted_all_exports_fetch_an_export(client, alice):
    owner = operations("owner")
    job = _export_of(client, owner, kind="notifications")
    for url in _job_urls(job):
        assert client.get(url).status_code == 200, url

    administrator = make_user("boss", group=roles.ADMINISTRATOR)
    assert not administrator.is_superuser and administrator.has_perm("core.access_all_exports")
    client.force_login(administrator)
    for url in _job_urls(job):
        assert client.get(url).status_code == 200, url
    assert job in listed(client.get(reverse("admin:core_exportjob_changelist")))


def test_only_administrators_are_granted_all_exports():
    holders = {
        role
        for role in roles.ROLES
        if make_user(f"u-{role}".replace(" ", "-"), group=role).has_perm("core.access_all_exports")
    }
    assert holders == {roles.ADMINISTRATOR}


# --- permissions that are documented exist and are granted ---------------------------------------------


@pytest.mark.parametrize(
    "codename",
    ["import_remindertemplate", "export_remindertemplate", "import_reminderrule", "export_reminderrule"],
)
def test_template_and_rule_import_and_export_permissions_exist_and_operations_hold_them(codename):
    assert Permission.objects.filter(content_type__app_label="notifications", codename=codename).exists()
    assert operations().has_perm(f"notifications.{codename}")
    assert not make_user("c", group=roles.COLLECTOR).has_perm(f"notifications.{codename}")


def test_operations_import_templates_in_the_admin(client):
    client.force_login(operations())
    assert client.get(reverse("admin:notifications_remindertemplate_import")).status_code == 200
    assert client.get(reverse("admin:notifications_reminderrule_import")).status_code == 200


def test_the_placement_file_is_downloaded_by_operations_only():
    may = {
        role
        for role in roles.ROLES
        if make_user(f"p-{role}".replace(" ", "-"), group=role).has_perm(
            "collections.download_placement_file"
        )
    }
    assert may == {roles.OPERATIONS, roles.ADMINISTRATOR}


# --- files with personal data are private ----------------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_export_files_and_their_manifests_are_written_mode_0600(alice, tmp_path, fmt):
    result = export_to_file("notifications", fmt, tmp_path / f"log.{fmt}", masked=False)
    assert _mode(result.path) == 0o600
    assert _mode(result.manifest_path) == 0o600


def test_stored_uploads_are_written_mode_0600():
    relative = store_upload(b"ref,name\nC1,Alice\n", "customers.csv")
    assert _mode(import_root() / relative) == 0o600


# --- Content-Security-Policy -------------------------------------------------------------------------------


def test_every_page_carries_a_content_security_policy(client, alice):
    for url in (reverse("admin:login"), reverse("admin:index")):
        policy = client.get(url)["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
        script = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    client.force_login(operations())
    policy = client.get(reverse("admin:loans_customer_changelist"))["Content-Security-Policy"]
    assert "script-src 'self'" in policy
