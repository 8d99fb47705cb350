"""What compliance officers use in the admin: the audit trail (read-only for everyone), the "Export" button on
the lists of the exportable logs (``ComplianceExportMixin``), and the export jobs with progress and download.

Personal data is masked on these screens unless the user holds ``loans.view_personal_data``. Exporting needs
``notifications.export_notificationlog`` or ``core.export_auditevent``: being staff is not enough.
"""

from __future__ import annotations

import datetime as dt
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseRedirect, QueryDict
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .admin import LargeTablePaginator, PersonalDataAdminMixin
from .audit_search import audit_search_q
from .exports.jobs import job_file_path, may_export, start_export
from .exports.kinds import ExportError
from .exports.writers import FORMATS
from .list_filters import DateRangeFilter, day_range, parse_day
from .models import AuditEvent, ExportJob, MonthArchive

# Changelist query parameters -> export filters. Paging and ordering do not change what is exported; any other
# parameter would narrow the list in a way the export does not know, so it is refused rather than ignored.
IGNORED_PARAMS = frozenset({"p", "o", "_changelist_filters"})


class InputFilter(admin.SimpleListFilter):
    """A free-text filter (a user name, say) that never scans the table for its choices."""

    template = "admin/core/input_filter.html"

    def lookups(self, request, model_admin):
        return (("", ""),)

    def choices(self, changelist):
        query = changelist.get_filters_params()
        query.pop(self.parameter_name, None)
        pairs = [
            (k, v) for k, values in query.items() for v in (values if isinstance(values, list) else [values])
        ]
        yield {"value": self.value() or "", "parameter_name": self.parameter_name, "query_params": pairs}


class ActorFilter(InputFilter):
    title = _("actor")
    parameter_name = "actor"

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(actor=value) if value else queryset


class ActionPrefixFilter(admin.SimpleListFilter):
    title = _("action")
    parameter_name = "action_prefix"
    PREFIXES = (
        ("backoffice.login.", _("Log-ins")),
        ("backoffice.export.", _("Exports")),
        ("backoffice.import.", _("Imports")),
        ("notifications.contact.", _("Contact decisions")),
        ("notifications.", _("Reminders (all)")),
        ("loans.", _("Loan book")),
        ("collections.", _("Collections")),
        ("auth.", _("Users and roles")),
    )

    def lookups(self, request, model_admin):
        return self.PREFIXES

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(action__startswith=value) if value else queryset


class ReadOnlyAdminMixin:
    """Nobody adds, changes or deletes these rows by hand, whatever their permissions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        return {}


class ComplianceExportMixin:
    """An "Export" button on the changelist that exports exactly the filtered rows (see ``start_export``)."""

    export_kind = ""
    export_params: dict[str, str] = {}
    search_q = (
        None  # term -> Q, as the export's ``q`` filter matches (core.audit_search, notifications.log_search)
    )
    change_list_template = "admin/core/export_change_list.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path("export/", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info))
        ]
        return extra + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "may_export": may_export(request.user, self.export_kind),
            "export_formats": FORMATS,
            "export_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_export"),
        }
        return super().changelist_view(request, extra_context)

    def export_filters(self, params: QueryDict) -> dict[str, str]:
        filters = {}
        for key in params:
            if key in IGNORED_PARAMS:
                continue
            if key not in self.export_params:
                raise ExportError(_("The filter “%(key)s” cannot be exported.") % {"key": key})
            filters[self.export_params[key]] = _day_bound(key, params.get(key))
        return filters

    def get_search_results(self, request, queryset, search_term):
        # One term, matched as the export's ``q`` filter matches it, so an export holds what the search showed.
        if self.search_q is None:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(self.search_q(search_term)), False

    def export_view(self, request):
        if not may_export(request.user, self.export_kind):
            raise PermissionDenied
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        if request.method != "POST":
            return HttpResponseRedirect(changelist)
        query = request.POST.get("query", "")
        back = f"{changelist}?{query}" if query else changelist
        try:
            filters = {
                **self.export_filters(QueryDict(query)),
                **export_date_range(request.POST),
                **export_customer(request.POST),
            }
            job = start_export(request.user, self.export_kind, request.POST.get("format", "csv"), filters)
        except ExportError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        if job.status == ExportJob.Status.DONE:
            return export_file_response(job)
        if job.status == ExportJob.Status.FAILED:
            messages.error(request, _("The export failed: %(error)s") % {"error": job.error})
            return HttpResponseRedirect(back)
        messages.info(request, _("The export runs in the background; this page shows its progress."))
        return HttpResponseRedirect(reverse("admin:core_exportjob_change", args=[job.pk]))


def _day_bound(key: str, value: str) -> str:
    """A date range filter's day as the export's bound: the start of the ``__from`` day, the end of the ``__to``
    day, in the operator's zone; other parameters unchanged."""
    if not key.endswith(("__from", "__to")):
        return value
    try:
        day = parse_day(value)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    since, until = day_range(day, None) if key.endswith("__from") else day_range(None, day)
    bound = since or until
    return bound.isoformat() if bound else ""


