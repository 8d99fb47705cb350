"""Housekeeping of background imports and exports (the hourly ``housekeeping`` schedule).

Two things nobody should have to click:

- A job whose worker died stays ``running`` for ever unless somebody ends it: django-q2 gives a killed task
  another attempt ``retry`` seconds later on the ORM broker and none on Redis, and an attempt lives at most
  ``timeout`` seconds. A job still ``running`` that long after its last start has no worker left: it becomes
  ``failed`` with a message that says so (an import rolled back, so nothing of its file was saved; an export's
  incomplete file is removed). A late attempt cannot revive it: only queued jobs are claimed.
- SQLite gathers no planner statistics by itself (PostgreSQL's autovacuum does): without them it plans some of
  the daily jobs' joins from the wrong side. Housekeeping refreshes them.
- Files are kept for a while, then removed: export files (personal data, even masked, should not pile up on a
  disk) after ``EXPORT_FILE_RETENTION_DAYS``, stored uploads after ``IMPORT_FILE_RETENTION_DAYS`` once no job
  still needs them. The job rows stay, with their SHA-256, as the record of what was exported or imported.
- On PostgreSQL, the partitioned tables get their next months' partitions ahead of time
  (``core.partitions.ensure_month_partitions``).
- The audit head is anchored at least hourly (``core.audit_anchors.write_anchor``), whatever else ran.

Every change is written to the audit trail (``backoffice.export.abandoned``, ``backoffice.import.abandoned``,
``backoffice.export.file_removed``, ``backoffice.import.file_removed``).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .audit import Event, about, log_events
from .models import ExportJob, ImportJob
from .partitions import ensure_month_partitions

logger = logging.getLogger(__name__)
ACTOR = "job:housekeeping"
# Beyond an attempt's timeout and the broker's retry delay: the clock of the worker and of the database differ.
SLACK = dt.timedelta(minutes=5)


def abandoned_after() -> dt.timedelta:
    """How long after its last start a running job can no longer have a worker (or a retry coming)."""
    cluster = settings.Q_CLUSTER
    return dt.timedelta(seconds=int(cluster.get("timeout", 900)) + int(cluster.get("retry", 1200))) + SLACK


def end_abandoned_jobs(now: dt.datetime) -> dict[str, int]:
    """Fail the running imports and exports whose worker is gone; returns how many of each."""
    cutoff = now - abandoned_after()
    minutes = int(abandoned_after().total_seconds() // 60)
    counts = {"exports_abandoned": 0, "imports_abandoned": 0}
    with transaction.atomic():
        exports = list(
            ExportJob.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(status=ExportJob.Status.RUNNING, started_at__lt=cutoff)
            .order_by("pk")
        )
        imports = list(
            ImportJob.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(status=ImportJob.Status.RUNNING, started_at__lt=cutoff)
            .order_by("pk")
        )
        events = []
        for job in exports:
            job.status, job.finished_at = ExportJob.Status.FAILED, now
            job.error = (
                f"The worker running this export stopped before it finished (no result {minutes} minutes after "
                "it started); its incomplete file was removed. Start the export again."
            )
            job.save(update_fields=["status", "finished_at", "error"])
            removed = _remove_partial_export(job)
            events.append(_event("backoffice.export.abandoned", job, now, {"files_removed": removed}))
        for job in imports:
            job.status, job.finished_at = ImportJob.Status.FAILED, now
            job.errors = [
                {
                    "line": None,
                    "column": None,
                    "message": f"The worker running this import stopped before it finished (no result {minutes} "
                    "minutes after it started). Nothing of the file was saved. Import it again.",
                }
            ]
            job.error_count = 1
            job.save(update_fields=["status", "finished_at", "errors", "error_count"])
            events.append(_event("backoffice.import.abandoned", job, now, {"file_name": job.file_name}))
        log_events(events)
    counts["exports_abandoned"], counts["imports_abandoned"] = len(exports), len(imports)
    for job in exports:
        logger.warning("export job %s abandoned by its worker: marked failed", job.pk)
    for job in imports:
        logger.warning("import job %s abandoned by its worker: marked failed", job.pk)
    return counts


def remove_expired_files(now: dt.datetime) -> dict[str, int]:
    """Remove export files and stored uploads past their retention; returns how many of each."""
    counts = {"export_files_removed": 0, "import_files_removed": 0}
    export_cutoff = now - dt.timedelta(days=settings.EXPORT_FILE_RETENTION_DAYS)
    with transaction.atomic():
        jobs = list(
            ExportJob.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(finished_at__lt=export_cutoff)
            .exclude(file_path="")
            .order_by("pk")
        )
        events = []
        for job in jobs:
            path = Path(settings.EXPORT_ROOT) / job.file_path
            removed = _unlink(path) + _unlink(path.with_name(path.name + ".manifest.json"))
            events.append(
                _event(
                    "backoffice.export.file_removed",
                    job,
                    now,
                    {
                        "file": job.file_path,
                        "file_sha256": job.file_sha256,
                        "files_removed": removed,
                        "retention_days": settings.EXPORT_FILE_RETENTION_DAYS,
                    },
                )
            )
            job.file_path = ""
            job.save(update_fields=["file_path"])
        log_events(events)
    counts["export_files_removed"] = len(jobs)

    # An upload is shared by its dry run and the real import confirmed from it: it goes when every job that
    # uses it is finished and the last of them finished before the cutoff.
    import_cutoff = now - dt.timedelta(days=settings.IMPORT_FILE_RETENTION_DAYS)
    with transaction.atomic():
        rows = list(
            ImportJob.objects.select_for_update()
            .exclude(file_path="")
            .values_list("pk", "file_path", "status", "finished_at")
        )
        by_path: dict[str, list[tuple]] = {}
        for row in rows:
            by_path.setdefault(row[1], []).append(row)
        finished = (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED)
        expired = {
            path: jobs
            for path, jobs in by_path.items()
            if all(
                status in finished and done_at is not None and done_at < import_cutoff
                for _pk, _p, status, done_at in jobs
            )
        }
        events = []
        for path, jobs in sorted(expired.items()):
            removed = _unlink(Path(settings.IMPORT_ROOT) / path)
            for pk, *_rest in jobs:
                events.append(
                    Event(
                        action="backoffice.import.file_removed",
                        actor=ACTOR,
                        **about(ImportJob, pk),
                        at=now,
                        after={
                            "file": path,
                            "files_removed": removed,
                            "retention_days": settings.IMPORT_FILE_RETENTION_DAYS,
                        },
                    )
                )
        if expired:
            ImportJob.objects.filter(file_path__in=list(expired)).update(file_path="")
        log_events(events)
    counts["import_files_removed"] = len(expired)
    return counts


def refresh_planner_statistics() -> dict[str, int]:
    """SQLite plans queries without statistics unless it is told to gather them; PostgreSQL's autovacuum does.

    Without them SQLite takes any equality on an indexed column for a selective one: "the pending contacts
    listing these instalments" was read as every pending contact of the book, then their items. ``ANALYZE``
    with ``analysis_limit`` samples each index (about a second on a book of a million loans)."""
    if connection.vendor != "sqlite":
        return {"statistics_refreshed": 0}
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA analysis_limit = 1000")
        cursor.execute("ANALYZE")
    return {"statistics_refreshed": 1}


def run_housekeeping(now: dt.datetime | None = None) -> dict[str, int]:
    """The hourly schedule: end abandoned jobs, remove files past their retention, refresh SQLite's statistics,
    create the next months' partitions of the partitioned tables (PostgreSQL), then anchor the audit head (``AnchorError`` if the anchor file is broken: the task fails, loudly, each hour).
    A task's start is an entry point: without ``now`` it reads the clock here, once, and passes it down."""
    from .audit_anchors import write_anchor

    now = now or timezone.now()
    done = {**end_abandoned_jobs(now), **remove_expired_files(now), **refresh_planner_statistics()}
    done["partitions_created"] = sum(ensure_month_partitions(now).values())
    done["anchors_written"] = write_anchor(now).get("written", 0)
    return done


def _remove_partial_export(job: ExportJob) -> int:
    """The files an interrupted export left: ``<kind>-<time>-<job id>.<format>`` (see run_export_job), its manifest
    and the hidden ``.partial`` file it is written to before it is moved into place."""
    root = Path(settings.EXPORT_ROOT)
    if not root.is_dir():
        return 0
    removed = 0
    name = f"{job.kind}-*-{job.pk}.{job.format}"
    for pattern in (name, f"{name}.manifest.json", f".{name}.partial"):
        for path in root.glob(pattern):
            removed += _unlink(path)
    return removed


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1


def _event(action: str, job, now: dt.datetime, extra: dict) -> Event:
    return Event(
        action=action,
        actor=ACTOR,
        **about(job),
        at=now,
        after={"user": job.user.get_username() if job.user_id else None, **extra},
    )
