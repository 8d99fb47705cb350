"""Admin of the reminder engine's configuration: templates (with a preview), rules, the contact policy, the outbox.

The notification log's admin, one of the compliance screens, is in ``log_admin``.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin

from core.admin import (
    AuditedExportMixin,
    AuditedModelAdmin,
    LargeTablePaginator,
    PersonalDataAdminMixin,
)
from core.imports.admin import BookImportAdminMixin
from core.masking import known_of, masker_for
from core.moments import parse_moment
from loans.admin import CreditTierAdmin
from loans.models import Customer
from loans.policy_changes import PolicyChangeAdminMixin

from . import log_admin  # noqa: F401  (registers the notification log's admin)
from .choices import Channel
from .models import (
    ContactPolicy,
    JurisdictionPolicy,
    NotificationLog,
    OutboxMessage,
    ReminderRule,
    ReminderTemplate,
)
from .rendering import preview_template
from .resources import ReminderRuleResource, ReminderTemplateResource
from .templating import sms_segments


@admin.register(ReminderTemplate)
class ReminderTemplateAdmin(AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, AuditedModelAdmin):
    resource_classes = [ReminderTemplateResource]
    list_display = ("kind", "channel", "language", "subject", "sms_length", "updated_at")
    list_filter = ("kind", "channel", "language")
    search_fields = ("subject", "body")
    readonly_fields = ("sms_length", "preview_link")
    fields = ("kind", "channel", "language", "subject", "body", "sms_length", "preview_link")

    @admin.display(description=_("SMS length"))
    def sms_length(self, obj):
        if obj is None or obj.channel != Channel.SMS or not obj.body:
            return "—"
        chars, segments, encoding = sms_segments(obj.body)
        return _(
            "%(chars)s characters, %(segments)s segment(s), %(encoding)s (placeholders not filled in)"
        ) % {
            "chars": chars,
            "segments": segments,
            "encoding": encoding,
        }

    @admin.display(description=_("preview"))
    def preview_link(self, obj):
        if obj is None or not obj.pk:
            return _("Save the template first.")
        url = reverse("admin:notifications_remindertemplate_preview", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Preview for a customer"))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="notifications_remindertemplate_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id):
        """The template rendered for the customer whose reference is given (``?customer=C000001``), as the
        dispatcher renders it now or at the moment given (``&at=2026-12-07T10:00+08:00``)."""
        template = get_object_or_404(ReminderTemplate, pk=object_id)
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        ref = (request.GET.get("customer") or "").strip()
        customer = Customer.objects.select_related("tier").filter(ref=ref).first() if ref else None
        at_text = (request.GET.get("at") or "").strip()
        try:
            at = parse_moment(at_text) if at_text else timezone.now()
        except ValueError:
            at = None
        preview = preview_template(template, customer, at) if customer and at else None
        if preview:
            masker = masker_for(request)
            for key in ("subject", "body"):
                preview[key] = masker.text(preview[key], **known_of(customer))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview of %(template)s") % {"template": template},
            "opts": self.model._meta,
            "original": template,
            "template_obj": template,
            "customer_ref": ref,
            "customer": customer,
            "not_found": bool(ref) and customer is None,
            "at_text": at_text,
            "bad_moment": at is None,
            "preview": preview,
            "is_sms": template.channel == Channel.SMS,
        }
        return TemplateResponse(request, "admin/notifications/remindertemplate/preview.html", context)


class ReminderRuleInline(admin.TabularInline):
    model = ReminderRule
    extra = 0
    fields = ("offset_days", "channel", "kind", "send_time", "is_active")
    ordering = ("offset_days", "channel")


@admin.register(ReminderRule)
class ReminderRuleAdmin(
    PolicyChangeAdminMixin, AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, AuditedModelAdmin
):
    resource_classes = [ReminderRuleResource]
    list_display = ("tier", "offset_days", "channel", "kind", "send_time", "is_active")
    list_filter = ("tier", "channel", "kind", "is_active")
    list_select_related = ("tier",)
    ordering = ("tier__min_score", "offset_days", "channel")


@admin.register(ContactPolicy)
class ContactPolicyAdmin(AuditedModelAdmin):
    """One row: the list opens it directly; it can be neither added twice nor deleted."""

    fieldsets = (
        (
            _("Contact window"),
            {"fields": ("window_start", "window_end", "holiday_country", "no_contact_on_holidays")},
        ),
        (_("Templates"), {"fields": ("default_language",)}),
        (_("Sending"), {"fields": ("max_send_attempts", "retry_backoff_seconds", "expire_after_hours")}),
        (
            _("Calls"),
            {
                "fields": (
                    "max_calls_per_debt_in_7_days",
                    "call_pause_days_after_conversation",
                    "max_call_attempts_per_day",
                    "voicemail_text",
                    "business_name",
                    "callback_number",
                ),
                "description": _(
                    "They apply to every customer, together with the rules of the jurisdictions the customer's "
                    "phone and time zone point at: the strictest wins."
                ),
            },
        ),
        (
            _("Opt-out lines"),
            {
                "fields": (
                    "sms_opt_out_line_zh_hans",
                    "sms_opt_out_line_en",
                    "email_opt_out_line_zh_hans",
                    "email_opt_out_line_en",
                ),
                "description": _(
                    "Every SMS and email ends with the line of its language unless its template carries it already."
                ),
            },
        ),
    )

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not ContactPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        policy = ContactPolicy.get()
        return redirect(reverse("admin:notifications_contactpolicy_change", args=[policy.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        ContactPolicy.get()  # the row exists from the first visit on, with its defaults
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(JurisdictionPolicy)
class JurisdictionPolicyAdmin(AuditedModelAdmin):
    """The contact rules of a country (the legal floor where a customer may be), chosen by phone and zone."""

    list_display = (
        "country",
        "name",
        "window_start",
        "window_end",
        "max_calls_per_debt_in_7_days",
        "call_pause_days_after_conversation",
        "max_call_attempts_per_day",
    )
    fields = (
        "country",
        "name",
        "source",
        "window_start",
        "window_end",
        "max_calls_per_debt_in_7_days",
        "call_pause_days_after_conversation",
        "max_call_attempts_per_day",
        "voicemail_text",
        "business_name",
        "callback_number",
    )


@admin.register(OutboxMessage)
class OutboxMessageAdmin(PersonalDataAdminMixin, admin.ModelAdmin):
    """What the outbox backend "sent" (read-only). Masked for viewers without ``loans.view_personal_data``: the
    destination as what it is, subject and body with the customer's name, phone and email (found through the
    notification that sent the message, or else a customer with that destination); the text of a message
    whose customer is unknown is withheld."""

    list_display = (
        "created_at",
        "channel",
        "shown_destination",
        "shown_subject",
        "short_body",
        "provider_message_id",
    )
    list_filter = ("channel",)
    search_fields = ("provider_message_id", "=idempotency_key")
    personal_fields = ("destination", "subject", "body")
    date_hierarchy = "created_at"
    # The outbox grows with every message sent: page it without counting the whole table.
    show_full_result_count = False
    paginator = LargeTablePaginator
    fields = (
        "created_at",
        "channel",
        "shown_destination",
        "shown_subject",
        "shown_body",
        "idempotency_key",
        "provider_message_id",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if masker_for(request).unmasked:
            return qs
        # Whose message it is, for masking their name in the text: one indexed look-up per row, in the query.
        by_key = NotificationLog.objects.filter(idempotency_key=OuterRef("idempotency_key"))
        by_destination = Customer.objects.filter(
            Q(phone=OuterRef("destination")) | Q(email=OuterRef("destination"))
        ).order_by("pk")
        annotations = {}
        for field in ("name", "phone", "email"):
            annotations[f"known_{field}"] = Coalesce(
                Subquery(by_key.values(f"customer__{field}")[:1]),
                Subquery(by_destination.values(field)[:1]),
            )
        return qs.annotate(**annotations)

    @staticmethod
    def _known(obj) -> dict[str, list[str]]:
        return {
            "names": [getattr(obj, "known_name", None) or ""],
            "phones": [getattr(obj, "known_phone", None) or ""],
            "emails": [getattr(obj, "known_email", None) or ""],
        }

    def _text(self, obj, text: str) -> str:
        return self.masker(obj).message(text, **self._known(obj))

    @admin.display(description=_("destination"), ordering="destination")
    def shown_destination(self, obj):
        return self.masker(obj).destination(obj.destination)

    @admin.display(description=_("subject"))
    def shown_subject(self, obj):
        return self._text(obj, obj.subject)

    @admin.display(description=_("body"))
    def short_body(self, obj):
        body = self._text(obj, obj.body)
        return body if len(body) <= 80 else body[:79] + "…"

    @admin.display(description=_("body"))
    def shown_body(self, obj):
        return self._text(obj, obj.body)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Rules are edited on their tier's page too.
if ReminderRuleInline not in CreditTierAdmin.inlines:
    CreditTierAdmin.inlines = [*CreditTierAdmin.inlines, ReminderRuleInline]
