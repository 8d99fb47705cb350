"""The policy versions in the admin: read only (a version is never edited; saving a tier makes the next one)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from loans.models import PolicyAssignment, PolicyVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["tier", "number", "is_proposal", "created_at", "created_by", "reason"]
    list_filter = ["tier", "is_proposal"]
    list_select_related = ["tier"]
    search_fields = ["reason", "created_by"]
    fields = [
        "tier",
        "number",
        "is_proposal",
        "created_at",
        "created_by",
        "reason",
        "grace_period_days",
        "max_contacts_per_week",
        "channel_order",
        "rules",
        "ladder",
    ]
    readonly_fields = fields


@admin.register(PolicyAssignment)
class PolicyAssignmentAdmin(ReadOnlyAdmin):
    list_display = ["customer_ref", "tier", "arm", "policy_version", "assigned_at"]
    list_filter = ["tier", "arm"]
    list_select_related = ["customer", "tier", "policy_version__tier"]
    search_fields = ["customer__ref"]
    raw_id_fields = ["customer"]
    show_full_result_count = False

    @admin.display(description=_("customer"))
    def customer_ref(self, obj):
        return obj.customer.ref
