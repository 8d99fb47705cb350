"""Collections in the admin: the ladder inline on the tier, cases, promises, agencies and legal referrals."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import DateTimeField, Value
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin

from core.admin import AuditedExportMixin, AuditedModelAdmin, LargeTablePaginator
from core.imports.admin import BookImportAdminMixin
from core.money import money_display
from loans.admin import CreditTierAdmin
from loans.book_admin import STANDING_AT, request_moment
from loans.policy_changes import PolicyChangeAdminMixin

from .. import legal, placements
from ..models import (
    Agency,
    AgencyPlacement,
    CallTask,
    CaseStepRun,
    CollectionCase,
    EscalationStep,
    LegalReferral,
    PromiseToPay,
)
from ..policy_versions import migrate_cases
from ..resources import EscalationStepResource
from .filters import DpdBucketFilter, StageFilter


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    fields = ["min_dpd", "stage", "action", "kind"]
    extra = 0
    ordering = ["min_dpd", "action"]


# The ladder is edited on the credit tier's page.
if EscalationStepInline not in CreditTierAdmin.inlines:
    CreditTierAdmin.inlines = [*CreditTierAdmin.inlines, EscalationStepInline]


@admin.register(EscalationStep)
class EscalationStepAdmin(
    PolicyChangeAdminMixin, AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, AuditedModelAdmin
):
    list_display = ["tier", "min_dpd", "stage", "action", "kind"]
    list_filter = ["tier", "action"]
    list_select_related = ["tier"]
    ordering = ["tier__code", "min_dpd"]

    resource_classes = [EscalationStepResource]
    skip_admin_log = True


# --- cases -------------------------------------------------------------------------------------------------
class StepRunInline(admin.TabularInline):
    model = CaseStepRun
    fields = ["run_at", "min_dpd", "stage", "action", "result", "detail", "dpd"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class CallTaskInline(admin.TabularInline):
    model = CallTask
    fields = ["scheduled_for", "assigned_to", "status", "outcome", "note", "completed_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class PromiseInline(admin.TabularInline):
    model = PromiseToPay
    fields = ["amount", "promised_date", "status", "created_at", "resolved_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class PlaceWithAgencyForm(forms.Form):
    agency = forms.ModelChoiceField(queryset=Agency.objects.filter(is_active=True), label=_("Agency"))


@admin.register(CollectionCase)
class CollectionCaseAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "loan",
        "customer_ref",
        "tier",
        "stage",
        "status",
        "days_past_due",
        "bucket",
        "amount_overdue_display",
        "is_paused",
        "is_frozen",
        "opened_at",
        # Last: the list is sorted by column number in saved links (?o=7 is days past due).
        "policy_version",
    ]
    list_filter = ["status", StageFilter, DpdBucketFilter, "is_frozen", "tier"]
    list_select_related = ["loan__customer", "tier", "policy_version__tier"]
    search_fields = ["loan__ref", "loan__customer__ref"]
    raw_id_fields = ["loan"]
    readonly_fields = [f.name for f in CollectionCase._meta.fields]
    inlines = [StepRunInline, CallTaskInline, PromiseInline]
    actions = ["place_with_agency_action", "refer_to_legal_action", "migrate_policy_action"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    amount_overdue_display = money_display(
        "amount_overdue", lambda case: case.loan.currency, description=_("amount overdue")
    )

    @admin.display(description=_("customer"))
    def customer_ref(self, obj):
        return obj.loan.customer.ref

    def get_queryset(self, request):
        # Every row of a request is read at its one moment, carried on the rows (never a clock per row).
        moment = Value(request_moment(request), output_field=DateTimeField())
        return super().get_queryset(request).annotate(**{STANDING_AT: moment})

    @staticmethod
    def _moment(obj):
        return getattr(obj, STANDING_AT, None) or obj.closed_at or obj.opened_at

    # More days past due is an older date to count from.
    @admin.display(description=_("days past due"), ordering="-oldest_due_date")
    def days_past_due(self, obj):
        return obj.days_past_due(self._moment(obj))

    @admin.display(description=_("DPD bucket"))
    def bucket(self, obj):
        return obj.dpd_bucket(self._moment(obj)).label

    @admin.display(boolean=True, description=_("paused"))
    def is_paused(self, obj):
        return obj.is_paused

    @admin.action(description=_("Place with an agency"), permissions=["place"])
    def place_with_agency_action(self, request, queryset):
        if "apply" in request.POST:
            form = PlaceWithAgencyForm(request.POST)
            if form.is_valid():
                try:
                    placement = placements.place_with_agency(
                        queryset, form.cleaned_data["agency"], actor=request.user, at=timezone.now()
                    )
                except ValidationError as exc:
                    self.message_user(request, " ".join(exc.messages), messages.ERROR)
                    return None
                self.message_user(
                    request,
                    _("%(n)d case(s) placed (placement %(id)s).")
                    % {"n": queryset.count(), "id": placement.pk},
                )
                return HttpResponseRedirect(
                    reverse("admin:collections_agencyplacement_change", args=[placement.pk])
                )
        else:
            form = PlaceWithAgencyForm()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Place cases with an agency"),
            "form": form,
            "queryset": queryset,
            "cases": [
                (case, case.days_past_due(request_moment(request)))
                for case in queryset.select_related("loan__customer")
            ],
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/collections/collectioncase/place_with_agency.html", context)

    def has_place_permission(self, request):
        return request.user.has_perm("collections.place_with_agency")

    @admin.action(description=_("Refer to legal (freezes all automatic contact)"), permissions=["refer"])
    def refer_to_legal_action(self, request, queryset):
        done, at = 0, timezone.now()
        for case in queryset:
            try:
                legal.refer_to_legal(case, actor=request.user, at=at, note="admin")
                done += 1
            except ValidationError as exc:
                self.message_user(request, f"{case}: {' '.join(exc.messages)}", messages.WARNING)
        self.message_user(request, _("%(n)d case(s) referred to legal.") % {"n": done})

    def has_refer_permission(self, request):
        return request.user.has_perm("collections.refer_to_legal")

    @admin.action(
        description=_("Move onto the tier's current policy version (audited)"), permissions=["migrate"]
    )
    def migrate_policy_action(self, request, queryset):
        moved = migrate_cases(
            queryset.open().select_related("policy_version"),
            actor=request.user,
            at=timezone.now(),
            reason="admin",
        )
        self.message_user(request, _("%(n)d case(s) moved onto their tier's current version.") % {"n": moved})

    def has_migrate_permission(self, request):
        return request.user.has_perm("collections.migrate_case_policy")


@admin.register(PromiseToPay)
class PromiseToPayAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "amount_display", "promised_date", "status", "created_at", "created_by"]
    list_filter = ["status"]
    list_select_related = ["case__loan", "created_by"]
    amount_display = money_display("amount", lambda p: p.case.loan.currency, description=_("amount"))
    search_fields = ["case__loan__ref"]
    readonly_fields = [f.name for f in PromiseToPay._meta.fields]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- agencies and legal ----------------------------------------------------------------------------------
@admin.register(Agency)
class AgencyAdmin(AuditedModelAdmin):
    list_display = ["code", "name", "may_see_personal_data", "is_active"]
    search_fields = ["code", "name"]


@admin.register(AgencyPlacement)
class AgencyPlacementAdmin(admin.ModelAdmin):
    list_display = ["id", "agency", "placed_at", "placed_by", "case_count", "recalled_at", "download"]
    list_filter = ["agency", ("recalled_at", admin.EmptyFieldListFilter)]
    list_select_related = ["agency"]
    readonly_fields = [
        "agency",
        "placed_at",
        "placed_by",
        "recalled_at",
        "recalled_by",
        "recall_reason",
        "file_sha256",
        "download",
    ]
    exclude = ["cases", "file"]
    actions = ["recall_action"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("cases"))
    def case_count(self, obj):
        return obj.cases.count()

    @admin.display(description=_("file"))
    def download(self, obj):
        if not obj.pk:
            return ""
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:collections_agencyplacement_download", args=[obj.pk]),
            _("Download CSV"),
        )

    def get_urls(self):
        return [
            path(
                "<int:placement_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="collections_agencyplacement_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request, placement_id):
        if not request.user.has_perm("collections.download_placement_file"):
            raise PermissionDenied
        placement = get_object_or_404(AgencyPlacement, pk=placement_id)
        from core.audit import log_event

        log_event(
            "collections.placement.downloaded",
            actor=request.user,
            obj=placement,
            after={"file_sha256": placement.file_sha256},
        )
        response = HttpResponse(placement.file, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="placement-{placement.pk}-{placement.agency.code}.csv"'
        )
        return response

    @admin.action(description=_("Recall from the agency"), permissions=["place"])
    def recall_action(self, request, queryset):
        n, at = 0, timezone.now()
        for placement in queryset.filter(recalled_at__isnull=True):
            placements.recall_placement(placement, actor=request.user, at=at)
            n += 1
        self.message_user(request, _("%(n)d placement(s) recalled.") % {"n": n})

    def has_place_permission(self, request):
        return request.user.has_perm("collections.place_with_agency")


@admin.register(LegalReferral)
class LegalReferralAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "referred_at", "referred_by", "dpd", "amount_overdue_display"]
    list_select_related = ["case__loan"]
    amount_overdue_display = money_display(
        "amount_overdue", lambda r: r.case.loan.currency, description=_("amount overdue")
    )
    readonly_fields = [f.name for f in LegalReferral._meta.fields]
    search_fields = ["case__loan__ref"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
