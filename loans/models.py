"""The loan book: credit tiers, customers, credit scores, loans, instalments, payments, auto-debit attempts."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from .phones import PhoneNumberField
from .schedule import (
    DEFAULT_GRACE_PERIOD_DAYS,
    DpdBucket,
    InstallmentState,
    days_past_due,
    dpd_bucket,
    grace_days_of,
    grace_end_date,
    installment_state,
    local_date,
)

CONTACT_CHANNELS = ("sms", "email", "push", "call")
MAX_GRACE_PERIOD_DAYS = 14


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValidationError(
            _("“%(value)s” is not a known time zone."), code="invalid_timezone", params={"value": value}
        ) from exc


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


class CreditTierQuerySet(models.QuerySet):
    def for_score(self, score: int | None) -> CreditTier | None:
        if score is None:
            return None
        return self.filter(min_score__lte=score, max_score__gte=score).first()


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
    updated_at = models.DateTimeField(auto_now=True)

    objects = CreditTierQuerySet.as_manager()

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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
        return CreditTier.objects.for_score(self.credit_score)

    def settle_timezone(self) -> None:
        """Fill the calendar zone of a customer who gave none (``timezone`` empty, or derived before and not given
        since): the phone number's zone when it has exactly one, else the operators' ``TIME_ZONE``, with
        ``timezone_source`` saying which. A zone given by an import or an operator is kept as ``given``."""
        from django.conf import settings

        from .locations import calendar_zone, phone_zones

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
        from django.conf import settings

        from .locations import locate

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
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="credit_scores")
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


class Loan(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAID_OFF = "paid_off", _("Paid off")
        WRITTEN_OFF = "written_off", _("Written off")

    ref = models.CharField(_("reference"), max_length=32, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="loans")
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="installments")
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
        ordering = ["loan", "seq"]
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
        return f"{self.loan_id}#{self.seq} due {self.due_date}"

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount_due - self.amount_paid, Decimal("0"))

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None

    def _local_day(self, on: dt.date | dt.datetime) -> dt.date:
        """``on`` as the customer's calendar day: a moment is read in their zone, a date is taken as it is."""
        if isinstance(on, dt.datetime):
            return local_date(on, self.loan.customer.timezone)
        return on

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


class Payment(models.Model):
    class Source(models.TextChoices):
        APP = "app", _("App")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")
        AUTODEBIT = "autodebit", _("Auto-debit")
        COLLECTOR = "collector", _("Collector")
        AGENCY = "agency", _("Agency")
        OTHER = "other", _("Other")

    ref = models.CharField(_("reference"), max_length=40, unique=True)
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="payments")
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
    created_at = models.DateTimeField(auto_now_add=True)

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

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="allocations")
    installment = models.ForeignKey(Installment, on_delete=models.CASCADE, related_name="allocations")
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

    installment = models.ForeignKey(Installment, on_delete=models.CASCADE, related_name="autodebit_attempts")
    attempted_on = models.DateField(_("attempted on"))
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    failure_reason = models.CharField(_("failure reason"), max_length=64, blank=True)
    gateway_reference = models.CharField(_("gateway reference"), max_length=64, blank=True)
    payment = models.OneToOneField(
        Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="autodebit_attempt"
    )
    created_at = models.DateTimeField(auto_now_add=True)

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
