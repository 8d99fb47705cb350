from __future__ import annotations

import csv
import hashlib
import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from core.exports.jobs import run_export_job
from core.models import AuditEvent, ExportJob
from tests.factories import make_customer, make_user
from tests.factories_audit import make_compliance_officer, make_notification

PASSWORD = "pw-for-tests-1!"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The real hasher is deliberately slow; these tests are about what is recorded, not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def book(db):
    alice = make_customer(name="Alice Smith", phone="+8613812345678", email="alice.smith@example.com")
    make_notification(alice, status="sent", body="Dear Alice Smith, call 13812345678.")
    make_notification(alice, status="suppressed", reason="frequency_cap", body="Dear Alice Smith, again.")
    return alice


@pytest.fixture
def officer(db):
    return make_compliance_officer()


def streamed(response) -> bytes:
    return b"".join(response.streaming_content)


def export(client, model: str, fmt: str = "csv", query: str = ""):
    url = reverse(f"admin:{model}_export")
    return client.post(url, {"format": fmt, "query": query})


def test_a_compliance_officer_sees_the_logs_masked(client, book, officer):
    client.force_login(officer)
    for model in ("notifications_notificationlog", "core_auditevent"):
        response = client.get(reverse(f"admin:{model}_changelist"))
        assert response.status_code == 200
        assert b"bo-export-form" in response.content
    html = client.get(reverse("admin:notifications_notificationlog_changelist")).content.decode()
    assert "A**** S****" in html and "Alice Smith" not in html and "13812345678" not in html
    one = book.notifications.get(status="sent")
    html = client.get(reverse("admin:notifications_notificationlog_change", args=[one.pk])).content.decode()
    assert "Alice Smith" not in html and "13812345678" not in html and "A**** S****" in html


def test_a_compliance_officer_cannot_change_anything(client, book, officer):
    client.force_login(officer)
    one = book.notifications.get(status="sent")
    event = AuditEvent.objects.first()
    assert client.get(reverse("admin:notifications_notificationlog_add")).status_code == 403
    assert client.get(reverse("admin:core_auditevent_add")).status_code == 403
    assert (
        client.post(reverse("admin:notifications_notificationlog_delete", args=[one.pk])).status_code == 403
    )
    assert client.post(reverse("admin:core_auditevent_delete", args=[event.pk])).status_code == 403
    response = client.post(
        reverse("admin:notifications_notificationlog_change", args=[one.pk]), {"status": "cancelled"}
    )
    assert response.status_code == 403
    one.refresh_from_db()
    assert one.status == "sent"


def test_not_even_a_superuser_may_edit_the_trail_or_the_log(client, book):
    admin_user = make_user("root", is_superuser=True)
    client.force_login(admin_user)
    event = AuditEvent.objects.first()
    page = client.get(reverse("admin:core_auditevent_change", args=[event.pk])).content.decode()
    assert 'name="_save"' not in page
    assert client.post(reverse("admin:core_auditevent_delete", args=[event.pk])).status_code == 403
    assert client.get(reverse("admin:notifications_notificationlog_add")).status_code == 403


def test_a_compliance_officer_exports_the_filtered_list_masked(client, book, officer):
    client.force_login(officer)
    response = export(client, "notifications_notificationlog", "csv", "status__exact=sent")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    body = streamed(response)
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [r["status"] for r in rows] == ["sent"]
    assert "Alice Smith" not in body.decode("utf-8-sig") and "13812345678" not in body.decode("utf-8-sig")
    job = ExportJob.objects.get()
    assert job.status == "done" and job.is_masked and job.filters == {"status": "sent"}
    assert response["X-Export-SHA256"] == hashlib.sha256(body).hexdigest() == job.file_sha256
    event = AuditEvent.objects.filter(action="backoffice.export.completed").get()
    assert event.actor == officer.username and event.after["manifest_sha256"] == job.manifest_sha256
    assert event.after["filters"] == {"status": "sent"}


