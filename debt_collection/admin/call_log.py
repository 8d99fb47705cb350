"""The call log in the admin: every call made (by a collector or the dialer), read-only, newest first.

Found by customer or loan reference and narrowed to a range of days of the operator's zone; a voicemail's text
is masked for users without ``loans.view_personal_data``. The customer page shows the same calls beside the
customer's messages, promises and payments.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.admin import LargeTablePaginator, PersonalDataAdminMixin
from core.list_filters import DateRangeFilter
from core.masking import known_of

from ..models import CallAttempt, CallAttemptLoan


@admin.register(CallAttempt)
class CallAttemptAdmin(PersonalDataAdminMixin, admin.ModelAdmin):
    list_display = ("made_at", "customer_ref", "outcome", "is_conversation", "made_by", "loan_refs")
    list_filter = (("made_at", DateRangeFilter), "outcome", "is_conversation")
    list_select_related = ("customer",)
    search_fields = ("=customer__ref",)
    search_help_text = _("A customer or loan reference.")
    personal_fields = ("voicemail_message", "customer__name", "customer__phone", "customer__email")
    fields = ("made_at", "customer_ref", "outcome", "is_conversation", "made_by", "loan_refs", "voicemail")
    readonly_fields = fields
    ordering = ("-made_at", "-id")
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 100

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("loans")

    def get_search_results(self, request, queryset, search_term):
        # References are matched as typed and upper-cased: the unique indexes serve both, as they would not
        # serve a case-insensitive comparison.
        term = search_term.strip()
        if not term:
            return queryset, False
        refs = sorted({term, term.upper()})
        about_loans = CallAttemptLoan.objects.filter(loan__ref__in=refs).values("attempt_id")
        return queryset.filter(Q(customer__ref__in=refs) | Q(pk__in=about_loans)), False

    @admin.display(description=_("customer"), ordering="customer__ref")
    def customer_ref(self, obj):
        return obj.customer.ref

    @admin.display(description=_("loans"))
    def loan_refs(self, obj):
        return ", ".join(sorted(loan.ref for loan in obj.loans.all())) or "—"

    @admin.display(description=_("voicemail left"))
    def voicemail(self, obj):
        return self.masker(obj).message(obj.voicemail_message, **known_of(obj.customer)) or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
