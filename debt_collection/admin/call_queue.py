"""The collector's day in the admin: the call queue, the outcome form, and a team lead's reassignment.

Whether a call may be made now is asked of ``calls.queue_gates`` (the same ``may_call`` the recording of a call
is checked by), the service level of ``CallTask.overdue_by``, who may get a task of ``assignment.collectors``;
this module only shows their answers and calls the services.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from core.admin import AuditedModelAdmin, LargeTablePaginator, PersonalDataAdminMixin
from core.masking import masker_for
from core.money import format_money
from loans.book_admin import request_moment
from loans.models import Loan
from loans.schedule import dpd_bucket, local_date
from notifications.models import NotificationLog

from .. import call_outcomes, calls
from ..assignment import collectors, reassign_call_tasks, service_level
from ..models import CallAttempt, CallTask, CollectionCase, PromiseToPay
from .filters import CollectorFilter, OpenOnlyFilter, ServiceLevelFilter, TaskDpdBucketFilter, TaskStageFilter
from .forms import CallOutcomeForm, ReassignForm

# A search term with at least this many digits is also looked for inside phone numbers ("138 0013", "0013-8000").
PHONE_SEARCH_MIN_DIGITS = 4
HISTORY_LENGTH = 20


def refusal_text(
    reason: str,
    inputs: dict,
    zone: zoneinfo.ZoneInfo,
    *,
    not_before: dt.datetime | None = None,
    closed_zones: tuple[str, ...] = (),
) -> str:
    """Why a call may not be made now, in words: the reason, what decided it (``inputs`` of the decision), and
    from when it may."""
    label = str(NotificationLog.Reason(reason).label) if reason else ""
    if reason == NotificationLog.Reason.OUTSIDE_CONTACT_WINDOW and closed_zones:
        label = gettext("Outside the contact window in %(zones)s") % {"zones": ", ".join(closed_zones)}
    elif reason == NotificationLog.Reason.FREQUENCY_CAP:
        label = f"{label} ({inputs.get('contacts_in_last_7_days')}/{inputs.get('max_contacts_per_week')})"
    elif reason == NotificationLog.Reason.OPTED_OUT:
        label = gettext("Asked us to stop calling")
    elif reason == NotificationLog.Reason.CALL_LIMIT:
        limit, most = inputs.get("limit"), inputs.get("max")
        if limit == "conversation":
            label = gettext("%(reason)s: spoke about this loan recently") % {"reason": label}
        elif limit == "calls_per_debt_in_7_days":
            label = gettext("%(reason)s: %(n)s calls about this loan in 7 days") % {
                "reason": label,
                "n": most,
            }
        elif limit == "attempts_per_day":
            label = gettext("%(reason)s: %(n)s attempts today") % {"reason": label, "n": most}
    elif reason == NotificationLog.Reason.DO_NOT_CONTACT and inputs.get("do_not_contact_reason"):
        label = f"{label} ({inputs['do_not_contact_reason']})"
    if not_before:
        label = gettext("%(reason)s; from %(when)s") % {
            "reason": label,
            "when": not_before.astimezone(zone).strftime("%a %H:%M"),
        }
    return label


def gate_refusal(gate: calls.QueueGate, zone: zoneinfo.ZoneInfo) -> str:
    decision = gate.decision
    return refusal_text(
        decision.reason, decision.inputs, zone, not_before=decision.not_before, closed_zones=gate.closed_zones
    )


def short_duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


@admin.register(CallTask)
class CallTaskAdmin(PersonalDataAdminMixin, AuditedModelAdmin):
    """The queue: a collector sees their own open tasks, highest priority first, and records outcomes in one form;
    a team lead (``collections.view_all_calltasks``) sees everyone's and hands tasks to another collector."""

    list_display = [
        "id",
        "customer",
        "loan",
        "amount_overdue",
        "call_from",
        "local_time",
        "callable_now",
        "assigned_to",
        "status",
        "record",
    ]
    list_filter = [OpenOnlyFilter, ServiceLevelFilter, CollectorFilter, TaskStageFilter, TaskDpdBucketFilter]
    list_select_related = ["case__loan__customer__tier", "assigned_to"]
    search_fields = ["case__loan__ref", "case__loan__customer__ref", "case__loan__customer__name"]
    personal_fields = ("case__loan__customer__name", "case__loan__customer__phone")
    search_help_text = _("Loan or customer reference, name, or any part of the phone number.")
    ordering = ["-priority", "scheduled_for", "id"]
    actions = ["reassign_action"]
    # A team lead may hand a task to another collector (audited); everything else is the record form's work.
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

    @staticmethod
    def is_team_lead(request) -> bool:
        return request.user.has_perm("collections.view_all_calltasks")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if not self.is_team_lead(request):
            qs = qs.filter(assigned_to=request.user)
        return qs

    def get_list_filter(self, request):
        if self.is_team_lead(request):
            return self.list_filter
        return [f for f in self.list_filter if f is not CollectorFilter]

    def get_list_display(self, request):
        if self.is_team_lead(request):
            return self.list_display
        return [c for c in self.list_display if c != "assigned_to"]  # a collector's queue is all theirs

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = re.sub(r"\D", "", search_term)
        if len(digits) >= PHONE_SEARCH_MIN_DIGITS and masker_for(request).unmasked:
            # Phones are stored as E.164 (a plus and digits), so any run of the typed digits is a substring.
            found |= queryset.filter(case__loan__customer__phone__contains=digits)
        return found, may_have_duplicates

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return self.is_team_lead(request) and super().has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "assigned_to":
            kwargs["queryset"] = collectors()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changelist(self, request, **kwargs):
        # One moment for the whole page: gates, service level, days past due, filters.
        request.queue_now = request_moment(request)
        return super().get_changelist(request, **kwargs)

    def get_changelist_instance(self, request):
        # The gates are asked once for the page, at the moment it is shown, and kept on the rows shown.
        changelist = super().get_changelist_instance(request)
        now = request.queue_now
        rows = list(changelist.result_list)
        gates = calls.queue_gates(rows, now)
        sla = service_level()
        for task in rows:
            task.queue_gate = gates.get(task.pk)
            task.overdue = task.overdue_by(now, sla)
            task.queue_now = now
        changelist.result_list = rows
        return changelist

    # --- columns -------------------------------------------------------------------------------------------
    @admin.display(description=_("customer"))
    def customer(self, obj):
        masker = self.masker(obj)
        customer = obj.case.loan.customer
        return format_html(
            "{}<br><small>{}</small>", masker.name(customer.name), masker.phone(str(customer.phone or ""))
        )

    @admin.display(description=_("loan"))
    def loan(self, obj):
        case = obj.case
        dpd = case.days_past_due(obj.queue_now) if getattr(obj, "queue_now", None) else None
        details = [
            case.stage,
            *([gettext("DPD %(n)s") % {"n": dpd}, dpd_bucket(dpd)] if dpd is not None else []),
        ]
        broken = ""
        if case.broken_promises:
            broken = ngettext("%(n)d broken promise", "%(n)d broken promises", case.broken_promises) % {
                "n": case.broken_promises
            }
        return format_html(
            "{}<br><small>{}</small>{}",
            case.loan.ref,
            " · ".join(d for d in details if d),
            format_html('<br><small class="bo-broken">{}</small>', broken) if broken else "",
        )

    @admin.display(description=_("amount overdue"), ordering="case__amount_overdue")
    def amount_overdue(self, obj):
        return format_money(obj.case.amount_overdue, obj.case.loan.currency)

    @admin.display(description=_("call from"), ordering="scheduled_for")
    def call_from(self, obj):
        zone = timezone.get_current_timezone()
        when = timezone.localtime(obj.scheduled_for, zone).strftime("%d %b %H:%M")
        overdue = getattr(obj, "overdue", None)
        if overdue:
            return format_html(
                '{}<br><strong class="bo-sla-late">{}</strong>',
                when,
                gettext("overdue by %(time)s") % {"time": short_duration(overdue)},
            )
        return when

    @admin.display(description=_("customer's local time"))
    def local_time(self, obj):
        now = getattr(obj, "queue_now", None)
        if now is None:
            return "—"
        customer = obj.case.loan.customer
        own = now.astimezone(customer.zone).strftime("%a %H:%M")
        # The other zones the customer may be in, where their clock reads differently.
        others: dict[str, list[str]] = {}
        for z in customer.location.zones:
            there = now.astimezone(zoneinfo.ZoneInfo(z)).strftime("%a %H:%M")
            if z != customer.timezone and there != own:
                others.setdefault(
                    there[4:] if there[:3] == own[:3] else f"{there[4:]} ({there[:3]})", []
                ).append(z)
        if not others:
            return own
        return format_html(
            "{}<br><small>{}</small>",
            own,
            format_html_join("; ", "{}: {}", ((", ".join(zones), t) for t, zones in others.items())),
        )

    @admin.display(description=_("may call now"))
    def callable_now(self, obj):
        gate = getattr(obj, "queue_gate", None)
        if gate is None:
            return "—"
        if gate.decision.allowed:
            return format_html('<span class="bo-call-ok">{}</span>', gettext("yes"))
        return format_html(
            '<span class="bo-call-blocked" data-reason="{}">{}</span>',
            gate.decision.reason,
            gate_refusal(gate, obj.case.loan.customer.zone),
        )

    @admin.display(description="")
    def record(self, obj):
        if not obj.is_open:
            return obj.get_outcome_display()
        return format_html(
            '<a class="button" href="{}">{}</a>',
            reverse("admin:collections_calltask_record", args=[obj.pk]),
            gettext("Record outcome"),
        )

    # --- a team lead's reassignment ------------------------------------------------------------------------
    @admin.action(description=_("Reassign to another collector"), permissions=["reassign"])
    def reassign_action(self, request, queryset):
        form = ReassignForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                moved = reassign_call_tasks(
                    list(queryset), form.cleaned_data["collector"], actor=request.user, at=timezone.now()
                )
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
                return None
            self.message_user(
                request,
                ngettext(
                    "%(n)d call task reassigned to %(who)s.", "%(n)d call tasks reassigned to %(who)s.", moved
                )
                % {"n": moved, "who": form.cleaned_data["collector"].get_username()},
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reassign call tasks"),
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/collections/calltask/reassign.html", context)

    def has_reassign_permission(self, request):
        return self.is_team_lead(request) and request.user.has_perm("collections.change_calltask")

    # --- the outcome form ----------------------------------------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<int:task_id>/record/",
                self.admin_site.admin_view(self.record_view),
                name="collections_calltask_record",
            ),
            *super().get_urls(),
        ]

    def next_task_for(self, request, done: CallTask) -> CallTask | None:
        """The next open task of the user's own queue, in queue order."""
        return (
            CallTask.objects.open()
            .filter(assigned_to=request.user)
            .exclude(pk=done.pk)
            .order_by(*self.ordering)
            .first()
        )

    def record_view(self, request, task_id):
        task = get_object_or_404(
            self.get_queryset(request).select_related("case__loan__customer__tier"), pk=task_id
        )
        if not request.user.has_perm("collections.record_call_outcome"):
            raise PermissionDenied
        case = task.case
        customer = case.loan.customer
        other_loans = list(Loan.objects.filter(customer=customer).exclude(pk=case.loan_id).order_by("ref"))
        form = CallOutcomeForm(
            request.POST or None, other_loans=other_loans, initial={"promise_amount": case.amount_overdue}
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            # The amount is prefilled on every call: it is a promise's only when the outcome is one.
            promised = data["outcome"] == CallTask.Outcome.PROMISE_TO_PAY
            try:
                call_outcomes.record_call_outcome(
                    task,
                    outcome=data["outcome"],
                    note=data["note"],
                    promise_amount=data["promise_amount"] if promised else None,
                    promise_date=data["promise_date"] if promised else None,
                    covers=data.get("covers") or [],
                    actor=request.user,
                    at=timezone.now(),
                )
            except call_outcomes.CallRefused as exc:
                form.add_error(
                    None,
                    gettext("This call may not be made now: %(reason)s.")
                    % {"reason": refusal_text(exc.reason, exc.inputs, customer.zone)},
                )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for name, errs in exc.message_dict.items():
                        form.add_error(name if name in form.fields else None, errs)
                else:
                    form.add_error(None, exc.messages)
            else:
                following = self.next_task_for(request, task)
                if following is None:
                    self.message_user(request, gettext("Outcome recorded. Your queue is empty."))
                    return HttpResponseRedirect(reverse("admin:collections_calltask_changelist"))
                self.message_user(request, gettext("Outcome recorded. Next call:"))
                return HttpResponseRedirect(reverse("admin:collections_calltask_record", args=[following.pk]))
        return TemplateResponse(
            request,
            "admin/collections/calltask/record_outcome.html",
            self.record_context(request, task, form, other_loans),
        )

    def record_context(self, request, task: CallTask, form: CallOutcomeForm, other_loans: list[Loan]) -> dict:
        case = task.case
        customer = case.loan.customer
        masker = masker_for(request)
        now = timezone.now()
        gate = calls.queue_gates([task], now).get(task.pk) if task.is_open else None
        overdue = task.overdue_by(now, service_level())
        open_cases = {
            c.loan_id: c for c in CollectionCase.objects.open().filter(loan__customer=customer).order_by()
        }
        loans = [
            {
                "ref": loan.ref,
                "is_this": loan.pk == case.loan_id,
                "status": loan.get_status_display(),
                "case": open_cases.get(loan.pk),
                "currency": loan.currency,
            }
            for loan in [case.loan, *other_loans]
        ]
        today = local_date(now, customer.timezone)
        for row in loans:
            if row["case"] is not None:
                row["amount_overdue"] = format_money(row["case"].amount_overdue, row["currency"])
                row["dpd"] = row["case"].days_past_due(today)
        history = list(
            CallAttempt.objects.filter(customer=customer)
            .select_related("task")
            .prefetch_related("covered__loan")
            .order_by("-made_at", "-id")[:HISTORY_LENGTH]
        )
        promises = list(
            PromiseToPay.objects.filter(case__loan__customer=customer)
            .select_related("case__loan")
            .order_by("-created_at")[:HISTORY_LENGTH]
        )
        return {
            **self.admin_site.each_context(request),
            "title": _("Record the outcome of a call"),
            "opts": self.model._meta,
            "task": task,
            "case": case,
            "dpd": case.days_past_due(today),
            "amount_overdue": format_money(case.amount_overdue, case.loan.currency),
            "customer_name": masker.name(customer.name),
            "customer_phone": masker.phone(str(customer.phone or "")),
            # Formatted here: the template's date filter would show it in the operator's zone.
            "local_time": now.astimezone(customer.zone).strftime("%a %H:%M"),
            "zones": ", ".join(customer.location.zones),
            "may_call": gate.decision.allowed if gate else None,
            "refusal": gate_refusal(gate, customer.zone) if gate and not gate.decision.allowed else "",
            "overdue": short_duration(overdue) if overdue else "",
            "voicemail_text": calls.voicemail_for(customer, request.user),
            "loans": loans,
            "history": [
                {
                    "attempt": a,
                    "loans": ", ".join(sorted(c.loan.ref for c in a.covered.all())),
                    "note": masker.text(a.task.note) if a.task else "",
                }
                for a in history
            ],
            "promises": promises,
            "form": form,
        }