def test_a_user_with_the_personal_data_permission_exports_in_clear(client, book, officer):
    officer.user_permissions.add(Permission.objects.get(codename="view_personal_data"))
    client.force_login(officer)
    body = streamed(export(client, "notifications_notificationlog", "json"))
    assert "Alice Smith" in body.decode()
    assert ExportJob.objects.get().is_masked is False


def test_a_staff_user_without_the_export_permission_cannot_export(client, book):
    operator = make_user("operator")
    operator.user_permissions.add(Permission.objects.get(codename="view_notificationlog"))
    client.force_login(operator)
    assert (
        b"bo-export-form" not in client.get(reverse("admin:notifications_notificationlog_changelist")).content
    )
    assert export(client, "notifications_notificationlog").status_code == 403
    assert export(client, "core_auditevent").status_code == 403
    assert not ExportJob.objects.exists()


def test_a_filter_the_export_does_not_know_is_refused_not_ignored(client, book, officer):
    client.force_login(officer)
    response = export(client, "notifications_notificationlog", "csv", "customer__id__exact=1")
    assert response.status_code == 302
    assert not ExportJob.objects.exists()


def test_a_large_export_runs_in_the_background_and_downloads_when_done(client, book, officer, settings):
    settings.EXPORT_BACKGROUND_THRESHOLD = 0
    client.force_login(officer)  # writes the one backoffice.login.* event exported below
    response = export(client, "core_auditevent", "xlsx", "action_prefix=backoffice.login.")
    job = ExportJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{job.pk}/change/")
    assert job.status == "queued" and job.filters == {"action_prefix": "backoffice.login."}
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in page and "Exporting" in page

    assert run_export_job(job.pk) == {"job": job.pk, "rows": 1}
    assert run_export_job(job.pk) == {"job": job.pk, "skipped": "not queued"}  # a second run writes nothing
    job.refresh_from_db()
    assert job.status == "done" and job.rows_done == 1 == job.total_estimate
    page = client.get(reverse("admin:core_exportjob_change", args=[job.pk])).content.decode()
    assert reverse("admin:core_exportjob_download", args=[job.pk]) in page and "http-equiv" not in page
    download = client.get(reverse("admin:core_exportjob_download", args=[job.pk]))
    assert download.status_code == 200
    assert hashlib.sha256(streamed(download)).hexdigest() == job.file_sha256
    manifest = client.get(reverse("admin:core_exportjob_manifest", args=[job.pk]))
    assert hashlib.sha256(streamed(manifest)).hexdigest() == job.manifest_sha256
    status = client.get(reverse("admin:core_exportjob_status", args=[job.pk])).json()
    assert status["status"] == "done" and status["rows_done"] == 1


def test_only_the_owner_or_a_user_granted_all_exports_downloads_a_file(client, book, officer, settings):
    settings.EXPORT_BACKGROUND_THRESHOLD = 0
    client.force_login(officer)
    export(client, "notifications_notificationlog", "csv")
    job = ExportJob.objects.get()
    run_export_job(job.pk)
    url = reverse("admin:core_exportjob_download", args=[job.pk])
    assert client.get(url).status_code == 200

    stranger = make_user("stranger")
    stranger.user_permissions.add(Permission.objects.get(codename="view_notificationlog"))
    client.force_login(stranger)
    assert client.get(url).status_code == 403
    assert client.get(reverse("admin:core_exportjob_change", args=[job.pk])).status_code in (302, 403)

    # Another exporter of the same kind may not: the file is someone else's.
    colleague = make_compliance_officer("colleague")
    client.force_login(colleague)
    assert client.get(url).status_code == 403

    colleague.user_permissions.add(Permission.objects.get(codename="access_all_exports"))
    client.force_login(type(colleague).objects.get(pk=colleague.pk))
    assert client.get(url).status_code == 200


