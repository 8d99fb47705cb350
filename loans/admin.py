"""Admin of the loan book: search by reference, import (upload, dry-run preview, confirm) and export.

Lists never count a big table (``LargeTablePaginator``, ``show_full_result_count = False``) and foreign keys
into big tables are raw-id widgets. Importing needs ``loans.import_<model>``, exporting ``loans.export_<model>``.
"""

from __future__ import annotations

from decimal import Decimal

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
    LargeTablePaginator,
    PersonalDataAdminMixin,
)
from core.compliance_admin import InputFilter
from core.imports.admin import BookImportAdminMixin
from core.masking import mask_destination, mask_email, mask_name, mask_phone, masker_for
from core.money import money_display

from . import scores, services
from .customer_search import customer_search_q
from .forms import PaymentForm
from .models import AutoDebitAttempt, CreditScore, CreditTier, Customer, Installment, Loan, Payment
from .resources import (
    CreditScoreResource,
    CreditTierResource,
    CustomerResource,
    InstallmentResource,
    LoanResource,
    PaymentResource,
)
from .schedule import DpdBucket, InstallmentState

INSTALMENTS_SHOWN = 60


def instalment_standing(installment, customer=None, at=None) -> tuple[InstallmentState, DpdBucket]:
    """An instalment's derived state (upcoming, due, grace, overdue, paid) and DPD bucket now, in its customer's
    calendar and with its tier's grace period. Reads ``installment.loan.customer.tier`` unless ``customer`` is
    given: select them with the instalments, or this costs queries per row."""
    if customer is not None:
        installment.loan.customer = customer
    at = at or timezone.now()
    return installment.state(at), installment.dpd_bucket(at)


class InstalmentStandingMixin:
    """``state`` and ``dpd_bucket`` columns for admins and inlines of instalments."""

    @admin.display(description=_("state"))
    def state(self, obj):
        return instalment_standing(obj)[0].label if obj.pk else "—"

    @admin.display(description=_("DPD bucket"))
    def dpd_bucket(self, obj):
        return instalment_standing(obj)[1].label if obj.pk else "—"


class BigTableAdmin(admin.ModelAdmin):
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 50


class BookImportExportAdmin(AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, BigTableAdmin):
    # The import is recorded once in the audit trail (backoffice.import.completed), not as one admin log
    # entry per row. Edits by hand (a do-not-contact flag, an amount due) are audited with before and after
    # by ``AuditedAdminMixin`` on each admin below; payments write their own events.
    skip_admin_log = True


# --- configuration --------------------------------------------------------------------------------------
@admin.register(CreditTier)
class CreditTierAdmin(AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, AuditedModelAdmin):
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
class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


class CurrencyFilter(InputFilter):
    """Typed, not listed: listing the currencies would scan the whole loan table."""

    title = _("currency")
    parameter_name = "currency"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip().upper()
        return queryset.filter(currency=value) if value else queryset


class FailureReasonFilter(InputFilter):
    """Typed, not listed: the gateways' reasons are free text, listing them would scan every attempt."""

    title = _("failure reason")
    parameter_name = "failure_reason"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(failure_reason=value) if value else queryset


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


# --- loans ----------------------------------------------------------------------------------------------
class InstallmentInline(InstalmentStandingMixin, ReadOnlyInline):
    model = Installment
    fields = ("seq", "due_date", "amount_due", "amount_paid", "paid_by", "paid_at", "state", "dpd_bucket")
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("loan__customer__tier")
            .prefetch_related("allocations__payment")
        )

    @admin.display(description=_("paid by"))
    def paid_by(self, obj):
        if not obj.pk:
            return "—"
        return ", ".join(f"{a.payment.ref}: {a.amount}" for a in obj.allocations.all()) or "—"


