"""The outcome figures of each tier, policy version, arm and cohort month, as the outcomes job last computed
them (``strategy.outcomes``): counts, from which the page and the export compute rates and intervals."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from loans.models import Arm, CreditTier, Customer, Installment, PolicyVersion


class OutcomeFigure(models.Model):
    class Metric(models.TextChoices):
        PAID_BY_DUE = "paid_by_due", _("Paid by the due date")
        PAID_WITHIN_7 = "paid_within_7", _("Paid within 7 days of the due date")
        PAID_WITHIN_30 = "paid_within_30", _("Paid within 30 days of the due date")
        CURE = "cure", _("Past-due instalments cured (paid since)")
        ROLL_1_30 = "roll_1_30", _("Roll from 1-30 to 31-60 DPD")
        ROLL_31_60 = "roll_31_60", _("Roll from 31-60 to 61-90 DPD")
        ROLL_61_90 = "roll_61_90", _("Roll from 61-90 to 90+ DPD")
        PROMISE_KEPT = "promise_kept", _("Promises kept")
        OPT_OUT = "opt_out", _("Customers who opted out of a channel")
        CONTACTS_PER_CURE = "contacts_per_cure", _("Contacts sent per cured instalment")
        CALLS_PER_CURE = "calls_per_cure", _("Calls made per cured instalment")

    # Figures that are a count per unit, not a share: their interval is a Poisson one, not Wilson's.
    RATIOS = (Metric.CONTACTS_PER_CURE, Metric.CALLS_PER_CURE)

    tier = models.ForeignKey(CreditTier, on_delete=models.CASCADE, related_name="+", verbose_name=_("tier"))
    policy_version = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("policy version"),
    )
    arm = models.CharField(_("arm"), max_length=16, choices=Arm.choices)
    cohort = models.DateField(_("cohort (month)"))
    metric = models.CharField(_("figure"), max_length=32, choices=Metric.choices)
    numerator = models.PositiveIntegerField(_("count"))
    denominator = models.PositiveIntegerField(_("out of"))
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        ordering = ["tier", "cohort", "policy_version", "arm", "metric"]
        verbose_name = _("outcome figure")
        verbose_name_plural = _("outcome figures")
        permissions = [("export_outcomefigure", "Can export the outcome figures")]
        indexes = [models.Index(fields=["tier", "metric"], name="outcome_tier_metric_idx")]

    def __str__(self):
        return f"{self.tier_id} v{self.policy_version_id} {self.arm} {self.cohort:%Y-%m} {self.metric}"


class FirstContact(models.Model):
    """Read-only (a database view): each instalment's first contact planned about it and the policy version it was
    decided under, so the outcomes job joins it once instead of looking it up per instalment."""

    installment = models.OneToOneField(
        Installment,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="outcome_first_contact",
    )
    notification_id = models.BigIntegerField()
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        managed = False
        db_table = "strategy_first_contact"

    def __str__(self):
        return f"{self.installment_id}: {self.notification_id}"


class CurrentAssignment(models.Model):
    """Read-only (a database view): each customer's latest arm assignment per tier (one row per customer and tier),
    so the outcomes job joins a customer's arm instead of looking it up per row."""

    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, db_constraint=False, related_name="outcome_arms"
    )
    tier = models.ForeignKey(CreditTier, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    arm = models.CharField(max_length=16, choices=Arm.choices)
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        managed = False
        db_table = "strategy_current_assignment"

    def __str__(self):
        return f"{self.customer_id} {self.tier_id}: {self.arm}"