def test_a_background_export_through_a_real_django_q_sync_run(client, book, officer, settings, monkeypatch):
    from django_q.conf import Conf
    from django_q.models import Task

    monkeypatch.setattr(Conf, "SYNC", True)
    settings.EXPORT_BACKGROUND_THRESHOLD = 1
    client.force_login(officer)
    export(client, "notifications_notificationlog", "json")  # two rows: over the threshold
    job = ExportJob.objects.get()
    assert job.status == "done" and job.rows_done == 2
    assert Task.objects.filter(name=f"export-{job.pk}", success=True).exists()
    assert client.get(reverse("admin:core_exportjob_download", args=[job.pk])).status_code == 200


def test_admin_log_in_and_failed_log_in_are_recorded_without_the_password(client, db):
    make_user("ops", password=PASSWORD)
    login = reverse("admin:login")
    client.post(login, {"username": "ops", "password": "wrong-guess-42"}, REMOTE_ADDR="10.1.2.3")
    client.post(login, {"username": "ops", "password": PASSWORD}, REMOTE_ADDR="10.1.2.4")
    failed = AuditEvent.objects.get(action="backoffice.login.failed")
    succeeded = AuditEvent.objects.get(action="backoffice.login.succeeded")
    assert failed.after == {"username": "ops", "ip": "10.1.2.3"}
    assert succeeded.after == {"username": "ops", "ip": "10.1.2.4"} and succeeded.actor == "ops"
    for event in AuditEvent.objects.all():
        assert "wrong-guess-42" not in str(event.after) and PASSWORD not in str(event.after)


def test_a_change_to_a_role_is_recorded_with_before_and_after(client, db):
    admin_user = make_user("root", is_superuser=True)
    group = Group.objects.create(name="Auditors")
    perm = Permission.objects.get(codename="export_auditevent")
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_group_change", args=[group.pk]), {"name": "Auditors", "permissions": [perm.pk]}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.group.changed")
    assert event.before == {"name": "Auditors", "permissions": []}
    assert event.after == {"name": "Auditors", "permissions": ["core.export_auditevent"]}
    assert event.actor == "root" and event.object_id == str(group.pk)


def test_a_user_account_change_never_records_the_password_hash(client, db):
    admin_user = make_user("root", is_superuser=True)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie",
            "password1": "A-long-pass-9876",
            "password2": "A-long-pass-9876",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.user.created")
    assert event.after["username"] == "newbie" and "password" not in event.after


def test_a_job_left_running_by_a_killed_worker_is_taken_again_by_the_retry(book, officer, settings):
    import datetime as dt

    from django.utils import timezone

    job = ExportJob.objects.create(user=officer, kind="notifications", format="csv", status="running")
    ExportJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - dt.timedelta(minutes=1))
    assert (
        run_export_job(job.pk)["skipped"] == "not queued"
    )  # still inside the timeout: another worker has it
    ExportJob.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - dt.timedelta(seconds=settings.Q_CLUSTER["timeout"] + 1)
    )
    assert run_export_job(job.pk) == {"job": job.pk, "rows": 2}


def test_the_export_holds_what_the_searched_and_dated_list_shows(client, book, officer):
    other = make_customer()
    make_notification(other, status="sent")
    client.force_login(officer)
    query = f"q={book.ref.lower()}&scheduled_for__gte=2026-11-20+00:00:00%2B08:00&scheduled_for__lt=2026-11-21+00:00:00%2B08:00"
    listed = client.get(reverse("admin:notifications_notificationlog_changelist") + "?" + query)
    assert listed.status_code == 200 and len(listed.context["cl"].result_list) == 2
    rows = list(
        csv.DictReader(
            io.StringIO(
                streamed(export(client, "notifications_notificationlog", "csv", query)).decode("utf-8-sig")
            )
        )
    )
    assert sorted(r["id"] for r in rows) == sorted(str(n.pk) for n in listed.context["cl"].result_list)
