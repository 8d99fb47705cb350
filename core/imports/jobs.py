"""Large imports in the background.

An admin upload with more data rows than ``settings.IMPORT_BACKGROUND_THRESHOLD`` is stored under
``settings.IMPORT_ROOT`` and imported by a django-q2 task (``run_import_job``) through ``run_import``, so the
request returns at once and the result page follows the job.

Progress while the import's transaction is open: on PostgreSQL the task updates the job row from a second
connection of its own (committed at once, so visible to the result page while the import is not). On
SQLite the import transaction holds the database's only write lock (IMMEDIATE transactions), so no other
connection can write the row: the task writes a small progress file beside the uploads instead
(``IMPORT_ROOT/progress/<job>.json``; the worker must see IMPORT_ROOT anyway to read the upload). Not the
cache: the embedded default is a per-process memory cache the web process cannot read."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth import get_permission_codename
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from import_export import resources
from import_export.results import RowResult

from ..background import claim_job
from ..models import ImportJob
from ..private_files import create_private
from .files import count_rows, read_blocks
from .resource import BookResource, describe_exception, file_sha256, run_import

logger = logging.getLogger(__name__)

#: The job's progress is written at most every this many rows.
PROGRESS_EVERY = 500


class ImportJobError(Exception):
    """A background import cannot be started or confirmed (bad file, file changed, nothing to confirm)."""


def background_threshold() -> int:
    return int(getattr(settings, "IMPORT_BACKGROUND_THRESHOLD", 5000))


def import_root() -> Path:
    return Path(settings.IMPORT_ROOT)


def dotted_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_permission(resource_class: type[resources.ModelResource]) -> str:
    """``<app_label>.import_<model>``: what django-import-export's admin asks of whoever imports this model."""
    opts = resource_class._meta.model._meta
    code = getattr(settings, "IMPORT_EXPORT_IMPORT_PERMISSION_CODE", None) or "import"
    return f"{opts.app_label}.{get_permission_codename(code, opts)}"


def may_import(user, resource_class: type[resources.ModelResource]) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(import_permission(resource_class)))


def job_resource_class(job: ImportJob) -> type[BookResource]:
    """The job's resource class; ``ImportJobError`` unless it is a ``BookResource``."""
    try:
        resource_class = import_string(job.resource)
    except ImportError as exc:
        raise ImportJobError(_("Unknown resource “%(resource)s”.") % {"resource": job.resource}) from exc
    if not (isinstance(resource_class, type) and issubclass(resource_class, BookResource)):
        raise ImportJobError(
            _("“%(resource)s” is not an import of the back office.") % {"resource": job.resource}
        )
    return resource_class


def may_see_import_job(user, job: ImportJob) -> bool:
    """The job's owner, or a user holding the import permission of the job's resource."""
    if user is None or not user.is_active:
        return False
    if job.user_id == user.pk:
        return True
    try:
        return may_import(user, job_resource_class(job))
    except ImportJobError:
        return False


def store_upload(data: bytes | BinaryIO, file_name: str) -> str:
    """Write an upload (its bytes, or the uploaded file: copied a block at a time, never whole in memory) under
    IMPORT_ROOT, complete or not at all, readable by its owner only; returns its path relative to IMPORT_ROOT."""
    suffix = "".join(ch for ch in Path(file_name).suffix.lower() if ch.isalnum() or ch == ".")[:10]
    relative = Path(timezone.now().strftime("%Y/%m")) / f"{uuid.uuid4().hex}{suffix}"
    path = import_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    create_private(partial)
    try:
        with open(partial, "wb") as out:
            for block in read_blocks(data):
                out.write(block)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return str(relative)


def _enqueue(job_id: int) -> None:
    def enqueue():
        from django_q.tasks import async_task

        async_task("core.imports.jobs.run_import_job", job_id, task_name=f"import-{job_id}", group="imports")

    # After commit: a worker must find the job row (and the task must not run if the request rolls back).
    transaction.on_commit(enqueue)


def start_import_job(
    user,
    resource_class: type[BookResource],
    data: bytes | BinaryIO,
    *,
    file_name: str,
    format_name: str,
    dry_run: bool = True,
) -> ImportJob:
    """Store ``data`` (the file's bytes, or the uploaded file, copied a block at a time) under IMPORT_ROOT,
    create the ``ImportJob`` of ``user`` and queue its task (after commit). Its rows are counted and its SHA-256
    taken from the stored file.

    Raises ``PermissionError`` when the user may not import this resource's model, ``ImportJobError`` when
    the resource is not a ``BookResource``, ``OSError`` when the file cannot be stored."""
    if not (isinstance(resource_class, type) and issubclass(resource_class, BookResource)):
        raise ImportJobError(f"{resource_class!r} is not an import of the back office.")
    if not may_import(user, resource_class):
        raise PermissionError(
            f"{user} may not import {resource_class._meta.model._meta.verbose_name_plural}."
        )
    stored = store_upload(data, file_name)
    try:
        rows = count_rows(import_root() / stored, format_name)
    except Exception:  # an unreadable file: the task reports why, with the import's own message
        rows = None
    job = ImportJob.objects.create(
        user=user,
        resource=dotted_path(resource_class),
        file_name=Path(file_name).name[:255] or "upload",
        file_path=stored,
        file_sha256=file_sha256(import_root() / stored),
        format=format_name,
        is_dry_run=dry_run,
        rows_total=rows,
    )
    _enqueue(job.pk)
    return job


