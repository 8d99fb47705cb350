"""Import files of the loan book (SPEC.md "Import files"): exactly these columns, keyed by the first column(s).

Every resource is a ``core.imports.resource.BookResource``: a bad row fails the whole file with its line and
column, and re-importing a file updates rows instead of duplicating them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from import_export.fields import Field

from core.audit import Event, about, log_events
from core.imports.columns import object_values
from core.imports.resource import BookResource
from core.imports.widgets import (
    BoolWidget,
    IntWidget,
    ISODateTimeWidget,
    ISODateWidget,
    ListWidget,
    MoneyWidget,
    RefWidget,
    TextWidget,
    _text,
)

from . import signals
from .models import CreditScore, CreditTier, Customer, Installment, Loan, Payment
from .policy_changes import PolicyImportMixin
from .tiers import tier_for


def tier_values(tier: CreditTier) -> dict:
    """A tier's editable values, as the admin's audit records them."""
    return object_values(tier)


def text(column: str, **kwargs) -> Field:
    return Field(attribute=column, column_name=column, widget=TextWidget(), **kwargs)


def boolean(column: str) -> Field:
    return Field(attribute=column, column_name=column, widget=BoolWidget(), default=False)


class CreditTierResource(PolicyImportMixin, BookResource):
    code = text("code")
    name = text("name")
    min_score = Field(attribute="min_score", column_name="min_score", widget=IntWidget())
    max_score = Field(attribute="max_score", column_name="max_score", widget=IntWidget())
    risk_level = text("risk_level", default=CreditTier.RiskLevel.MEDIUM)
    grace_period_days = Field(
        attribute="grace_period_days", column_name="grace_period_days", widget=IntWidget(), default=3
    )
    max_contacts_per_week = Field(
        attribute="max_contacts_per_week", column_name="max_contacts_per_week", widget=IntWidget(), default=3
    )
    channel_order = Field(attribute="channel_order", column_name="channel_order", widget=ListWidget())

    class Meta:
        model = CreditTier
        fields = (
            "code",
            "name",
            "min_score",
            "max_score",
            "risk_level",
            "grace_period_days",
            "max_contacts_per_week",
            "channel_order",
        )
        import_id_fields = ("code",)

    # Tiers are configuration: each one the file created or changed is audited with before and after
    # (``loans.credittier.created|changed``), as an edit in the admin is, beside the import's own event.
    audit_each_object = True

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self.ranges_in_file: list[tuple[str, int, int, int]] = []  # code, min, max, line

    def import_instance(self, instance, row, **kwargs):
        # The model's clean() compares a row with the tiers in the database only: rows are written in batches
        # at the end, so two rows of this file that overlap each other must be caught here.
        errors = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        low, high = instance.min_score, instance.max_score
        if isinstance(low, int) and isinstance(high, int) and low <= high:
            other = next(
                (r for r in self.ranges_in_file if r[1] <= high and low <= r[2] and r[0] != instance.code),
                None,
            )
            if other is not None and "min_score" not in errors:
                errors["min_score"] = [
                    ValidationError(
                        f"Scores {low}-{high} overlap tier {other[0]} ({other[1]}-{other[2]}) of line {other[3]}.",
                        code="overlap",
                    )
                ]
            self.ranges_in_file.append((instance.code, low, high, (kwargs.get("row_number") or 0) + 1))
        if errors:
            raise ValidationError(errors)

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if not self.is_dry_run and not result.has_errors() and not result.has_validation_errors():
            from django.utils import timezone

            from .scores import rederive_customer_tiers

            rederive_customer_tiers(
                at=timezone.now(), actor=kwargs.get("user"), reason="tier_ranges_imported"
            )


class CustomerResource(BookResource):
    ref = text("ref")
    name = text("name")
    phone = text("phone")
    email = text("email")
    push_token = text("push_token")
    language = text("language", default=Customer.Language.ZH_HANS)
    # Empty when the file does not say: recorded as unknown (see Customer.settle_timezone), never guessed.
    timezone = text("timezone", default="")
    credit_score = Field(attribute="credit_score", column_name="credit_score", widget=IntWidget())
    opt_out_sms = boolean("opt_out_sms")
    opt_out_email = boolean("opt_out_email")
    opt_out_push = boolean("opt_out_push")
    opt_out_call = boolean("opt_out_call")
    do_not_contact = boolean("do_not_contact")
    do_not_contact_reason = text("do_not_contact_reason")

    class Meta:
        model = Customer
        fields = (
            "ref",
            "name",
            "phone",
            "email",
            "push_token",
            "language",
            "timezone",
            "credit_score",
            "opt_out_sms",
            "opt_out_email",
            "opt_out_push",
            "opt_out_call",
            "do_not_contact",
            "do_not_contact_reason",
        )
        import_id_fields = ("ref",)

    extra_update_fields = ("tier", "do_not_contact_reason", "timezone_source")

    def dehydrate_timezone(self, customer):
        # A zone the customer never gave is exported empty, so a round trip keeps it unknown.
        return customer.timezone if customer.is_timezone_given else ""

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self.tier_changes: list[tuple[int, int | None, int | None, int | None]] = []
        self.tiers = list(CreditTier.objects.order_by("min_score"))

    def before_save_instance(self, instance, row, **kwargs):
        # Rows are bulk-written, so this does what Customer.save() does: derive the tier from the score
        # (unless pinned) and drop the reason of a lifted do-not-contact.
        super().before_save_instance(instance, row, **kwargs)
        if str(row.get("timezone") or "").strip():
            instance.timezone_source = Customer.TimezoneSource.GIVEN
        else:
            instance.timezone = ""  # the file does not say: derived below and recorded as not given
        instance.settle_timezone()
        before = instance.tier_id
        if not instance.is_tier_pinned:
            score = instance.credit_score
            instance.tier = tier_for(score, self.tiers)
        if not instance.do_not_contact:
            instance.do_not_contact_reason = ""
        if instance.pk and before != instance.tier_id:
            self.tier_changes.append((instance.pk, before, instance.tier_id, instance.credit_score))

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if self.is_dry_run or result.has_errors() or result.has_validation_errors() or not self.tier_changes:
            return
        from django.utils import timezone

        from core.audit import actor_name

        actor = actor_name(kwargs.get("user"))
        log_events(
            Event(
                action="loans.customer.tier_changed",
                actor=actor,
                **about(Customer, cid),
                before={"tier_id": old},
                after={"tier_id": new, "credit_score": score, "reason": "customer_import"},
            )
            for cid, old, new, score in self.tier_changes
        )
        changes = [(cid, old, new) for cid, old, new, _score in self.tier_changes]
        at = timezone.now()
        transaction.on_commit(
            lambda: signals.tier_changed.send(sender=Customer, changes=changes, at=at), robust=True
        )


class LoanResource(BookResource):
    ref = text("ref")
    customer_ref = Field(
        attribute="customer", column_name="customer_ref", widget=RefWidget(Customer, label="customer")
    )
    principal = Field(attribute="principal", column_name="principal", widget=MoneyWidget())
    currency = text("currency", default=settings.DEFAULT_CURRENCY)
    disbursed_on = Field(attribute="disbursed_on", column_name="disbursed_on", widget=ISODateWidget())
    status = text("status", default=Loan.Status.ACTIVE)
    autopay = boolean("autopay")

    class Meta:
        model = Loan
        fields = ("ref", "customer_ref", "principal", "currency", "disbursed_on", "status", "autopay")
        import_id_fields = ("ref",)

    def get_queryset(self):
        return Loan.objects.select_related("customer")


class InstallmentResource(BookResource):
    loan_ref = Field(attribute="loan", column_name="loan_ref", widget=RefWidget(Loan, label="loan"))
    seq = Field(attribute="seq", column_name="seq", widget=IntWidget())
    due_date = Field(attribute="due_date", column_name="due_date", widget=ISODateWidget())
    amount_due = Field(attribute="amount_due", column_name="amount_due", widget=MoneyWidget())

    class Meta:
        model = Installment
        fields = ("loan_ref", "seq", "due_date", "amount_due")
        import_id_fields = ("loan_ref", "seq")

    def get_queryset(self):
        return Installment.objects.select_related("loan")

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        # The loans to re-allocate after the import (their ids only: a million rows are not kept).
        self.reallocate: set[int] = set()
        self.new_on: set[int] = set()

    def before_save_instance(self, instance, row, **kwargs):
        super().before_save_instance(instance, row, **kwargs)
        # An updated instalment (a changed amount due) or a free one can change its paid state; a new one on a
        # loan with payments takes its share of the money (a credit, or what the waterfall gives it).
        if instance.pk is not None or (instance.amount_due is not None and instance.amount_due <= 0):
            self.reallocate.add(instance.loan_id)
        else:
            self.new_on.add(instance.loan_id)

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if self.is_dry_run or result.has_errors() or result.has_validation_errors():
            return
        loan_ids = set(self.reallocate)
        new_on = sorted(self.new_on - loan_ids)
        for start in range(0, len(new_on), 2000):
            loan_ids.update(
                Payment.objects.filter(loan_id__in=new_on[start : start + 2000])
                .values_list("loan_id", flat=True)
                .distinct()
            )
        if loan_ids:
            from django.utils import timezone

            from .services import reallocate_loans

            reallocate_loans(loan_ids, timezone.now(), payments_recorded=False, actor=kwargs.get("user"))


class InstallmentSeqWidget(IntWidget):
    """The instalment of the row's ``loan_ref`` with this number."""

    def __init__(self):
        super().__init__()
        self._cache: dict[tuple[str, int], Installment] = {}

    def preload(self, loan_refs) -> None:
        refs = sorted({_text(v) for v in loan_refs} - {""})
        self._cache = {}
        for start in range(0, len(refs), 2000):
            for inst in Installment.objects.filter(loan__ref__in=refs[start : start + 2000]).select_related(
                "loan"
            ):
                self._cache[(inst.loan.ref, inst.seq)] = inst

    def clean(self, value, row=None, **kwargs):
        seq = super().clean(value, row, **kwargs)
        loan_ref = _text((row or {}).get("loan_ref"))
        if seq is None or not loan_ref:
            return None
        inst = self._cache.get((loan_ref, seq))
        if inst is None:
            inst = Installment.objects.filter(loan__ref=loan_ref, seq=seq).select_related("loan").first()
        if inst is None:
            if not Loan.objects.filter(ref=loan_ref).exists():
                return None  # reported on the loan_ref column
            raise ValueError(f"loan “{loan_ref}” has no instalment {seq}.")
        return inst

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else str(value.seq)


