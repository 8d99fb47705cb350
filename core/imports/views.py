"""The result page of a background import (``ImportJob``): progress while it runs, then rows done, the errors
by line and column, and for a successful dry run the button that confirms the real import.

Only the job's owner or a user holding the import permission of the job's resource sees a job; confirming
needs that import permission. Included under ``/admin/imports/`` (``backoffice.urls``), behind the admin's
log-in.
"""

from __future__ import annotations

import csv
import io

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from ..exports.writers import escape_formula
from ..models import ImportJob
from .jobs import (
    ImportJobError,
    background_threshold,
    confirm_import_job,
    current_progress,
    job_resource_class,
    may_import,
    may_see_import_job,
)

app_name = "imports"


def _job(request, pk: int) -> ImportJob:
    job = get_object_or_404(ImportJob.objects.select_related("user", "confirmed_from"), pk=pk)
    if not may_see_import_job(request.user, job):
        raise PermissionDenied
    return job


def _model_urls(job: ImportJob) -> dict[str, str | None]:
    try:
        opts = job_resource_class(job)._meta.model._meta
    except ImportJobError:
        return {"changelist": None, "import": None, "model_name": ""}
    urls: dict[str, str | None] = {"model_name": str(opts.verbose_name_plural)}
    for name in ("changelist", "import"):
        try:
            urls[name] = reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}")
        except NoReverseMatch:
            urls[name] = None
    return urls


def status_payload(job: ImportJob) -> dict:
    done, total = current_progress(job)
    return {
        "id": job.pk,
        "status": job.status,
        "is_finished": job.is_finished,
        "is_dry_run": job.is_dry_run,
        "rows_done": done,
        "rows_total": total,
        "percent": min(100, int(done * 100 / total)) if total else (100 if job.is_finished else 0),
        "rows_new": job.rows_new,
        "rows_updated": job.rows_updated,
        "rows_skipped": job.rows_skipped,
        "error_count": job.error_count,
    }


@require_GET
def job_view(request, pk: int):
    job = _job(request, pk)
    done, total = current_progress(job)
    try:
        may_confirm = job.may_be_confirmed and may_import(request.user, job_resource_class(job))
    except ImportJobError:
        may_confirm = False
    confirmation = ImportJob.objects.filter(confirmed_from=job).first()
    context = {
        **admin.site.each_context(request),
        "title": _("Import of %(file)s") % {"file": job.file_name},
        "job": job,
        "rows_done": done,
        "rows_total": total,
        "may_confirm": may_confirm,
        "confirmation": confirmation,
        "stored_errors": len(job.errors),
        "preview_rows": background_threshold(),
        "urls": _model_urls(job),
    }
    return TemplateResponse(request, "admin/core/import_job.html", context)


RECENT_JOBS = 50


@require_GET
def list_view(request):
    """The latest background imports the user may see: their own and those of models they may import."""
    allowed = []
    for resource in ImportJob.objects.values_list("resource", flat=True).distinct().order_by():
        try:
            if may_import(request.user, job_resource_class(ImportJob(resource=resource))):
                allowed.append(resource)
        except ImportJobError:
            continue
    jobs = ImportJob.objects.filter(Q(user=request.user) | Q(resource__in=allowed)).select_related("user")
    context = {
        **admin.site.each_context(request),
        "title": _("Background imports"),
        "jobs": jobs[:RECENT_JOBS],
    }
    return TemplateResponse(request, "admin/core/import_job_list.html", context)


@require_GET
def status_view(request, pk: int):
    return JsonResponse(status_payload(_job(request, pk)))


@require_POST
def confirm_view(request, pk: int):
    job = _job(request, pk)
    try:
        real = confirm_import_job(request.user, job.pk)
    except PermissionError:
        raise PermissionDenied from None
    except ImportJobError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("imports:job", args=[job.pk]))
    messages.info(request, _("The import runs in the background; this page shows its progress."))
    return HttpResponseRedirect(reverse("imports:job", args=[real.pk]))


@require_GET
def errors_view(request, pk: int):
    """The stored errors as a CSV file (``line,column,message``)."""
    job = _job(request, pk)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "column", "message"])
    for error in job.errors:
        writer.writerow(
            [error.get("line") or "", error.get("column") or "", escape_formula(error.get("message", ""))]
        )
    response = HttpResponse(out.getvalue().encode("utf-8-sig"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


urlpatterns = [
    path("", admin.site.admin_view(list_view), name="list"),
    path("<int:pk>/", admin.site.admin_view(job_view), name="job"),
    path("<int:pk>/status/", admin.site.admin_view(status_view), name="status"),
    path("<int:pk>/confirm/", admin.site.admin_view(confirm_view), name="confirm"),
    path("<int:pk>/errors.csv", admin.site.admin_view(errors_view), name="errors"),
]
