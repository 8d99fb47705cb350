"""The export jobs in the admin: each user's exports with progress and download, found by the customer they
concern (an export filtered by a customer's reference, or searched for it)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from .compliance_admin import ReadOnlyAdminMixin, export_file_response
from .exports.files import manifest_path_for
from .exports.jobs import (
    job_file_path,
    jobs_about_customer_q,
    may_download,
    may_see_all_exports,
)
from .exports.kinds import export_kinds
from .models import ExportJob


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each user sees and downloads their own exports; a user granted ``core.access_all_exports``
    (Administrators) sees everyone's. The page polls until the file is ready."""

    list_display = (
        "id",
        "created_at",
        "kind",
        "customer",
        "format",
        "status",
        "rows",
        "is_masked",
        "user",
    )
    list_filter = ("kind", "status")
    list_select_related = ("user",)
    show_full_result_count = False
    # The search box reads a customer's reference (``get_search_results``); no column is searched as text.
    search_fields = ("filters",)
    search_help_text = _("A customer reference: the exports filtered by that customer or searched for them.")
    fields = (
        "user",
        "kind",
        "format",
        "filters",
        "is_masked",
        "status",
        "rows_done",
        "total_estimate",
        "file_sha256",
        "manifest_sha256",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    change_form_template = "admin/core/exportjob/change_form.html"

    def _may_use(self, request) -> bool:
        user = request.user
        return user.is_active and user.is_staff and any(user.has_perm(k.permission) for k in export_kinds())

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return may_download(request.user, obj)
        return self._may_use(request) or super().has_view_permission(request, obj)

    def has_module_permission(self, request):
        return self._may_use(request) or super().has_module_permission(request)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if may_see_all_exports(request.user) else qs.filter(user=request.user)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(jobs_about_customer_q(search_term)), False

    @admin.display(description=_("customer or search"))
    def customer(self, obj):
        filters = obj.filters or {}
        if filters.get("customer_ref"):
            return filters["customer_ref"]
        if filters.get("q"):
            return _("search “%(term)s”") % {"term": filters["q"]}
        return "—"

    @admin.display(description=_("rows"))
    def rows(self, obj):
        if obj.total_estimate is None or obj.status == ExportJob.Status.DONE:
            return obj.rows_done
        return f"{obj.rows_done} / {obj.total_estimate}"

    def get_urls(self):
        return [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="core_exportjob_download",
            ),
            path(
                "<int:pk>/manifest/",
                self.admin_site.admin_view(self.manifest_view),
                name="core_exportjob_manifest",
            ),
            path(
                "<int:pk>/status/",
                self.admin_site.admin_view(self.status_view),
                name="core_exportjob_status",
            ),
        ] + super().get_urls()

    def _job(self, request, pk) -> ExportJob:
        job = get_object_or_404(ExportJob, pk=pk)
        if not may_download(request.user, job):
            raise PermissionDenied
        return job

    def get_object(self, request, object_id, from_field=None):
        # Not limited to the user's own rows: ``has_view_permission`` decides (``may_download``).
        return ExportJob.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None

    def download_view(self, request, pk):
        job = self._job(request, pk)
        if job.status != ExportJob.Status.DONE:
            raise Http404("The export is not finished.")
        return export_file_response(job)

    def manifest_view(self, request, pk):
        job = self._job(request, pk)
        path_ = manifest_path_for(job_file_path(job))
        if job.status != ExportJob.Status.DONE or not path_.is_file():
            raise Http404("The export is not finished.")
        return FileResponse(
            path_.open("rb"), as_attachment=True, filename=path_.name, content_type="application/json"
        )

    def status_view(self, request, pk):
        job = self._job(request, pk)
        return JsonResponse(
            {
                "status": job.status,
                "rows_done": job.rows_done,
                "total_estimate": job.total_estimate,
                "error": job.error,
                "download": reverse("admin:core_exportjob_download", args=[job.pk])
                if job.status == ExportJob.Status.DONE and job.file_path
                else None,
            }
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        if job is not None:
            extra_context = {**(extra_context or {}), "job": job}
        return super().change_view(request, object_id, form_url, extra_context)