def confirm_import_job(user, dry_run_job_id: int) -> ImportJob:
    """Queue the real import of a successful dry run's stored file (a new job, ``confirmed_from`` the dry run).

    Confirming twice returns the job of the first confirmation. Raises ``PermissionError`` when the user may
    not import the resource, ``ImportJobError`` when the job is not a successful dry run or its stored file
    is missing or no longer has the SHA-256 the dry run checked."""
    dry = ImportJob.objects.get(pk=dry_run_job_id)
    resource_class = job_resource_class(dry)
    if not may_import(user, resource_class):
        raise PermissionError(
            f"{user} may not import {resource_class._meta.model._meta.verbose_name_plural}."
        )
    if not dry.is_dry_run or dry.status != ImportJob.Status.SUCCEEDED:
        raise ImportJobError(_("Only a dry run without errors can be confirmed."))
    existing = ImportJob.objects.filter(confirmed_from=dry).first()
    if existing is not None:
        return existing
    try:
        stored_sha256 = file_sha256(import_root() / dry.file_path)
    except OSError as exc:
        raise ImportJobError(_("The uploaded file is not stored any more: upload it again.")) from exc
    if stored_sha256 != dry.file_sha256:
        raise ImportJobError(_("The stored file changed since the dry run: upload it again."))
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                user=user,
                resource=dry.resource,
                file_name=dry.file_name,
                file_path=dry.file_path,
                file_sha256=dry.file_sha256,
                format=dry.format,
                is_dry_run=False,
                confirmed_from=dry,
                rows_total=dry.rows_total,
            )
    except IntegrityError:  # confirmed at the same moment by another request
        return ImportJob.objects.get(confirmed_from=dry)
    _enqueue(job.pk)
    return job


def progress_path(job_id: int) -> Path:
    return import_root() / "progress" / f"{job_id}.json"


class ProgressReporter:
    """``progress(rows_done, rows_total)`` for ``run_import``: writes the job's progress every PROGRESS_EVERY
    rows where the result page can read it while the import's transaction is still open (see above)."""

    def __init__(self, job_id: int, every: int | None = None):
        self.job_id = job_id
        self.every = every or PROGRESS_EVERY
        self.last = 0
        self.use_file = connection.vendor == "sqlite"
        self._side = None

    def __call__(self, done: int, total: int | None) -> None:
        if done - self.last < self.every and done != total:
            return
        self.last = done
        if self.use_file:
            path = progress_path(self.job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(json.dumps({"rows_done": done, "rows_total": total}))
            os.replace(partial, path)
            return
        if self._side is None:
            # Its own connection, in autocommit: the update is visible before the import commits.
            main = connections[DEFAULT_DB_ALIAS]
            self._side = type(main)(dict(main.settings_dict), alias=DEFAULT_DB_ALIAS)
        table = self._side.ops.quote_name(ImportJob._meta.db_table)
        with self._side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET rows_done = %s, rows_total = COALESCE(%s, rows_total) WHERE id = %s",
                [done, total, self.job_id],
            )

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None
        progress_path(self.job_id).unlink(missing_ok=True)


def current_progress(job: ImportJob) -> tuple[int, int | None]:
    """``(rows_done, rows_total)`` of a job as the result page shows it (the progress file while it runs)."""
    done, total = job.rows_done, job.rows_total
    if job.status == job.Status.RUNNING:
        try:
            data = json.loads(progress_path(job.pk).read_text())
        except (OSError, ValueError):
            data = {}
        done = max(done, int(data.get("rows_done") or 0))
        total = data.get("rows_total") or total
    return done, total


def _cap_errors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return records[: ImportJob.MAX_STORED_ERRORS]


def run_import_job(job_id: int) -> dict[str, Any]:
    """Run one queued import job (the django-q2 task) through ``run_import``: all or nothing, errors by line
    and column, ``backoffice.import.completed`` in the audit trail after a real import.

    Safe to run twice: a conditional UPDATE claims only a queued job (or one left running by a worker killed
    at the cluster's timeout, whose transaction was rolled back), so a second run of a finished job returns
    without importing. Any failure is stored on the job (status ``failed``, errors), never raised."""
    now = timezone.now()
    if not claim_job(ImportJob, job_id, now):
        return {"job": job_id, "skipped": "not queued"}
    job = ImportJob.objects.select_related("user").get(pk=job_id)
    reporter = ProgressReporter(job_id)
    try:
        resource_class = job_resource_class(job)
        # The stored file is read as it is imported (from its path), never whole into memory.
        data = import_root() / job.file_path
        if file_sha256(data) != job.file_sha256:
            raise ImportJobError(_("The stored file does not have the SHA-256 it was uploaded with."))
        result, _lines = run_import(
            resource_class(),
            data,
            format_name=job.format,
            file_name=job.file_name,
            dry_run=job.is_dry_run,
            user=job.user,
            progress=reporter,
            import_job_id=job.pk,
            preview_rows=False,
        )
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            error_count=1,
            errors=[{"line": None, "column": None, "message": describe_exception(exc)[:2000]}],
            finished_at=timezone.now(),
        )
        return {"job": job_id, "failed": describe_exception(exc)}
    finally:
        reporter.close()
    records = result.book_error_records
    totals = result.totals
    succeeded = not records
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.SUCCEEDED if succeeded else ImportJob.Status.FAILED,
        rows_total=result.total_rows,
        rows_done=result.total_rows,
        # A failed file saved nothing: it has no new or updated rows.
        rows_new=totals[RowResult.IMPORT_TYPE_NEW] if succeeded else 0,
        rows_updated=totals[RowResult.IMPORT_TYPE_UPDATE] if succeeded else 0,
        rows_skipped=totals[RowResult.IMPORT_TYPE_SKIP] if succeeded else 0,
        error_count=len(records),
        errors=_cap_errors(records),
        finished_at=timezone.now(),
    )
    outcome = "succeeded" if succeeded else "failed"
    return {"job": job_id, outcome: True, "rows": result.total_rows, "errors": len(records)}
