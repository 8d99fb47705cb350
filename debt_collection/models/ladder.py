"""The escalation ladder: a tier's steps by days past due."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier
from notifications.choices import Kind

MESSAGING_ACTIONS = ("sms", "email", "push")


class EscalationStep(models.Model):
    """One rung of a tier's ladder: from ``min_dpd`` days past due, do ``action`` (once per case)."""

    class Action(models.TextChoices):
        SMS = "sms", _("SMS")
        EMAIL = "email", _("Email")
        PUSH = "push", _("App push")
        CALL_TASK = "call_task", _("Call task for a collector")
        AGENCY = "agency", _("Place with a collection agency")
        LEGAL = "legal", _("Refer to legal")

    tier = models.ForeignKey(
        CreditTier, on_delete=models.CASCADE, related_name="escalation_steps", verbose_name=_("tier")
    )
    min_dpd = models.PositiveSmallIntegerField(
        _("from days past due"), validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    stage = models.CharField(
        _("stage"), max_length=32, help_text=_("A free label: early, firm, call, agency, legal.")
    )
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    kind = models.CharField(
        _("template kind"),
        max_length=32,
        choices=Kind.choices,
        blank=True,
        help_text=_("For SMS, email and push."),
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        ordering = ["tier", "min_dpd", "action"]
        verbose_name = _("escalation step")
        verbose_name_plural = _("escalation steps")
        permissions = [
            ("import_escalationstep", "Can import escalation steps"),
            ("export_escalationstep", "Can export escalation steps"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tier", "min_dpd", "action"], name="escalation_step_unique_tier_dpd_action"
            ),
            models.CheckConstraint(condition=Q(min_dpd__gte=1), name="escalation_step_min_dpd_positive"),
            models.CheckConstraint(
                condition=~Q(action__in=MESSAGING_ACTIONS) | ~Q(kind=""),
                name="escalation_step_message_has_kind",
            ),
        ]

    def __str__(self):
        return f"{self.tier_id}: DPD {self.min_dpd}+ {self.action} ({self.stage})"

    @property
    def is_messaging(self) -> bool:
        return self.action in MESSAGING_ACTIONS

    def clean(self):
        super().clean()
        if self.is_messaging and not self.kind:
            self.kind = Kind.OVERDUE
        if not self.is_messaging:
            self.kind = ""
