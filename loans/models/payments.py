"""Payments, the part of each that paid an instalment, and auto-debit attempts."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .loans import Installment, Loan


class Payment(models.Model):
    class Source(models.TextChoices):
        APP = "app", _("App")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")
        AUTODEBIT = "autodebit", _("Auto-debit")
        COLLECTOR = "collector", _("Collector")
        AGENCY = "agency", _("Agency")
        OTHER = "other", _("Other")

    ref = models.CharField(_("reference"), max_length=40, unique=True)
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="payments", verbose_name=_("loan"))
    # Where the allocation starts (an operator's or a file's choice); empty: the oldest unpaid instalment.
    # What the payment paid is in ``allocations``.
    installment = models.ForeignKey(
        Installment,
        verbose_name=_("start at instalment"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
    )
    amount = models.DecimalField(
        _("amount"), max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    received_at = models.DateTimeField(_("received at"))
    source = models.CharField(_("source"), max_length=16, choices=Source.choices, default=Source.APP)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        permissions = [("import_payment", "Can import payments"), ("export_payment", "Can export payments")]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self):
        return self.ref

    def clean(self):
        super().clean()
        if self.installment_id and self.loan_id and self.installment.loan_id != self.loan_id:
            raise ValidationError({"installment": _("This instalment belongs to another loan.")})


class PaymentAllocation(models.Model):
    """The part of a payment that paid one instalment (``loans.allocation`` decides it; one row per pair)."""

    # No index of its own: the unique (payment, instalment) index serves every search by payment.
    payment = models.ForeignKey(
        Payment,
        on_delete=models.CASCADE,
        related_name="allocations",
        verbose_name=_("payment"),
        db_index=False,
    )
    installment = models.ForeignKey(
        Installment, on_delete=models.CASCADE, related_name="allocations", verbose_name=_("instalment")
    )
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["payment", "installment__seq"]
        verbose_name = _("payment allocation")
        verbose_name_plural = _("payment allocations")
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "installment"], name="allocation_unique_payment_installment"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive"),
        ]

    def __str__(self):
        return f"{self.payment_id} -> {self.installment_id}: {self.amount}"


class AutoDebitAttempt(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    installment = models.ForeignKey(
        Installment, on_delete=models.CASCADE, related_name="autodebit_attempts", verbose_name=_("instalment")
    )
    attempted_on = models.DateField(_("attempted on"))
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    failure_reason = models.CharField(_("failure reason"), max_length=64, blank=True)
    gateway_reference = models.CharField(_("gateway reference"), max_length=64, blank=True)
    payment = models.OneToOneField(
        Payment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="autodebit_attempt",
        verbose_name=_("payment"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        ordering = ["-attempted_on"]
        verbose_name = _("auto-debit attempt")
        verbose_name_plural = _("auto-debit attempts")
        permissions = [("export_autodebitattempt", "Can export auto-debit attempts")]
        constraints = [
            # One debit per instalment per day, whatever crashes or re-runs happen.
            models.UniqueConstraint(
                fields=["installment", "attempted_on"], name="autodebit_once_per_installment_day"
            ),
        ]

    def __str__(self):
        return f"{self.installment} {self.attempted_on}: {self.status}"