def export_date_range(data) -> dict[str, str]:
    """The export form's "from" and "to" days (both included, in the back office's time zone) as the export's
    ``since`` (inclusive) and ``until`` (exclusive) filters; they replace the list's own date filter."""
    days = {}
    for field in ("from_date", "to_date"):
        text = (data.get(field) or "").strip()
        if text:
            try:
                days[field] = dt.date.fromisoformat(text)
            except ValueError:
                raise ExportError(_("“%(day)s” is not a date (YYYY-MM-DD).") % {"day": text}) from None
    if "from_date" in days and "to_date" in days and days["from_date"] > days["to_date"]:
        raise ExportError(_("The first day of the export comes after its last day."))
    range_ = {}
    if "from_date" in days:
        range_["since"] = days["from_date"].isoformat()
    if "to_date" in days:
        range_["until"] = (days["to_date"] + dt.timedelta(days=1)).isoformat()
    return range_


def export_customer(data) -> dict[str, str]:
    """The export form's customer reference as the export's ``customer_ref`` filter: only that customer's rows
    (the notification log's contacts, the audit trail's events about them), on top of the list's filters."""
    ref = (data.get("customer_ref") or "").strip()
    return {"customer_ref": ref} if ref else {}


def export_file_response(job: ExportJob) -> FileResponse:
    path = job_file_path(job)
    if not job.file_path or not path.is_file():
        raise Http404("The export file is not there (any more).")
    response = FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
    response["X-Export-SHA256"] = job.file_sha256
    response["X-Export-Manifest-SHA256"] = job.manifest_sha256
    response["Cache-Control"] = "private, no-store"
    return response


@admin.register(AuditEvent)
class AuditEventAdmin(PersonalDataAdminMixin, ComplianceExportMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    export_kind = "audit"
    export_params = {
        "action_prefix": "action_prefix",
        "actor": "actor",
        "at__gte": "since",
        "at__lt": "until",
        "at__from": "since",
        "at__to": "until",
        "q": "q",
    }
    list_display = ("seq", "at", "actor", "action", "object_type", "object_id")
    ordering = ("-seq",)  # newest first; the unique index on seq serves it
    list_display_links = ("seq",)
    list_filter = (ActionPrefixFilter, ActorFilter, ("at", DateRangeFilter))
    search_fields = ("=object_id", "^action")
    search_help_text = _("An object id (exact), the start of an action code, or a customer reference.")
    search_q = staticmethod(audit_search_q)
    personal_fields = ("before", "after")
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 100
    fields = (
        "seq",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "before_display",
        "after_display",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields

    def _json(self, obj, value):
        if value is None:
            return "—"
        value = self.masker(obj).value(value)
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))

    @admin.display(description=_("before"))
    def before_display(self, obj):
        return self._json(obj, obj.before)

    @admin.display(description=_("after"))
    def after_display(self, obj):
        return self._json(obj, obj.after)


@admin.register(MonthArchive)
class MonthArchiveAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The months detached from the partitioned logs to archive files (``manage.py archive_month``): which file
    holds them, its digests and, for the audit trail, the seq range ``verify_audit`` checks through it."""

    list_display = ("kind", "month_display", "rows", "first_seq", "last_seq", "archived_at", "archived_by")
    list_filter = ("kind",)
    ordering = ("-month", "kind")
    fields = (
        "kind",
        "month",
        "rows",
        "first_seq",
        "last_seq",
        "first_hash",
        "last_hash",
        "file_path",
        "file_sha256",
        "manifest_sha256",
        "archived_at",
        "archived_by",
    )
    readonly_fields = fields

    @admin.display(description=_("month"), ordering="month")
    def month_display(self, obj):
        return obj.month.strftime("%Y-%m")


__all__ = [
    "AuditEventAdmin",
    "ComplianceExportMixin",
    "InputFilter",
    "MonthArchiveAdmin",
    "ReadOnlyAdminMixin",
]