class PaidFilter(admin.SimpleListFilter):
    title = _("paid")
    parameter_name = "paid"

    def lookups(self, request, model_admin):
        return (("yes", _("Paid in full")), ("no", _("Unpaid")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(paid_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(paid_at__isnull=True)
        return queryset


@admin.register(Loan)
class LoanAdmin(AuditedAdminMixin, BookImportExportAdmin):
    change_form_template = "admin/loans/loan/change_form.html"
    resource_classes = [LoanResource]
    list_display = ("ref", "customer__ref", "principal_display", "disbursed_on", "status", "autopay")
    list_filter = ("status", "autopay", CurrencyFilter)
    list_select_related = ("customer",)
    search_fields = ("=ref", "=customer__ref")
    raw_id_fields = ("customer",)
    readonly_fields = ("credit", "payments")
    inlines = [InstallmentInline]

    principal_display = money_display("principal", lambda loan: loan.currency, description=_("principal"))

    @admin.display(description=_("payments and what they paid"))
    def payments(self, obj):
        if not obj.pk:
            return "—"
        payments = list(
            obj.payments.order_by("received_at", "pk").prefetch_related("allocations__installment")
        )
        if not payments:
            return "—"

        def cells(p):
            parts = [f"#{a.installment.seq}: {a.amount}" for a in p.allocations.all()]
            credit = p.amount - sum((a.amount for a in p.allocations.all()), Decimal("0"))
            return (p.ref, p.received_at, p.amount, p.get_source_display(), ", ".join(parts) or "—", credit)

        head = format_html(
            "<thead><tr>" + "<th>{}</th>" * 6 + "</tr></thead>",
            _("payment"),
            _("received at"),
            _("amount"),
            _("source"),
            _("paid instalments"),
            _("kept as credit"),
        )
        body = format_html_join("", "<tr>" + "<td>{}</td>" * 6 + "</tr>", (cells(p) for p in payments))
        return format_html('<table class="loan-payments">{}<tbody>{}</tbody></table>', head, body)


@admin.register(Installment)
class InstallmentAdmin(InstalmentStandingMixin, AuditedAdminMixin, BookImportExportAdmin):
    resource_classes = [InstallmentResource]
    list_display = (
        "loan",
        "seq",
        "due_date",
        "amount_due_display",
        "amount_paid_display",
        "paid_at",
        "state",
        "dpd_bucket",
    )
    list_filter = (PaidFilter, "loan__status")
    # The state and DPD bucket need the customer's time zone and tier: read with the rows, not per row.
    list_select_related = ("loan__customer__tier",)
    search_fields = ("=loan__ref", "=loan__customer__ref")
    raw_id_fields = ("loan",)
    readonly_fields = ("amount_paid", "paid_at")

    amount_due_display = money_display("amount_due", lambda i: i.loan.currency, description=_("amount due"))
    amount_paid_display = money_display(
        "amount_paid", lambda i: i.loan.currency, description=_("amount paid")
    )

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            services.refresh_installments(
                [obj.pk], timezone.now(), payments_recorded=False, actor=request.user
            )


@admin.register(Payment)
class PaymentAdmin(BookImportExportAdmin):
    """A payment is entered by loan reference (``loans.forms.PaymentForm``) and recorded, corrected or reversed
    through ``loans.services`` (allocated by the waterfall, audited, the loan cured at once)."""

    form = PaymentForm
    resource_classes = [PaymentResource]
    list_display = ("ref", "loan", "start_seq", "amount", "received_at", "source", "allocated")
    list_filter = ("source",)
    list_select_related = ("loan", "installment")
    search_fields = ("=ref", "=loan__ref")
    readonly_fields = ("allocated",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("allocations__installment")

    @admin.display(description=_("start at instalment"), ordering="installment__seq")
    def start_seq(self, obj):
        return f"#{obj.installment.seq}" if obj.installment_id else "—"

    @admin.display(description=_("paid instalments"))
    def allocated(self, obj):
        if not obj.pk:
            return "—"
        parts = [f"#{a.installment.seq}: {a.amount}" for a in obj.allocations.all()]
        credit = obj.amount - sum((a.amount for a in obj.allocations.all()), Decimal("0"))
        if credit:
            parts.append(_("credit: %(amount)s") % {"amount": credit})
        return ", ".join(parts) or "—"

    def save_model(self, request, obj, form, change):
        now = timezone.now()
        if not change:
            payment = services.record_payment(
                loan=obj.loan,
                amount=obj.amount,
                received_at=obj.received_at,
                ref=obj.ref,
                source=obj.source,
                installment=obj.installment,
                actor=request.user,
                now=now,
            )
            obj.pk = payment.pk
            return
        before = Payment.objects.select_related("loan", "installment").get(pk=obj.pk)
        services.correct_payment(obj, before=before, actor=request.user, now=now)

    def delete_model(self, request, obj):
        services.reverse_payment(obj, actor=request.user, now=timezone.now())

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


@admin.register(AutoDebitAttempt)
class AutoDebitAttemptAdmin(BigTableAdmin):
    list_display = (
        "installment",
        "attempted_on",
        "amount_display",
        "status",
        "failure_reason",
        "gateway_reference",
    )
    list_filter = ("status", FailureReasonFilter, "attempted_on")
    amount_display = money_display("amount", lambda a: a.installment.loan.currency, description=_("amount"))
    list_select_related = ("installment__loan",)
    search_fields = ("=installment__loan__ref", "=gateway_reference")
    raw_id_fields = ("installment", "payment")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
