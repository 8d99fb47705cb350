"""Collections in the admin: the ladder inline on the tier, cases, the collector's queue, agencies, legal."""

from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from backoffice.admin import AuditedExportMixin, AuditedModelAdmin, LargeTablePaginator
from backoffice.masking import mask_name, mask_phone, masker_for
from backoffice.money import money_display
from loans.schedule import dpd_bucket
from notifications.models import NotificationLog

from . import calls, legal, placements
from .models import (
    Agency,
    AgencyPlacement,
    CallTask,
    CaseStepRun,
    CollectionCase,
    EscalationStep,
    LegalReferral,
    PromiseToPay,
)
from .resources import EscalationStepResource


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    fields = ["min_dpd", "stage", "action", "kind"]
    extra = 0
    ordering = ["min_dpd", "action"]


try:  # the ladder is edited on the credit tier's page
    from loans.admin import CreditTierAdmin
except ImportError:  # pragma: no cover - the loans admin lands separately
    CreditTierAdmin = None
if CreditTierAdmin is not None and EscalationStepInline not in CreditTierAdmin.inlines:
    CreditTierAdmin.inlines = [*CreditTierAdmin.inlines, EscalationStepInline]


def _import_mixin():
    try:
        from import_export.admin import ImportExportMixin

        from backoffice.importing import BookImportAdminMixin
    except ImportError:  # pragma: no cover
        return ()
    return (BookImportAdminMixin, ImportExportMixin)


@admin.register(EscalationStep)
class EscalationStepAdmin(AuditedExportMixin, *_import_mixin(), AuditedModelAdmin):
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


class StageFilter(admin.SimpleListFilter):
    """Stages as the ladders name them (a small table), not the distinct stages of every case ever opened."""

    title = _("stage")
    parameter_name = "stage"

    def lookups(self, request, model_admin):
        stages = EscalationStep.objects.order_by("stage").values_list("stage", flat=True).distinct()
        return [(stage, stage) for stage in stages]

    def queryset(self, request, queryset):
        return queryset.filter(stage=self.value()) if self.value() else queryset


@admin.register(CollectionCase)
class CollectionCaseAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "loan",
        "customer_ref",
        "tier",
        "stage",
        "status",
        "dpd",
        "bucket",
        "amount_overdue_display",
        "is_paused",
        "is_frozen",
        "opened_at",
    ]
    list_filter = ["status", StageFilter, "is_frozen", "tier"]
    list_select_related = ["loan__customer", "tier"]
    search_fields = ["loan__ref", "loan__customer__ref"]
    raw_id_fields = ["loan"]
    readonly_fields = [f.name for f in CollectionCase._meta.fields]
    inlines = [StepRunInline, CallTaskInline, PromiseInline]
    actions = ["place_with_agency_action", "refer_to_legal_action"]
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

    @admin.display(description=_("DPD bucket"))
    def bucket(self, obj):
        return dpd_bucket(obj.dpd)

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


