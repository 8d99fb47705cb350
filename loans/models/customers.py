"""Customers (where they live, how they may be contacted, their tier) and their credit scores."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..locations import calendar_zone, locate, phone_zones
from ..phones import PhoneNumberField
from ..tiers import tier_for
from .tiers import CreditTier


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValidationError(
            _("“%(value)s” is not a known time zone."), code="invalid_timezone", params={"value": value}
        ) from exc


class Customer(models.Model):
    class Language(models.TextChoices):
        ZH_HANS = "zh-hans", "简体中文"
        EN = "en", "English"

    class DoNotContactReason(models.TextChoices):
        DISPUTE = "dispute", _("Dispute")
        BEREAVEMENT = "bereavement", _("Bereavement")
        BANKRUPTCY = "bankruptcy", _("Bankruptcy")
        LEGAL_HOLD = "legal_hold", _("Legal hold")
        CUSTOMER_REQUEST = "customer_request", _("Customer request")

    ref = models.CharField(_("reference"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=200)
    phone = PhoneNumberField(_("phone"), blank=True, help_text=_("Stored as E.164, e.g. +8613800138000."))
    email = models.EmailField(_("email"), blank=True)
    push_token = models.CharField(_("push token"), max_length=255, blank=True)
    language = models.CharField(
        _("language"), max_length=10, choices=Language.choices, default=Language.ZH_HANS
    )

    class TimezoneSource(models.TextChoices):
        GIVEN = "given", _("Given (import or operator)")
        PHONE = "phone", _("Unknown: the phone number's zone")
        UNKNOWN = "unknown", _("Unknown: the operators' zone")

    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="",
        validators=[validate_timezone],
        help_text=_(
            "Where the customer said they live. Leave empty when unknown: the phone number's zone (or the "
            "operators' zone) is then used and recorded as such, never taken as the customer's own."
        ),
    )
    timezone_source = models.CharField(
        _("time zone source"),
        max_length=16,
        choices=TimezoneSource.choices,
        default=TimezoneSource.GIVEN,
        editable=False,
    )
    credit_score = models.IntegerField(
        _("latest credit score"), null=True, blank=True, validators=[MinValueValidator(0)]
    )
    tier = models.ForeignKey(
        CreditTier,
        verbose_name=_("credit tier"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
    )
    is_tier_pinned = models.BooleanField(
        _("tier pinned by an operator"),
        default=False,
        help_text=_("A pinned tier no longer follows the credit score."),
    )
    tier_pin_reason = models.CharField(_("reason for pinning"), max_length=255, blank=True)
    opt_out_sms = models.BooleanField(_("opted out of SMS"), default=False)
    opt_out_email = models.BooleanField(_("opted out of email"), default=False)
    opt_out_push = models.BooleanField(_("opted out of push"), default=False)
    opt_out_call = models.BooleanField(_("opted out of calls"), default=False)
    do_not_contact = models.BooleanField(_("do not contact"), default=False)
    do_not_contact_reason = models.CharField(
        _("do-not-contact reason"), max_length=32, choices=DoNotContactReason.choices, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        ordering = ["ref"]
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        permissions = [
            ("view_personal_data", "Can see unmasked personal data (names, phones, emails)"),
            ("import_customer", "Can import customers"),
            ("export_customer", "Can export customers"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_tier_pinned=False) | ~Q(tier_pin_reason=""),
                name="customer_pinned_tier_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(do_not_contact=False) | ~Q(do_not_contact_reason=""),
                name="customer_dnc_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(credit_score__gte=0) | Q(credit_score__isnull=True),
                name="customer_score_non_negative",
            ),
        ]

    def __str__(self):
        # The reference only: a customer's name is personal data and this text shows up everywhere (admin
        # titles, breadcrumbs, foreign-key widgets) whether the viewer may see personal data or not.
        return self.ref

    def save(self, *args, **kwargs):
        self.settle_timezone()
        if not self.is_tier_pinned:
            self.tier = self.derived_tier()
        if not self.do_not_contact:
            self.do_not_contact_reason = ""
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        if self.is_tier_pinned and not self.tier_pin_reason.strip():
            raise ValidationError({"tier_pin_reason": _("Say why the tier is pinned.")})
        if self.is_tier_pinned and not self.tier_id:
            raise ValidationError({"tier": _("Choose the tier to pin.")})
        if self.do_not_contact and not self.do_not_contact_reason:
            raise ValidationError(
                {"do_not_contact_reason": _("Say why this customer must not be contacted.")}
            )

    def derived_tier(self) -> CreditTier | None:
        """The tier whose score range holds the latest credit score (None without a score or a tier)."""
        return tier_for(self.credit_score, CreditTier.objects.all())

    def settle_timezone(self) -> None:
        """Fill the calendar zone of a customer who gave none (``timezone`` empty, or derived before and not given
        since): the phone number's zone when it has exactly one, else the operators' ``TIME_ZONE``, with
        ``timezone_source`` saying which. A zone given by an import or an operator is kept as ``given``."""
        if self.timezone and self.timezone_source == self.TimezoneSource.GIVEN:
            return
        self.timezone = calendar_zone(phone=self.phone or "", default_zone=settings.TIME_ZONE)
        self.timezone_source = (
            self.TimezoneSource.PHONE
            if len(phone_zones(self.phone or "")) == 1
            else self.TimezoneSource.UNKNOWN
        )

    @property
    def is_timezone_given(self) -> bool:
        return self.timezone_source == self.TimezoneSource.GIVEN

    @property
    def location(self):
        """Every zone and country the customer may be in (``loans.locations.Location``)."""
        return locate(
            stored_zone=self.timezone if self.is_timezone_given else "",
            phone=self.phone or "",
            default_zone=settings.TIME_ZONE,
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The zone of the customer's calendar (their local day for due dates, planning and DPD)."""
        return zoneinfo.ZoneInfo(self.timezone)

    def local_now(self, now: dt.datetime) -> dt.datetime:
        return now.astimezone(self.zone)

    def is_opted_out(self, channel: str) -> bool:
        return bool(getattr(self, f"opt_out_{channel}", False))

    def destination(self, channel: str) -> str:
        return {"sms": self.phone, "call": self.phone, "email": self.email, "push": self.push_token}.get(
            channel, ""
        )


class CreditScore(models.Model):
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="credit_scores", verbose_name=_("customer")
    )
    score = models.IntegerField(_("score"), validators=[MinValueValidator(0)])
    scored_at = models.DateTimeField(_("scored at"))
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-scored_at"]
        verbose_name = _("credit score")
        verbose_name_plural = _("credit scores")
        permissions = [
            ("import_creditscore", "Can import credit scores"),
            ("export_creditscore", "Can export credit scores"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "scored_at"], name="credit_score_unique_per_customer_time"
            ),
            models.CheckConstraint(condition=Q(score__gte=0), name="credit_score_non_negative"),
        ]
        indexes = [
            models.Index(
                fields=["scored_at"], condition=Q(applied_at__isnull=True), name="credit_score_unapplied_idx"
            )
        ]

    def __str__(self):
        return f"{self.customer_id}: {self.score} @ {self.scored_at:%Y-%m-%d}"
