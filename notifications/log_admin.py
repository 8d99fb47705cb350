"""The notification log in the admin: read-only for everyone, personal data masked unless the user holds
``loans.view_personal_data``, with the compliance "Export" button (``notifications.export_notificationlog``)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.admin import LargeTablePaginator, PersonalDataAdminMixin
from core.compliance_admin import ComplianceExportMixin, ReadOnlyAdminMixin
from core.list_filters import DateRangeFilter
from core.masking import known_of

from .log_search import log_search_q
from .models import NotificationLog


@admin.register(NotificationLog)
class NotificationLogAdmin(
    PersonalDataAdminMixin, ComplianceExportMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    export_kind = "notifications"
    export_params = {
        "status__exact": "status",
        "reason__exact": "reason",
        "channel__exact": "channel",
        "kind__exact": "kind",
        "scheduled_for__gte": "since",
        "scheduled_for__lt": "until",
        "scheduled_for__from": "since",
        "scheduled_for__to": "until",
        "q": "q",
    }
    list_display = (
        "id",
        "scheduled_for",
        "customer_ref",
        "customer_name",
        "channel",
        "kind",
        "status",
        "reason",
        "destination_display",
        "loan_refs",
    )
    list_filter = ("status", "reason", "channel", "kind", ("scheduled_for", DateRangeFilter))
    search_fields = ("=customer__ref",)
    search_help_text = _("A customer or loan reference (exact).")
    search_q = staticmethod(log_search_q)
    personal_fields = (
        "destination",
        "subject",
        "body",
        "last_error",
        "customer__name",
        "customer__phone",
        "customer__email",
        "customer__push_token",
    )
    list_select_related = ("customer",)
    raw_id_fields = ("customer", "tier")
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 100
    fields = (
        "customer_link",
        "customer_name",
        "tier",
        "channel",
        "kind",
        "status",
        "reason",
        "due_date",
        "offset_days",
        "scheduled_for",
        "sent_at",
        "delivered_at",
        "destination_display",
        "language",
        "subject_display",
        "body_display",
        "loan_refs",
        "attempts",
        "error_display",
        "provider_message_id",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer")

    @admin.display(description=_("customer"), ordering="customer__ref")
    def customer_ref(self, obj):
        return obj.customer.ref

    @admin.display(description=_("customer"))
    def customer_link(self, obj):
        # Not the customer's __str__: it carries the name, which may have to stay masked.
        url = reverse("admin:loans_customer_change", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a>', url, obj.customer.ref)

    @admin.display(description=_("name"))
    def customer_name(self, obj):
        return self.masker(obj).name(obj.customer.name)

    @admin.display(description=_("destination"))
    def destination_display(self, obj):
        return self.masker(obj).destination(obj.destination)

    @admin.display(description=_("subject"))
    def subject_display(self, obj):
        return self.masker(obj).text(obj.subject, **known_of(obj.customer))

    @admin.display(description=_("body"))
    def body_display(self, obj):
        body = self.masker(obj).text(obj.body, **known_of(obj.customer))
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", body)

    @admin.display(description=_("last error"))
    def error_display(self, obj):
        return self.masker(obj).text(obj.last_error, **known_of(obj.customer))
