"""Champion/challenger tests of a tier's policy: the test's shares and seed, and the arm each customer was put in
(recorded once, stable per customer)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from .policies import PolicyVersion
from .tiers import CreditTier


class Arm(models.TextChoices):
    CHAMPION = "champion", _("Champion")
    CHALLENGER = "challenger", _("Challenger")
    HOLDOUT = "holdout", _("Holdout (no pre-due reminders)")


class PolicyExperiment(models.Model):
    """A tier's champion/challenger test: ``challenger_share`` of its customers follow the ``challenger`` version,
    ``holdout_share`` get no pre-due reminders (and everything else: grace and collections contacts, every gate),
    the rest follow the champion (the tier's current version). Which arm a customer is in is decided once from
    ``seed`` and recorded (``PolicyAssignment``)."""

    tier = models.OneToOneField(
        CreditTier, on_delete=models.CASCADE, related_name="experiment", verbose_name=_("tier")
    )
    challenger = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("challenger version"),
    )
    challenger_share = models.DecimalField(
        _("challenger share"), max_digits=4, decimal_places=3, default=Decimal("0")
    )
    holdout_share = models.DecimalField(
        _("holdout share"), max_digits=4, decimal_places=3, default=Decimal("0")
    )
    seed = models.CharField(_("assignment seed"), max_length=32)
    updated_at = models.DateTimeField(_("changed at"))
    updated_by = models.CharField(_("changed by"), max_length=150)

    class Meta:
        verbose_name = _("champion/challenger test")
        verbose_name_plural = _("champion/challenger tests")
        permissions = [
            ("run_policy_test", "Can start a champion/challenger test"),
            ("promote_challenger", "Can promote a challenger to the tier's policy"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(challenger_share__gte=0, holdout_share__gte=0)
                & Q(challenger_share__lte=1 - F("holdout_share")),
                name="experiment_shares_within_one",
            ),
        ]

    def __str__(self):
        return f"{self.tier_id}: challenger {self.challenger_share}, holdout {self.holdout_share}"

    @property
    def is_running(self) -> bool:
        return bool(self.holdout_share) or (self.challenger_id is not None and bool(self.challenger_share))


class PolicyAssignment(models.Model):
    """The arm a customer was put in for a tier's test (one row per customer, tier and seed), and the version
    that arm followed when assigned. Never changed: stable per customer."""

    customer = models.ForeignKey(
        "loans.Customer",
        on_delete=models.CASCADE,
        related_name="policy_assignments",
        verbose_name=_("customer"),
    )
    tier = models.ForeignKey(CreditTier, on_delete=models.CASCADE, related_name="+", verbose_name=_("tier"))
    seed = models.CharField(_("assignment seed"), max_length=32)
    arm = models.CharField(_("arm"), max_length=16, choices=Arm.choices)
    policy_version = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("policy version"),
    )
    assigned_at = models.DateTimeField(_("assigned at"))

    class Meta:
        verbose_name = _("arm assignment")
        verbose_name_plural = _("arm assignments")
        constraints = [
            models.UniqueConstraint(fields=["customer", "tier", "seed"], name="assignment_once_per_test"),
        ]
        indexes = [models.Index(fields=["tier", "seed", "arm"], name="assignment_arm_idx")]

    def __str__(self):
        return f"{self.customer_id} @ {self.tier_id}: {self.arm}"
