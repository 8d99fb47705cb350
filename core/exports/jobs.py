"""Exports asked from the admin: a job per export, run in the request when small, else as a django-q2 task;
who may start one, see the list of everyone's, and download a file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..background import claim_job
from ..masking import can_see_personal_data
from ..models import ExportJob
from .files import export_to_file
from .kinds import ExportError, clean_filters, export_kind, filtered_queryset
from .writers import FORMATS

logger = logging.getLogger(__name__)


def background_threshold() -> int:
    return int(getattr(settings, "EXPORT_BACKGROUND_THRESHOLD", 20000))


def may_export(user, kind: str) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(export_kind(kind).permission))


def start_export(user, kind: str, fmt: str, filters: dict[str, Any] | None) -> ExportJob:
    """Create the export job of ``user``; run it now when it is small, else queue it as a django-q2 task.

    Masked unless the user may see personal data. Raises PermissionError when the user may not export this
    kind, ExportError on a bad format or filter."""
    if not may_export(user, kind):
        raise PermissionError(f"{user} may not export the {kind}.")
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format “{fmt}”.")
    filters = clean_filters(kind, filters)
    threshold = background_threshold()
    estimate = filtered_queryset(kind, filters)[: threshold + 1].count()
    job = ExportJob.objects.create(
        user=user,
        kind=kind,
        format=fmt,
        filters=filters,
        is_masked=not can_see_personal_data(user),
        total_estimate=estimate,
    )
    if estimate <= threshold:
        run_export_job(job.pk)
        job.refresh_from_db()
    else:
        from django_q.tasks import async_task

        async_task("core.exports.jobs.run_export_job", job.pk, task_name=f"export-{job.pk}", group="exports")
    return job


def job_file_path(job: ExportJob) -> Path:
    return Path(settings.EXPORT_ROOT) / job.file_path


def run_export_job(job_id: int) -> dict[str, Any]:
    """Run one queued export job (the django-q2 task). Safe to run twice: only a queued job is claimed, so a
    second run returns without writing; a job left running by a worker killed at the cluster's timeout is
    claimed again by the retry. A failure is stored on the job (status ``failed``) and logged."""
    now = timezone.now()
    if not claim_job(ExportJob, job_id, now):
        return {"job": job_id, "skipped": "not queued"}
    job = ExportJob.objects.select_related("user").get(pk=job_id)
    if job.total_estimate is None or job.total_estimate > background_threshold():
        total = filtered_queryset(job.kind, job.filters).count()
        ExportJob.objects.filter(pk=job_id).update(total_estimate=total)
    masked = job.is_masked or not can_see_personal_data(job.user)
    relative = Path(f"{job.kind}-{timezone.localtime(now):%Y%m%dT%H%M%S}-{job.pk}.{job.format}")
    try:
        result = export_to_file(
            job.kind,
            job.format,
            Path(settings.EXPORT_ROOT) / relative,
            filters=job.filters,
            masked=masked,
            user=job.user,
            progress=lambda n: ExportJob.objects.filter(pk=job_id).update(rows_done=n),
            job_id=job.pk,
        )
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportJob.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        return {"job": job_id, "failed": str(exc)}
    ExportJob.objects.filter(pk=job_id).update(
        status=ExportJob.Status.DONE,
        rows_done=result.rows,
        is_masked=masked,
        file_path=str(relative),
        file_sha256=result.sha256,
        manifest_sha256=result.manifest_sha256,
        finished_at=timezone.now(),
    )
    return {"job": job_id, "rows": result.rows}


ALL_EXPORTS_PERMISSION = "core.access_all_exports"


def may_see_all_exports(user) -> bool:
    """Whether ``user`` sees every user's exports in the list (else only their own)."""
    return bool(user is not None and user.is_active and user.has_perm(ALL_EXPORTS_PERMISSION))


def may_download(user, job: ExportJob) -> bool:
    """The owner, or a user granted ``core.access_all_exports`` (and, for an unmasked file, the right to
    see personal data). Being allowed to export the same kind is not enough: the file is someone else's."""
    if user is None or not user.is_active:
        return False
    if job.user_id == user.pk:
        return True
    return may_see_all_exports(user) and (job.is_masked or can_see_personal_data(user))


# The filters by which an export names one customer: their reference, or a search for it.
CUSTOMER_FILTERS = ("customer_ref", "q")


def jobs_about_customer_q(term: str) -> Q:
    """The export jobs that concern the customer whose reference is ``term`` (as typed or upper-cased, as every
    search box reads a reference): those filtered by that customer, or searched for that reference. An export
    of a whole log holds every customer and is not listed; nothing matches an empty ``term``."""
    term = term.strip()
    if not term:
        return Q(pk__in=[])
    refs = sorted({term, term.upper()})
    q = Q(pk__in=[])
    for key in CUSTOMER_FILTERS:
        q |= Q(**{f"filters__{key}__in": refs})
    return q
