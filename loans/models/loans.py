"""Loans and their instalments; an instalment's standing (state, days past due, end of grace) is its own."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..schedule import (
    DpdBucket,
    InstallmentState,
    days_past_due,
    dpd_bucket,
    grace_days_of,
    grace_end_date,
    installment_state,
    local_day,
)
from .customers import Customer
from .tiers import CreditTier


class Loan(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAID_OFF = "paid_off", _("Paid off")
        WRITTEN_OFF = "written_off", _("Written off")

    ref = models.CharField(_("reference"), max_length=32, unique=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="loans", verbose_name=_("customer")
    )
    principal = models.DecimalField(
        _("principal"), max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(
        _("currency"), max_length=3, default="CNY", validators=[RegexValidator(r"^[A-Z]{3}$")]
    )
    disbursed_on = models.DateField(_("disbursed on"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    autopay = models.BooleanField(
        _("auto-debit mandate"),
        default=False,
        help_text=_("The customer gave a card mandate: debit on the due date."),
    )
    credit = models.DecimalField(
        _("credit"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        editable=False,
        help_text=_("Money received beyond the loan's whole balance, kept for the customer."),
    )
    legal_hold = models.BooleanField(
        _("legal hold"),
        default=False,
        editable=False,
        help_text=_("Referred to legal: no automatic contact about this loan."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        ordering = ["ref"]
        verbose_name = _("loan")
        verbose_name_plural = _("loans")
        permissions = [("import_loan", "Can import loans"), ("export_loan", "Can export loans")]
        constraints = [
            models.CheckConstraint(condition=Q(principal__gte=0), name="loan_principal_non_negative"),
            models.CheckConstraint(condition=Q(credit__gte=0), name="loan_credit_non_negative"),
        ]
        indexes = [
            # Few loans are held: the planners' exclusion reads this small partial index.
            models.Index(fields=["id"], condition=Q(legal_hold=True), name="loan_legal_hold_idx"),
        ]

    def __str__(self):
        return self.ref


class InstallmentQuerySet(models.QuerySet):
    def unpaid(self):
        return self.filter(paid_at__isnull=True)

    def due_on(self, date: dt.date):
        return self.unpaid().filter(due_date=date)


class Installment(models.Model):
    # No index of its own: the unique (loan, seq) index serves every search by loan, and one more index made
    # each instalment written (an import's, a payment's update of what it was paid) write one more entry.
    loan = models.ForeignKey(
        Loan,
        on_delete=models.CASCADE,
        related_name="installments",
        verbose_name=_("loan"),
        db_index=False,
    )
    seq = models.PositiveSmallIntegerField(_("number"))
    due_date = models.DateField(_("due date"))
    amount_due = models.DecimalField(
        _("amount due"), max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    amount_paid = models.DecimalField(
        _("amount paid"), max_digits=14, decimal_places=2, default=Decimal("0"), editable=False
    )
    paid_at = models.DateTimeField(_("paid in full at"), null=True, blank=True, editable=False)

    objects = InstallmentQuerySet.as_manager()

    class Meta:
        # By the loan's id, not the loan: "loan" orders by the loan's own ordering (its ref), which joined the
        # loans to every read of instalments that gave no order (the re-allocation's, the cure's, a dispatch
        # batch's) and sorted them all by ref; by id the (loan, seq) unique index gives the order.
        ordering = ["loan_id", "seq"]
        verbose_name = _("instalment")
        verbose_name_plural = _("instalments")
        permissions = [
            ("import_installment", "Can import instalments"),
            ("export_installment", "Can export instalments"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["loan", "seq"], name="installment_unique_loan_seq"),
            models.CheckConstraint(
                condition=Q(amount_due__gte=0), name="installment_amount_due_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0), name="installment_amount_paid_non_negative"
            ),
        ]
        indexes = [
            # What the daily jobs ask: unpaid instalments by due date.
            models.Index(
                fields=["due_date"], condition=Q(paid_at__isnull=True), name="installment_unpaid_due_idx"
            ),
        ]

    def __str__(self):
        return _("%(loan)s#%(seq)s due %(date)s") % {
            "loan": self.loan_id,
            "seq": self.seq,
            "date": self.due_date,
        }

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount_due - self.amount_paid, Decimal("0"))

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None

    def _local_day(self, on: dt.date | dt.datetime) -> dt.date:
        """``on`` as the customer's calendar day: a moment is read in their zone, a date is taken as it is."""
        return local_day(on, self.loan.customer.timezone) if isinstance(on, dt.datetime) else on

    def state(self, on: dt.date | dt.datetime) -> InstallmentState:
        """Upcoming, due, in grace, overdue or paid on ``on`` (the customer's calendar and tier's grace period).
        Reads ``loan.customer.tier``: select them with the instalments in lists."""
        return installment_state(
            due_date=self.due_date,
            today=self._local_day(on),
            grace_period_days=grace_days_of(self.loan.customer.tier),
            is_paid=self.is_paid,
        )

    def days_past_due(self, on: dt.date | dt.datetime) -> int:
        """Days past the due date on ``on`` in the customer's calendar (0 once paid, and up to the due date)."""
        return 0 if self.is_paid else days_past_due(self.due_date, self._local_day(on))

    def dpd_bucket(self, on: dt.date | dt.datetime) -> DpdBucket:
        return dpd_bucket(self.days_past_due(on))

    def grace_end(self, tier: CreditTier | None) -> dt.date:
        """The last day of grace under ``tier`` (None: the default grace period); overdue the day after."""
        return grace_end_date(self.due_date, grace_days_of(tier))