# --- the collector's queue -------------------------------------------------------------------------------------
class CallOutcomeForm(forms.Form):
    outcome = forms.ChoiceField(choices=[c for c in CallTask.Outcome.choices if c[0]], label=_("Outcome"))
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label=_("Note"))
    promise_amount = forms.DecimalField(
        max_digits=14, decimal_places=2, required=False, label=_("Promised amount")
    )
    promise_date = forms.DateField(
        required=False, label=_("Promised date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    covers = forms.CharField(
        required=False,
        label=_("Also about loans"),
        help_text=_("References of the customer's other loans the call was about, comma-separated."),
    )


def _reason(refused: calls.CallRefused) -> str:
    """The refusal in words: the reason's label, and when the call may be made."""
    label = str(NotificationLog.Reason(refused.reason).label)
    limit = refused.inputs.get("limit")
    if limit:
        label = f"{label} ({limit})"
    return label


class OpenOnlyFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", _("Open")), ("all", _("All"))]

    def queryset(self, request, queryset):
        if self.value() in (None, "open"):
            return queryset.filter(status=CallTask.Status.OPEN)
        return queryset

    def choices(self, changelist):
        value = self.value() or "open"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


@admin.register(CallTask)
class CallTaskAdmin(AuditedModelAdmin):
    """The queue: a collector sees their own open tasks, highest priority first, and records outcomes in one form."""

    list_display = [
        "id",
        "customer",
        "phone",
        "loan",
        "dpd",
        "amount_overdue",
        "broken_promises",
        "scheduled_for",
        "local_time",
        "callable_now",
        "assigned_to",
        "status",
        "record",
    ]
    list_filter = [OpenOnlyFilter, "outcome"]
    list_select_related = ["case__loan__customer__tier", "assigned_to"]
    search_fields = ["case__loan__ref", "case__loan__customer__ref"]
    ordering = ["-priority", "scheduled_for", "id"]
    raw_id_fields = ["assigned_to"]
    # A supervisor may hand a task to another collector (audited); everything else is the record form's work.
    fields = [
        "case",
        "assigned_to",
        "scheduled_for",
        "priority",
        "status",
        "outcome",
        "note",
        "cancel_reason",
        "created_at",
        "completed_at",
        "completed_by",
    ]
    readonly_fields = [f for f in fields if f != "assigned_to"]
    show_full_result_count = False
    paginator = LargeTablePaginator

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if not request.user.has_perm("collections.view_all_calltasks"):
            qs = qs.filter(assigned_to=request.user)
        return qs

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("collections.view_all_calltasks") and super().has_change_permission(
            request, obj
        )

    def get_changelist_instance(self, request):
        # The gates are asked once for the page, at the moment it is shown; kept on the request, not on this
        # shared ModelAdmin.
        changelist = super().get_changelist_instance(request)
        request.call_gates_at = timezone.now()
        request.call_gates = calls.queue_gates(changelist.result_list, request.call_gates_at)
        return changelist

    def get_list_display(self, request):
        # Collectors need the phone to call; whoever may not see personal data gets it masked.
        masker = masker_for(request)

        @admin.display(description=_("customer's local time"))
        def local_time(obj):
            now = getattr(request, "call_gates_at", None) or timezone.now()
            customer = obj.case.loan.customer
            zones = customer.location.zones
            own = now.astimezone(customer.zone).strftime("%a %H:%M")
            others = [
                f"{z}: {now.astimezone(zoneinfo.ZoneInfo(z)):%H:%M}" for z in zones if z != customer.timezone
            ]
            return format_html("{}<br><small>{}</small>", own, "; ".join(others)) if others else own

        @admin.display(description=_("may call now"))
        def callable_now(obj):
            decision = getattr(request, "call_gates", {}).get(obj.pk)
            if decision is None:
                return "—"
            if decision.allowed:
                return format_html('<span style="color:#264b00">{}</span>', _("yes"))
            reason = NotificationLog.Reason(decision.reason).label if decision.reason else ""
            if decision.not_before:
                until = decision.not_before.astimezone(obj.case.loan.customer.zone).strftime("%Y-%m-%d %H:%M")
                return format_html(
                    '<span style="color:#ba2121">{}</span><br><small>{} {}</small>', reason, _("from"), until
                )
            return format_html('<span style="color:#ba2121">{}</span>', reason)

        columns = {"local_time": local_time, "callable_now": callable_now}

        @admin.display(description=_("customer"))
        def customer(obj):
            return masker.name(obj.case.loan.customer.name)

        @admin.display(description=_("phone"))
        def phone(obj):
            return masker.phone(str(obj.case.loan.customer.phone or ""))

        columns.update(customer=customer, phone=phone)
        return [columns.get(c, c) for c in self.list_display]

    @admin.display(description=_("customer"))
    def customer(self, obj):
        return mask_name(obj.case.loan.customer.name)

    @admin.display(description=_("phone"))
    def phone(self, obj):
        return mask_phone(str(obj.case.loan.customer.phone or ""))

    # The per-request versions in get_list_display replace these (they read the gates computed for the page).
    @admin.display(description=_("customer's local time"))
    def local_time(self, obj):
        return "—"

    @admin.display(description=_("may call now"))
    def callable_now(self, obj):
        return "—"

    @admin.display(description=_("loan"))
    def loan(self, obj):
        return obj.case.loan.ref

    @admin.display(description=_("DPD"))
    def dpd(self, obj):
        return obj.case.dpd

    @admin.display(description=_("amount overdue"))
    def amount_overdue(self, obj):
        return obj.case.amount_overdue

    @admin.display(description=_("broken promises"))
    def broken_promises(self, obj):
        return obj.case.broken_promises

    @admin.display(description="")
    def record(self, obj):
        if not obj.is_open:
            return obj.get_outcome_display()
        return format_html(
            '<a class="button" href="{}">{}</a>',
            reverse("admin:collections_calltask_record", args=[obj.pk]),
            _("Record outcome"),
        )

    def get_urls(self):
        return [
            path(
                "<int:task_id>/record/",
                self.admin_site.admin_view(self.record_view),
                name="collections_calltask_record",
            ),
            *super().get_urls(),
        ]

    def record_view(self, request, task_id):
        task = get_object_or_404(
            self.get_queryset(request).select_related("case__loan__customer"), pk=task_id
        )
        if not request.user.has_perm("collections.record_call_outcome"):
            raise PermissionDenied
        form = CallOutcomeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                calls.record_call_outcome(
                    task,
                    outcome=data["outcome"],
                    note=data["note"],
                    promise_amount=data["promise_amount"],
                    promise_date=data["promise_date"],
                    covers=[r for r in (data["covers"] or "").split(",") if r.strip()],
                    actor=request.user,
                    at=timezone.now(),
                )
            except calls.CallRefused as exc:
                form.add_error(
                    None, _("This call may not be made now: %(reason)s.") % {"reason": _reason(exc)}
                )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for name, errs in exc.message_dict.items():
                        form.add_error(name if name in form.fields else None, errs)
                else:
                    form.add_error(None, exc.messages)
            else:
                self.message_user(request, _("Outcome recorded."))
                return HttpResponseRedirect(reverse("admin:collections_calltask_changelist"))
        customer = task.case.loan.customer
        masker = masker_for(request)
        now = timezone.now()
        gate = calls.queue_gates([task], now).get(task.pk) if task.is_open else None
        context = {
            "local_time": now.astimezone(customer.zone),
            "zones": ", ".join(customer.location.zones),
            "may_call": gate.allowed if gate else None,
            "refusal": NotificationLog.Reason(gate.reason).label if gate and not gate.allowed else "",
            "voicemail_text": calls.voicemail_for(customer, request.user),
            **self.admin_site.each_context(request),
            "title": _("Record the outcome of a call"),
            "opts": self.model._meta,
            "task": task,
            "case": task.case,
            "customer_name": masker.name(customer.name),
            "customer_phone": masker.phone(str(customer.phone or "")),
            "form": form,
        }
        return TemplateResponse(request, "admin/collections/calltask/record_outcome.html", context)


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
        from backoffice.audit import log_event

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
