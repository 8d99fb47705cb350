"""Credit tiers: score ranges and the contact policy of each (grace period, weekly cap, channel order)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from ..schedule import DEFAULT_GRACE_PERIOD_DAYS

CONTACT_CHANNELS = ("sms", "email", "push", "call")
MAX_GRACE_PERIOD_DAYS = 14


def validate_channel_order(value: str) -> None:
    channels = [c.strip() for c in (value or "").split(",") if c.strip()]
    if not channels:
        raise ValidationError(_("List at least one channel."), code="empty_channel_order")
    unknown = [c for c in channels if c not in CONTACT_CHANNELS]
    if unknown:
        raise ValidationError(
            _("Unknown channel(s): %(unknown)s. Use %(known)s."),
            code="unknown_channel",
            params={"unknown": ", ".join(unknown), "known": ", ".join(CONTACT_CHANNELS)},
        )
    if len(set(channels)) != len(channels):
        raise ValidationError(_("A channel is listed twice."), code="duplicate_channel")


class CreditTier(models.Model):
    class RiskLevel(models.TextChoices):
        LOW = "low", _("Low")
        MEDIUM = "medium", _("Medium")
        HIGH = "high", _("High")
        VERY_HIGH = "very_high", _("Very high")

    code = models.CharField(
        _("code"), max_length=16, unique=True, validators=[RegexValidator(r"^[A-Za-z0-9_-]+$")]
    )
    name = models.CharField(_("name"), max_length=100)
    min_score = models.IntegerField(_("minimum score"), validators=[MinValueValidator(0)])
    max_score = models.IntegerField(_("maximum score"), validators=[MinValueValidator(0)])
    risk_level = models.CharField(
        _("risk level"), max_length=16, choices=RiskLevel.choices, default=RiskLevel.MEDIUM
    )
    grace_period_days = models.PositiveSmallIntegerField(
        _("grace period (days)"),
        default=DEFAULT_GRACE_PERIOD_DAYS,
        validators=[MaxValueValidator(MAX_GRACE_PERIOD_DAYS)],
    )
    max_contacts_per_week = models.PositiveSmallIntegerField(
        _("max contacts per customer in any 7 days"), default=3, validators=[MinValueValidator(1)]
    )
    channel_order = models.CharField(
        _("channel order"),
        max_length=64,
        default="sms,push,email",
        validators=[validate_channel_order],
        help_text=_("Comma-separated; when a customer opted out of one channel the next is used."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["min_score"]
        verbose_name = _("credit tier")
        verbose_name_plural = _("credit tiers")
        permissions = [
            ("import_credittier", "Can import credit tiers"),
            ("export_credittier", "Can export credit tiers"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(min_score__gte=0), name="tier_min_score_non_negative"),
            models.CheckConstraint(
                condition=Q(min_score__lte=F("max_score")), name="tier_min_score_lte_max_score"
            ),
            models.CheckConstraint(
                condition=Q(grace_period_days__lte=MAX_GRACE_PERIOD_DAYS), name="tier_grace_period_at_most_14"
            ),
            models.CheckConstraint(condition=Q(max_contacts_per_week__gte=1), name="tier_cap_at_least_one"),
        ]

    def __str__(self):
        return self.label_for(self.code, self.name)

    @staticmethod
    def label_for(code: str, name: str) -> str:
        """How a tier reads everywhere: its code once, then its name ("A · Prime"); a name that already starts
        with the code ("A · 优质 Prime") is shown as it is, never "A · A · Prime"."""
        if not name or name == code:
            return code
        if name.startswith(code + " ") or name.startswith(code + "·"):
            return name
        return f"{code} · {name}"

    @property
    def channels(self) -> list[str]:
        return [c.strip() for c in self.channel_order.split(",") if c.strip()]

    def clean(self):
        super().clean()
        if self.min_score is not None and self.max_score is not None:
            if self.min_score > self.max_score:
                raise ValidationError(
                    {"max_score": _("The maximum score must not be below the minimum score.")}
                )
            overlapping = CreditTier.objects.filter(
                min_score__lte=self.max_score, max_score__gte=self.min_score
            )
            if self.pk:
                overlapping = overlapping.exclude(pk=self.pk)
            if self.code:
                overlapping = overlapping.exclude(code=self.code)
            other = overlapping.first()
            if other:
                raise ValidationError(
                    {
                        "min_score": _("Scores %(min)s-%(max)s overlap tier %(other)s (%(omin)s-%(omax)s).")
                        % {
                            "min": self.min_score,
                            "max": self.max_score,
                            "other": other.code,
                            "omin": other.min_score,
                            "omax": other.max_score,
                        }
                    }
                )
