"""Hand-overs: third-party agencies and their placements, legal referrals."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .cases import CollectionCase


class Agency(models.Model):
    name = models.CharField(_("name"), max_length=200)
    code = models.CharField(_("code"), max_length=32, unique=True)
    may_see_personal_data = models.BooleanField(
        _("contract allows personal data"),
        default=False,
        help_text=_("Unless ticked, names, phones and emails in placement files are masked."),
    )
    is_active = models.BooleanField(_("takes new placements"), default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("collection agency")
        verbose_name_plural = _("collection agencies")

    def __str__(self):
        return f"{self.code} · {self.name}"


class AgencyPlacement(models.Model):
    """Cases handed to an agency together, with the file the agency received."""

    class Reason(models.TextChoices):
        """Why cases were placed (``placed`` events) or taken back (``recall_reason``)."""

        MANUAL = "manual", _("Placed by an operator")
        LADDER = "ladder", _("Placed by the ladder")
        RECALLED = "recalled", _("Recalled by an operator")
        LEGAL = "legal", _("Referred to legal")
        PAID = "paid", _("Overdue amount paid")

    agency = models.ForeignKey(
        Agency, on_delete=models.PROTECT, related_name="placements", verbose_name=_("agency")
    )
    cases = models.ManyToManyField(CollectionCase, related_name="placements", verbose_name=_("cases"))
    placed_at = models.DateTimeField(_("placed at"))
    placed_by = models.CharField(_("placed by"), max_length=150)
    recalled_at = models.DateTimeField(_("recalled at"), null=True, blank=True)
    recalled_by = models.CharField(_("recalled by"), max_length=150, blank=True)
    recall_reason = models.CharField(_("recall reason"), max_length=64, choices=Reason.choices, blank=True)
    file = models.TextField(_("placement file (CSV)"), blank=True, editable=False)
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-placed_at", "-id"]
        verbose_name = _("agency placement")
        verbose_name_plural = _("agency placements")
        permissions = [("download_placement_file", "Can download agency placement files")]

    def __str__(self):
        return f"Placement {self.pk} with {self.agency_id}"

    @property
    def is_active(self) -> bool:
        return self.recalled_at is None

    def clean(self):
        super().clean()
        if self.recalled_at and self.recalled_at < self.placed_at:
            raise ValidationError({"recalled_at": _("A placement cannot be recalled before it was placed.")})


class LegalReferral(models.Model):
    """A case handed to legal: all automatic contact for its loan stops."""

    case = models.OneToOneField(
        CollectionCase, on_delete=models.PROTECT, related_name="legal_referral", verbose_name=_("case")
    )
    referred_at = models.DateTimeField(_("referred at"))
    referred_by = models.CharField(_("referred by"), max_length=150)
    dpd = models.PositiveIntegerField(_("days past due"))
    amount_overdue = models.DecimalField(_("amount overdue"), max_digits=14, decimal_places=2)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        ordering = ["-referred_at", "-id"]
        verbose_name = _("legal referral")
        verbose_name_plural = _("legal referrals")

    def __str__(self):
        return f"Legal referral of case {self.case_id}"
