"""Large admin imports run as background jobs: stored upload, django-q2 task, progress, result page, confirm."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from backoffice import roles
from core.imports import jobs as import_jobs
from core.imports.files import count_rows
from core.imports.jobs import (
    ImportJobError,
    confirm_import_job,
    current_progress,
    run_import_job,
    start_import_job,
)
from core.imports.resource import file_sha256
from core.models import AuditEvent, ImportJob
from loans.models import Customer
from loans.resources import CustomerResource
from tests.factories import make_user

pytestmark = pytest.mark.django_db

HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)
CSV = "import_export.formats.base_formats.CSV"


def customer_file(rows: int = 12, *, bad_line: int | None = None) -> bytes:
    """``rows`` customers; the row on file line ``bad_line`` (header = line 1) has a phone that is not one."""
    lines = [HEADER]
    for n in range(1, rows + 1):
        phone = "12ab" if bad_line == n + 1 else f"138001380{n:02d}"
        lines.append(f"BG{n:03d},Customer {n},{phone},,,en,Asia/Shanghai,,,,,,,")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(autouse=True)
def small_threshold(settings, tmp_path):
    settings.IMPORT_ROOT = tmp_path / "imports"
    settings.IMPORT_BACKGROUND_THRESHOLD = 5


@pytest.fixture
def operator():
    return make_user("operator-1", group=roles.OPERATIONS)


def csv_format_index() -> str:
    formats = admin.site._registry[Customer].get_import_formats()
    return str(next(i for i, f in enumerate(formats) if f.__name__ == "CSV"))


def upload(client, data: bytes, name: str = "customers.csv"):
    return client.post(
        reverse("admin:loans_customer_import"),
        {"format": csv_format_index(), "import_file": SimpleUploadedFile(name, data)},
    )


def start(user, data: bytes, *, dry_run: bool = False) -> ImportJob:
    return start_import_job(
        user, CustomerResource, data, file_name="customers.csv", format_name=CSV, dry_run=dry_run
    )


def test_a_big_file_goes_to_the_background_and_the_request_saves_nothing(
    client, operator, settings, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    data = customer_file(12)
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(client, data)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("imports:job", args=[job.pk])
    assert len(callbacks) == 1  # the task is queued once the job is committed
    assert (job.user, job.is_dry_run, job.status, job.rows_total) == (operator, True, "queued", 12)
    assert job.resource == "loans.resources.CustomerResource" and job.file_name == "customers.csv"
    stored = settings.IMPORT_ROOT / job.file_path
    assert stored.read_bytes() == data and job.file_sha256 == file_sha256(data)
    assert not Customer.objects.exists()


def test_a_small_file_keeps_the_preview_in_the_request(client, operator):
    client.force_login(operator)
    response = upload(client, customer_file(5))
    assert response.status_code == 200 and response.context["confirm_form"] is not None
    assert not ImportJob.objects.exists()


def test_the_task_imports_every_row_and_records_the_counts(operator):
    Customer.objects.create(ref="BG001", name="Old name", phone="+8613800138001", timezone="Asia/Shanghai")
    job = start(operator, customer_file(12))
    outcome = run_import_job(job.pk)
    job.refresh_from_db()
    assert outcome["succeeded"] and job.status == ImportJob.Status.SUCCEEDED
    assert Customer.objects.filter(ref__startswith="BG").count() == 12
    assert Customer.objects.get(ref="BG001").name == "Customer 1"
    assert (job.rows_total, job.rows_done, job.rows_new, job.rows_updated, job.error_count) == (
        12,
        12,
        11,
        1,
        0,
    )
    assert job.started_at and job.finished_at and job.errors == []
    event = AuditEvent.objects.get(action="backoffice.import.completed")
    assert event.actor == "operator-1" and event.after["import_job"] == job.pk
    assert event.after["sha256"] == job.file_sha256 and event.after["rows"]["new"] == 11


def test_a_bad_row_fails_the_job_with_its_line_and_column_and_saves_nothing(operator):
    job = start(operator, customer_file(12, bad_line=9))
    run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.error_count == 1
    assert job.errors == [{"line": 9, "column": "phone", "message": "“12ab” is not a phone number."}]
    assert (job.rows_done, job.rows_new, job.rows_updated) == (12, 0, 0)
    assert not Customer.objects.exists()  # the rows before line 9 are rolled back too
    assert not AuditEvent.objects.filter(action="backoffice.import.completed").exists()


def test_the_result_page_of_a_failed_job_lists_its_errors_by_line_and_column(client, operator):
    job = start(operator, customer_file(12, bad_line=9))
    run_import_job(job.pk)
    client.force_login(operator)
    html = client.get(reverse("imports:job", args=[job.pk])).content.decode()
    assert "Nothing of this file was saved." in html
    assert "<td>9</td><td>phone</td><td>“12ab” is not a phone number.</td>" in html
    assert 'id="bo-import-confirm"' not in html
    download = client.get(reverse("imports:errors", args=[job.pk]))
    assert download.content.decode("utf-8-sig").splitlines() == [
        "line,column,message",
        "9,phone,“12ab” is not a phone number.",
    ]


def test_only_the_first_errors_are_stored_but_all_are_counted(operator, monkeypatch):
    monkeypatch.setattr(ImportJob, "MAX_STORED_ERRORS", 3)
    data = customer_file(12).replace(b",en,", b",xx,")
    job = start(operator, data)
    run_import_job(job.pk)
    job.refresh_from_db()
    assert job.error_count == 12 and [e["line"] for e in job.errors] == [2, 3, 4]
    assert {e["column"] for e in job.errors} == {"language"}


def test_a_dry_run_then_its_confirmation_imports_the_same_stored_file(client, operator):
    client.force_login(operator)
    upload(client, customer_file(12))
    dry = ImportJob.objects.get()
    run_import_job(dry.pk)
    assert not Customer.objects.exists()
    page = client.get(reverse("imports:job", args=[dry.pk]))
    assert page.status_code == 200 and page.context["may_confirm"]
    assert 'id="bo-import-confirm"' in page.content.decode()

    response = client.post(reverse("imports:confirm", args=[dry.pk]))
    real = ImportJob.objects.get(confirmed_from=dry)
    assert response.status_code == 302 and response["Location"] == reverse("imports:job", args=[real.pk])
    assert (real.is_dry_run, real.file_path, real.file_sha256) == (False, dry.file_path, dry.file_sha256)
    assert client.post(reverse("imports:confirm", args=[dry.pk]))["Location"] == response["Location"]
    assert ImportJob.objects.count() == 2  # confirming twice queues one import

    run_import_job(real.pk)
    real.refresh_from_db()
    assert real.status == ImportJob.Status.SUCCEEDED and real.rows_new == 12
    assert Customer.objects.filter(ref__startswith="BG").count() == 12
    assert not client.get(reverse("imports:job", args=[dry.pk])).context["may_confirm"]


def test_a_stored_file_that_changed_after_the_dry_run_is_not_imported(operator, settings):
    dry = start(operator, customer_file(12), dry_run=True)
    run_import_job(dry.pk)
    (settings.IMPORT_ROOT / dry.file_path).write_bytes(customer_file(12).replace(b"Customer 3", b"Mallory"))
    with pytest.raises(ImportJobError, match="changed"):
        confirm_import_job(operator, dry.pk)
    assert not ImportJob.objects.filter(confirmed_from=dry).exists()


def test_a_failed_dry_run_cannot_be_confirmed(operator):
    dry = start(operator, customer_file(12, bad_line=3), dry_run=True)
    run_import_job(dry.pk)
    with pytest.raises(ImportJobError):
        confirm_import_job(operator, dry.pk)


def test_the_progress_endpoint_reports_rows_and_the_outcome(client, operator):
    client.force_login(operator)
    job = start(operator, customer_file(12), dry_run=True)
    status_url = reverse("imports:status", args=[job.pk])
    before = client.get(status_url).json()
    assert before["status"] == "queued" and not before["is_finished"]
    assert (before["rows_done"], before["rows_total"], before["percent"]) == (0, 12, 0)
    page = client.get(reverse("imports:job", args=[job.pk])).content.decode()
    assert f'data-status-url="{status_url}"' in page and 'id="bo-import-progress"' in page
    run_import_job(job.pk)
    after = client.get(status_url).json()
    assert after["status"] == "succeeded" and after["is_finished"]
    assert (after["rows_done"], after["rows_total"], after["percent"], after["rows_new"]) == (12, 12, 100, 12)


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_while_the_import_transaction_is_still_open(monkeypatch):
    operator = make_user("operator-2", group=roles.OPERATIONS)
    job = start(operator, customer_file(12))
    seen = []
    report = import_jobs.ProgressReporter.__call__

    def watched(self, done, total):
        report(self, done, total)
        # Read back as the result page does, while run_import has not committed anything yet.
        seen.append((current_progress(ImportJob.objects.get(pk=job.pk))[0], Customer.objects.count()))

    monkeypatch.setattr(import_jobs, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(import_jobs.ProgressReporter, "__call__", watched)
    run_import_job(job.pk)
    assert (4, 0) in seen and (8, 0) in seen
    assert Customer.objects.count() == 12
    assert not import_jobs.progress_path(job.pk).exists()


def test_only_the_owner_or_an_importer_sees_a_job_and_only_an_importer_confirms(client, operator):
    job = start(operator, customer_file(12), dry_run=True)
    run_import_job(job.pk)
    collector = make_user("collector-1", group=roles.COLLECTOR)
    client.force_login(collector)
    for name in ("job", "status", "errors"):
        assert client.get(reverse(f"imports:{name}", args=[job.pk])).status_code == 403
    assert client.post(reverse("imports:confirm", args=[job.pk])).status_code == 403
    assert not ImportJob.objects.filter(confirmed_from=job).exists()

    assert list(client.get(reverse("imports:list")).context["jobs"]) == []

    client.force_login(make_user("operator-3", group=roles.OPERATIONS))
    assert client.get(reverse("imports:job", args=[job.pk])).status_code == 200
    assert list(client.get(reverse("imports:list")).context["jobs"]) == [job]


def test_the_owner_who_lost_the_import_permission_sees_the_job_but_cannot_confirm(client):
    owner = make_user("operator-4", group=roles.OPERATIONS)
    job = start(owner, customer_file(12), dry_run=True)
    run_import_job(job.pk)
    owner.groups.clear()
    client.force_login(owner)
    page = client.get(reverse("imports:job", args=[job.pk]))
    assert page.status_code == 200 and not page.context["may_confirm"]
    assert client.post(reverse("imports:confirm", args=[job.pk])).status_code == 403


def test_a_user_without_the_import_permission_cannot_start_a_job():
    with pytest.raises(PermissionError):
        start(make_user("collector-2", group=roles.COLLECTOR), customer_file(12))
    assert not ImportJob.objects.exists()


def test_running_the_task_twice_imports_once(operator):
    job = start(operator, customer_file(12))
    run_import_job(job.pk)
    second = run_import_job(job.pk)
    assert second == {"job": job.pk, "skipped": "not queued"}
    assert AuditEvent.objects.filter(action="backoffice.import.completed").count() == 1
    assert Customer.objects.filter(ref__startswith="BG").count() == 12


def test_a_job_left_running_by_a_killed_worker_is_taken_again_after_the_timeout(operator, settings):
    import datetime as dt

    from django.utils import timezone

    job = start(operator, customer_file(12))
    recent = timezone.now() - dt.timedelta(seconds=10)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=recent)
    assert run_import_job(job.pk)["skipped"]
    stale = timezone.now() - dt.timedelta(seconds=settings.Q_CLUSTER["timeout"] + 60)
    ImportJob.objects.filter(pk=job.pk).update(started_at=stale)
    assert run_import_job(job.pk)["succeeded"]
    assert Customer.objects.filter(ref__startswith="BG").count() == 12


def test_the_job_runs_through_django_q(operator, monkeypatch, django_capture_on_commit_callbacks):
    from django_q.conf import Conf
    from django_q.models import Task

    monkeypatch.setattr(Conf, "SYNC", True)
    with django_capture_on_commit_callbacks(execute=True):
        job = start(operator, customer_file(12))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED and job.rows_new == 12
    assert Customer.objects.filter(ref__startswith="BG").count() == 12
    task = Task.objects.get(name=f"import-{job.pk}")
    assert task.success and task.func == "core.imports.jobs.run_import_job" and task.args == (job.pk,)


def test_rows_are_counted_without_reading_the_file_into_a_dataset():
    import openpyxl

    assert count_rows(customer_file(12), CSV) == 12
    assert count_rows(customer_file(12).rstrip(b"\n"), CSV) == 12
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER.split(","))
    for n in range(7):
        sheet.append([f"X{n}", "name"])
    out = io.BytesIO()
    workbook.save(out)
    assert count_rows(out.getvalue(), "import_export.formats.base_formats.XLSX") == 7
