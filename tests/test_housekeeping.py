"""Housekeeping ends imports and exports whose worker died and removes files past their retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from core.audit_verification import verify_chain
from core.exports.jobs import run_export_job
from core.housekeeping import (
    abandoned_after,
    end_abandoned_jobs,
    remove_expired_files,
    run_housekeeping,
)
from core.imports.jobs import run_import_job
from core.models import AuditEvent, ExportJob, ImportJob

from .factories import make_user

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.timezone.utc)


def export_job(user, *, status="running", started=None, finished=None, file_path=""):
    job = ExportJob.objects.create(
        user=user,
        kind="notifications",
        format="csv",
        status=status,
        file_path=file_path,
        finished_at=finished,
    )
    ExportJob.objects.filter(pk=job.pk).update(started_at=started)
    return ExportJob.objects.get(pk=job.pk)


def import_job(user, *, status="running", started=None, finished=None, file_path="2026/11/upload.csv", **kw):
    job = ImportJob.objects.create(
        user=user,
        resource="loans.resources.CustomerResource",
        file_name="customers.csv",
        file_path=file_path,
        file_sha256="0" * 64,
        format="csv",
        status=status,
        started_at=started,
        finished_at=finished,
        **kw,
    )
    return job


def write(root, relative: str) -> Path:
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("data")
    return path


def test_a_running_job_without_a_worker_fails_with_a_clear_message_and_a_late_attempt_cannot_revive_it():
    user = make_user("ops")
    long_ago = NOW - abandoned_after() - dt.timedelta(minutes=1)
    dead_export = export_job(user, started=long_ago)
    partial = write(settings.EXPORT_ROOT, f".notifications-20261124T000000-{dead_export.pk}.csv.partial")
    kept = write(settings.EXPORT_ROOT, f"notifications-20261124T000000-{dead_export.pk + 1}.csv")
    dead_import = import_job(user, started=long_ago, is_dry_run=False)
    busy_export = export_job(user, started=NOW - dt.timedelta(minutes=10))
    busy_import = import_job(user, started=NOW - dt.timedelta(minutes=10), file_path="2026/11/other.csv")

    assert end_abandoned_jobs(NOW) == {"exports_abandoned": 1, "imports_abandoned": 1}

    dead_export.refresh_from_db()
    assert dead_export.status == "failed" and dead_export.finished_at == NOW
    assert "stopped before it finished" in dead_export.error and "Start the export again" in dead_export.error
    assert not partial.exists() and kept.exists()
    dead_import.refresh_from_db()
    assert dead_import.status == "failed" and dead_import.error_count == 1
    assert "Nothing of the file was saved" in dead_import.errors[0]["message"]
    for job in (busy_export, busy_import):
        job.refresh_from_db()
        assert job.status == "running"
    actions = set(AuditEvent.objects.filter(actor="job:housekeeping").values_list("action", flat=True))
    assert actions == {"backoffice.export.abandoned", "backoffice.import.abandoned"}
    assert verify_chain(check_anchors=False).is_intact

    # The broker delivers one more attempt afterwards: only a queued job is claimed, so it changes nothing.
    assert run_export_job(dead_export.pk)["skipped"] == "not queued"
    assert run_import_job(dead_import.pk)["skipped"] == "not queued"
    assert end_abandoned_jobs(NOW) == {"exports_abandoned": 0, "imports_abandoned": 0}


def test_export_files_past_their_retention_are_removed_and_the_job_says_so(admin_client):
    user = make_user("officer")
    days = settings.EXPORT_FILE_RETENTION_DAYS
    old = export_job(
        user, status="done", finished=NOW - dt.timedelta(days=days, minutes=1), file_path="old.csv"
    )
    young = export_job(user, status="done", finished=NOW - dt.timedelta(days=days - 1), file_path="young.csv")
    old_file, old_manifest = (
        write(settings.EXPORT_ROOT, "old.csv"),
        write(settings.EXPORT_ROOT, "old.csv.manifest.json"),
    )
    young_file = write(settings.EXPORT_ROOT, "young.csv")

    assert remove_expired_files(NOW)["export_files_removed"] == 1

    assert not old_file.exists() and not old_manifest.exists() and young_file.exists()
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.file_path, young.file_path) == ("", "young.csv")
    event = AuditEvent.objects.get(action="backoffice.export.file_removed")
    assert event.object_id == str(old.pk) and event.after["file"] == "old.csv"
    assert event.after["retention_days"] == days

    page = admin_client.get(reverse("admin:core_exportjob_change", args=[old.pk])).content.decode()
    assert "removed after its retention period" in page
    assert reverse("admin:core_exportjob_download", args=[old.pk]) not in page
    status = admin_client.get(reverse("admin:core_exportjob_status", args=[old.pk])).json()
    assert status["download"] is None
    assert admin_client.get(reverse("admin:core_exportjob_download", args=[old.pk])).status_code == 404


def test_an_upload_goes_only_when_every_job_using_it_finished_before_the_retention():
    user = make_user("ops")
    days = settings.IMPORT_FILE_RETENTION_DAYS
    long_ago = NOW - dt.timedelta(days=days, hours=1)
    shared = write(settings.IMPORT_ROOT, "2026/10/shared.csv")
    dry = import_job(user, status="succeeded", finished=long_ago, file_path="2026/10/shared.csv")
    # The real import confirmed from that dry run is still queued: the file must stay.
    real = import_job(
        user, status="queued", file_path="2026/10/shared.csv", is_dry_run=False, confirmed_from=dry
    )
    alone = write(settings.IMPORT_ROOT, "2026/10/alone.csv")
    old = import_job(user, status="failed", finished=long_ago, file_path="2026/10/alone.csv")

    assert remove_expired_files(NOW)["import_files_removed"] == 1
    assert shared.exists() and not alone.exists()
    old.refresh_from_db()
    assert old.file_path == ""

    ImportJob.objects.filter(pk=real.pk).update(status="succeeded", finished_at=long_ago)
    assert remove_expired_files(NOW)["import_files_removed"] == 1
    assert not shared.exists()
    assert set(ImportJob.objects.filter(pk__in=[dry.pk, real.pk]).values_list("file_path", flat=True)) == {""}
    assert AuditEvent.objects.filter(action="backoffice.import.file_removed").count() == 3


def test_housekeeping_is_a_schedule_and_does_nothing_on_a_quiet_day():
    from django_q.models import Schedule

    from backoffice.schedules import register_schedules

    register_schedules()
    schedule = Schedule.objects.get(name="housekeeping")
    assert (schedule.func, schedule.minutes) == ("core.housekeeping.run_housekeeping", 60)
    counts = run_housekeeping(timezone.now())
    # Statistics are SQLite's, partitions PostgreSQL's (the month the suite runs in may need the next one).
    skipped = {"statistics_refreshed", "partitions_created"}
    assert {k: v for k, v in counts.items() if k not in skipped} == dict.fromkeys(
        [
            "exports_abandoned",
            "imports_abandoned",
            "export_files_removed",
            "import_files_removed",
            "anchors_written",
        ],
        0,
    )


def test_sqlite_gets_planner_statistics_from_housekeeping():
    from django.db import connection

    from core.housekeeping import refresh_planner_statistics

    if connection.vendor != "sqlite":
        assert refresh_planner_statistics() == {"statistics_refreshed": 0}  # autovacuum's job
        return
    assert refresh_planner_statistics() == {"statistics_refreshed": 1}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        assert cursor.fetchone()[0] == 1