class PaymentResource(BookResource):
    """Payments of loans, allocated by the waterfall (``loans.allocation``): oldest unpaid instalment first, or
    first the instalment ``installment_seq`` names; what is left after the loan's balance is its credit.

    After the import every loan the file touched (and the loan a corrected row moved a payment from) is
    re-allocated from all its payments at once (``loans.services.reallocate_loans``, set-based): importing the
    same file twice changes nothing, and a corrected amount or date re-allocates the loan.
    """

    ref = text("ref")
    loan_ref = Field(attribute="loan", column_name="loan_ref", widget=RefWidget(Loan, label="loan"))
    installment_seq = Field(
        attribute="installment", column_name="installment_seq", widget=InstallmentSeqWidget()
    )
    amount = Field(attribute="amount", column_name="amount", widget=MoneyWidget())
    received_at = Field(attribute="received_at", column_name="received_at", widget=ISODateTimeWidget())
    source = text("source", default=Payment.Source.OTHER)

    class Meta:
        model = Payment
        fields = ("ref", "loan_ref", "installment_seq", "amount", "received_at", "source")
        import_id_fields = ("ref",)

    def get_queryset(self):
        return Payment.objects.select_related("loan", "installment")

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        if "loan_ref" in (dataset.headers or []) and not self._chunked:
            self.fields["installment_seq"].widget.preload(dataset["loan_ref"])
        self.loan_ids: set[int] = set()

    def preload_chunk(self, rows):
        super().preload_chunk(rows)
        if "loan_ref" in rows and "installment_seq" in rows:
            # The instalments of the loans whose rows name one (most rows leave it to the waterfall).
            named = [_text(seq) != "" for seq in rows.column("installment_seq")]
            refs = [ref for ref, has_seq in zip(rows.column("loan_ref"), named) if has_seq]
            self.fields["installment_seq"].widget.preload(refs)

    def after_init_instance(self, instance, new, row, **kwargs):
        self._was_on = (
            None if new else instance.loan_id
        )  # a corrected row may move the payment to another loan

    def after_save_instance(self, instance, row, **kwargs):
        super().after_save_instance(instance, row, **kwargs)
        if kwargs.get("unchanged"):
            return  # the same payment again: its loan's allocation stands
        if self._was_on:
            self.loan_ids.add(self._was_on)
        if instance.loan_id:
            self.loan_ids.add(instance.loan_id)

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if self.is_dry_run or result.has_errors() or result.has_validation_errors() or not self.loan_ids:
            return
        from django.utils import timezone

        from .services import reallocate_loans

        reallocate_loans(self.loan_ids, timezone.now(), actor=kwargs.get("user"))


class CreditScoreResource(BookResource):
    """Scores from the bureau; applied (latest score -> tier) by the ``apply_scores`` step of ``run_jobs``."""

    customer_ref = Field(
        attribute="customer", column_name="customer_ref", widget=RefWidget(Customer, label="customer")
    )
    score = Field(attribute="score", column_name="score", widget=IntWidget())
    scored_at = Field(attribute="scored_at", column_name="scored_at", widget=ISODateTimeWidget())

    class Meta:
        model = CreditScore
        fields = ("customer_ref", "score", "scored_at")
        import_id_fields = ("customer_ref", "scored_at")

    def after_init_instance(self, instance, new, row, **kwargs):
        instance._score_before_import = None if new else instance.score

    extra_update_fields = ("applied_at",)

    def before_save_instance(self, instance, row, **kwargs):
        super().before_save_instance(instance, row, **kwargs)
        if instance.pk and instance._score_before_import != instance.score:
            instance.applied_at = None  # a corrected score is applied again


__all__ = [
    "CreditScoreResource",
    "CreditTierResource",
    "CustomerResource",
    "InstallmentResource",
    "LoanResource",
    "PaymentResource",
]
