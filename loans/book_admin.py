"""Admin of the loan book itself: loans, instalments (with their state and DPD bucket), payments and what they
paid, auto-debit attempts; and the bases every loan-book admin shares.

Lists never count a big table (``LargeTablePaginator``, ``show_full_result_count = False``) and foreign keys
into big tables are raw-id widgets. Importing needs ``loans.import_<model>``, exporting ``loans.export_<model>``.
A payment is found by its reference, its loan's or its customer's.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import transaction
from django.db.models import DateTimeField, Q, Value
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin

from core.admin import AuditedAdminMixin, AuditedExportMixin, LargeTablePaginator
from core.compliance_admin import InputFilter
from core.imports.admin import BookImportAdminMixin
from core.list_filters import DateRangeFilter, day_range, parse_day
from core.money import money_display

from . import services
from .forms import PaymentForm
from .models import AutoDebitAttempt, Installment, Loan, Payment
from .resources import InstallmentResource, LoanResource, PaymentResource
from .schedule import DpdBucket, InstallmentState, unpaid_at_q, went_overdue_q


def instalment_standing(installment, *, at, customer=None) -> tuple[InstallmentState, DpdBucket]:
    """An instalment's derived state (upcoming, due, grace, overdue, paid) and DPD bucket at ``at``, in its
    customer's calendar and with its tier's grace period. Reads ``installment.loan.customer.tier`` unless
    ``customer`` is given: select them with the instalments, or this costs queries per row."""
    if customer is not None:
        installment.loan.customer = customer
    return installment.state(at), installment.dpd_bucket(at)


STANDING_AT = "standing_at"


def request_moment(request):
    """The one moment a request's instalments are judged at: taken at the first ask, kept on the request."""
    if not hasattr(request, "bo_standing_at"):
        request.bo_standing_at = timezone.now()
    return request.bo_standing_at


class InstalmentStandingMixin:
    """``state`` and ``dpd_bucket`` columns for admins and inlines of instalments. Every row of a request is
    judged at the request's one moment, carried on the rows (``standing_at``), never read per row."""

    def get_queryset(self, request):
        moment = Value(request_moment(request), output_field=DateTimeField())
        return super().get_queryset(request).annotate(**{STANDING_AT: moment})

    @admin.display(description=_("state"))
    def state(self, obj):
        return instalment_standing(obj, at=getattr(obj, STANDING_AT))[0].label if obj.pk else "—"

    @admin.display(description=_("DPD bucket"))
    def dpd_bucket(self, obj):
        return instalment_standing(obj, at=getattr(obj, STANDING_AT))[1].label if obj.pk else "—"


class BigTableAdmin(admin.ModelAdmin):
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 50


class BookImportExportAdmin(AuditedExportMixin, BookImportAdminMixin, ImportExportMixin, BigTableAdmin):
    # The import is recorded once in the audit trail (backoffice.import.completed), not as one admin log
    # entry per row. Edits by hand (a do-not-contact flag, an amount due) are audited with before and after
    # by ``AuditedAdminMixin`` on each admin below; payments write their own events.
    skip_admin_log = True


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


class WentOverdueFilter(admin.SimpleListFilter):
    """Instalments not paid by their due date (unpaid, or paid on a later day): the cure rate's base."""

    title = _("went overdue")
    parameter_name = "went_overdue"

    def lookups(self, request, model_admin):
        return (("yes", _("Not paid by the due date")),)

    def queryset(self, request, queryset):
        return queryset.filter(went_overdue_q()) if self.value() == "yes" else queryset


class UnpaidOnFilter(InputFilter):
    """Typed day (YYYY-MM-DD, the operator's zone): the instalments not yet paid in full at that day's end,
    whatever they are now (the roll rate's base, 30 days ago)."""

    title = _("unpaid at the end of (YYYY-MM-DD)")
    parameter_name = "unpaid_on"

    def queryset(self, request, queryset):
        try:
            day = parse_day(self.value())
        except ValueError as exc:
            raise IncorrectLookupParameters(str(exc)) from exc
        return queryset.filter(unpaid_at_q(day_range(None, day)[1])) if day else queryset


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
    list_filter = (PaidFilter, "loan__status", "loan__customer__tier", WentOverdueFilter, UnpaidOnFilter)
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
    list_filter = (("received_at", DateRangeFilter), "source")
    list_select_related = ("loan", "installment")
    search_fields = ("=ref", "=loan__ref", "=loan__customer__ref")
    search_help_text = _("A payment, loan or customer reference.")
    readonly_fields = ("allocated",)

    def get_search_results(self, request, queryset, search_term):
        # References as typed and upper-cased: the unique indexes on the three references serve the search, as
        # they would not serve a case-insensitive comparison over millions of payments.
        term = search_term.strip()
        if not term:
            return queryset, False
        refs = sorted({term, term.upper()})
        return queryset.filter(
            Q(ref__in=refs) | Q(loan__ref__in=refs) | Q(loan__customer__ref__in=refs)
        ), False

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
