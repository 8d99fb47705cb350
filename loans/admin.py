"""Admin of the loan book's configuration and people: credit tiers, customers (found by reference, or with the
personal-data permission by any part of a phone number, a name or an email) and credit scores. Loans,
instalments, payments and auto-debit attempts are in ``loans.book_admin``.

Lists never count a big table (``LargeTablePaginator``, ``show_full_result_count = False``) and foreign keys
into big tables are raw-id widgets. Importing needs ``loans.import_<model>``, exporting ``loans.export_<model>``.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin

from core.admin import (
    AuditedAdminMixin,
    AuditedExportMixin,
    AuditedModelAdmin,
    PersonalDataAdminMixin,
)
from core.imports.admin import BookImportAdminMixin
from core.masking import mask_destination, mask_email, mask_name, mask_phone, masker_for

from . import scores
from .book_admin import BookImportExportAdmin, ReadOnlyInline, instalment_standing
from .customer_search import customer_search_q
from .models import CreditScore, CreditTier, Customer, Installment, Loan
from .policy_changes import PolicyChangeAdminMixin
from .resources import CreditScoreResource, CreditTierResource, CustomerResource

INSTALMENTS_SHOWN = 60


# --- configuration --------------------------------------------------------------------------------------
@admin.register(CreditTier)
class CreditTierAdmin(
    PolicyChangeAdminMixin, AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, AuditedModelAdmin
):
    change_form_template = "admin/loans/credittier/change_form.html"
    resource_classes = [CreditTierResource]
    skip_admin_log = True
    list_display = (
        "code",
        "name",
        "min_score",
        "max_score",
        "risk_level",
        "grace_period_days",
        "max_contacts_per_week",
        "channel_order",
    )
    list_filter = ("risk_level",)
    search_fields = ("code", "name")
    ordering = ("min_score",)
    # A plain list on purpose: notifications and collections append their inlines (rules, escalation steps)
    # from their own admin modules: ``CreditTierAdmin.inlines = [*CreditTierAdmin.inlines, RuleInline]``.
    inlines = []

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if {"min_score", "max_score"} & set(form.changed_data):
                # Customers follow the new ranges at once (pinned ones excepted).
                scores.rederive_customer_tiers(
                    at=timezone.now(), actor=request.user, reason="tier_ranges_changed"
                )


# --- customers ------------------------------------------------------------------------------------------
class LoanInline(ReadOnlyInline):
    model = Loan
    fields = ("ref", "principal", "currency", "disbursed_on", "status", "autopay")
    readonly_fields = fields
    verbose_name_plural = _("loans")


@admin.display(description=_("name"))
def masked_name(obj):
    return mask_name(obj.name)


@admin.display(description=_("phone"))
def masked_phone(obj):
    return mask_phone(obj.phone)


@admin.display(description=_("email"))
def masked_email(obj):
    return mask_email(obj.email)


@admin.display(description=_("push token"))
def masked_push_token(obj):
    return mask_destination(obj.push_token)


PERSONAL = {
    "name": masked_name,
    "phone": masked_phone,
    "email": masked_email,
    "push_token": masked_push_token,
}


class MaskedCustomerResource(CustomerResource):
    """The customer export of a user without ``loans.view_personal_data``: the columns of the import file, with
    names, phones, emails and push tokens masked (and formula-like cells escaped, as in every export)."""

    def dehydrate_name(self, customer):
        return mask_name(customer.name)

    def dehydrate_phone(self, customer):
        return mask_phone(customer.phone)

    def dehydrate_email(self, customer):
        return mask_email(customer.email)

    def dehydrate_push_token(self, customer):
        return mask_destination(customer.push_token)


@admin.register(Customer)
class CustomerAdmin(PersonalDataAdminMixin, AuditedAdminMixin, BookImportExportAdmin):
    """Names, phones and emails are masked for users without ``loans.view_personal_data`` (read-only to them),
    who search and filter by reference only."""

    change_form_template = "admin/loans/customer/change_form.html"

    resource_classes = [CustomerResource]
    list_display = (
        "ref",
        "name",
        "phone",
        "tier",
        "credit_score",
        "is_tier_pinned",
        "language",
        "do_not_contact",
    )
    list_filter = (
        "tier",
        "is_tier_pinned",
        "language",
        "do_not_contact",
        "do_not_contact_reason",
        "opt_out_sms",
    )
    list_select_related = ("tier",)
    # What the search box looks in (see get_search_results): the reference, and with the personal-data
    # permission any part of the phone number, the name or the email.
    search_fields = ("=ref", "phone", "name", "email")
    search_help_text = _(
        "A reference, or (when you may see personal data) part of a phone number, a name or an email."
    )
    personal_fields = ("name", "phone", "email", "push_token")
    readonly_fields = ("credit_score", "timezone_source", "instalments", "created_at", "updated_at")
    inlines = [LoanInline]
    fieldsets = (
        (None, {"fields": ("ref", "name", "language", "timezone", "timezone_source")}),
        (_("Contact"), {"fields": ("phone", "email", "push_token")}),
        (
            _("Credit tier"),
            {
                "fields": ("credit_score", "tier", "is_tier_pinned", "tier_pin_reason"),
                "description": _(
                    "The tier follows the latest credit score. To keep a customer in a tier whatever the score, "
                    "choose it, tick “pinned” and say why; untick to let the score decide again."
                ),
            },
        ),
        (
            _("Consent"),
            {
                "fields": (
                    "opt_out_sms",
                    "opt_out_email",
                    "opt_out_push",
                    "opt_out_call",
                    "do_not_contact",
                    "do_not_contact_reason",
                )
            },
        ),
        (_("Loan book"), {"fields": ("instalments",)}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def _masks(self, request) -> bool:
        return not masker_for(request).unmasked

    def is_export_masked(self, request) -> bool:
        return self._masks(request)

    def get_export_resource_classes(self, request):
        return (
            [MaskedCustomerResource] if self._masks(request) else super().get_export_resource_classes(request)
        )

    def get_list_display(self, request):
        fields = super().get_list_display(request)
        return [PERSONAL.get(f, f) for f in fields] if self._masks(request) else fields

    def get_search_results(self, request, queryset, search_term):
        # Also what the admin's autocomplete widgets of other models search with.
        if not search_term.strip():
            return queryset, False
        return queryset.filter(customer_search_q(search_term, personal=not self._masks(request))), False

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self._masks(request):
            return fieldsets
        return [
            (title, {**opts, "fields": tuple(PERSONAL.get(f, f) for f in opts["fields"])})
            for title, opts in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, *PERSONAL.values()) if self._masks(request) else fields

    def has_change_permission(self, request, obj=None):
        # Changing a customer means seeing who they are.
        return super().has_change_permission(request, obj) and not self._masks(request)

    @admin.display(description=_("instalments (latest first)"))
    def instalments(self, obj):
        if not obj.pk:
            return "—"
        rows = (
            Installment.objects.filter(loan__customer=obj)
            .select_related("loan")
            .order_by("-due_date", "loan__ref", "seq")[:INSTALMENTS_SHOWN]
        )
        at = timezone.now()

        def cells(i):
            state, bucket = instalment_standing(i, customer=obj, at=at)
            paid = i.paid_at.date() if i.paid_at else _("unpaid")
            return (
                i.loan.ref,
                i.seq,
                i.due_date,
                i.amount_due,
                i.amount_paid,
                paid,
                state.label,
                bucket.label,
            )

        body = format_html_join("", "<tr>" + "<td>{}</td>" * 8 + "</tr>", (cells(i) for i in rows))
        head = format_html(
            "<thead><tr>" + "<th>{}</th>" * 8 + "</tr></thead>",
            _("loan"),
            _("no."),
            _("due date"),
            _("amount due"),
            _("paid"),
            _("paid in full"),
            _("state"),
            _("DPD bucket"),
        )
        return format_html('<table class="customer-instalments">{}<tbody>{}</tbody></table>', head, body)

    def save_model(self, request, obj, form, change):
        if "timezone" in form.changed_data or not change:
            # A zone the operator types is the customer's own; an emptied one is unknown again (derived on save).
            obj.timezone_source = (
                Customer.TimezoneSource.GIVEN if obj.timezone else Customer.TimezoneSource.UNKNOWN
            )
        pin_fields = {"tier", "is_tier_pinned", "tier_pin_reason"}
        before = (
            Customer.objects.filter(pk=obj.pk).values("tier_id", "is_tier_pinned", "tier_pin_reason").first()
            if change
            else None
        )
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if before and pin_fields & set(form.changed_data):
                scores.note_tier_pin_change(obj, before=before, at=timezone.now(), actor=request.user)


@admin.register(CreditScore)
class CreditScoreAdmin(AuditedAdminMixin, BookImportExportAdmin):
    resource_classes = [CreditScoreResource]
    list_display = ("customer__ref", "score", "scored_at", "applied_at")
    list_filter = (("applied_at", admin.EmptyFieldListFilter),)
    list_select_related = ("customer",)
    search_fields = ("=customer__ref",)
    raw_id_fields = ("customer",)
    readonly_fields = ("applied_at",)
