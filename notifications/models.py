"""Reminder engine: templates, per-tier rules, the contact policy, the notification log and the outbox."""

from __future__ import annotations

import datetime as dt
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier, Customer, Installment

from .choices import Channel, Kind


class ReminderTemplate(models.Model):
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.messaging_choices())
    language = models.CharField(_("language"), max_length=10, choices=Customer.Language.choices)
    subject = models.CharField(_("subject"), max_length=200, blank=True, help_text=_("Email and push only."))
    body = models.TextField(_("body"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "channel", "language"]
        verbose_name = _("reminder template")
        verbose_name_plural = _("reminder templates")
        permissions = [
            ("import_remindertemplate", "Can import reminder templates"),
            ("export_remindertemplate", "Can export reminder templates"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "channel", "language"], name="template_unique_kind_channel_language"
            )
        ]

    def __str__(self):
        # Labels, not codes: this text titles the template's page and names it in the admin's history.
        return f"{self.get_kind_display()} · {self.get_channel_display()} · {self.get_language_display()}"

    def save(self, *args, **kwargs):
        # Saving is refused too, not only the form: an import or a script cannot store a broken template.
        from .templating import validate_template_text

        validate_template_text(self.subject or "")
        validate_template_text(self.body or "")
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        from .templating import validate_template_text

        errors = {}
        for field in ("subject", "body"):
            try:
                validate_template_text(getattr(self, field) or "")
            except ValidationError as exc:
                errors[field] = exc.messages
        if errors:
            raise ValidationError(errors)


class ReminderRule(models.Model):
    tier = models.ForeignKey(
        CreditTier, on_delete=models.CASCADE, related_name="reminder_rules", verbose_name=_("tier")
    )
    offset_days = models.SmallIntegerField(
        _("offset (days)"),
        help_text=_("Days relative to the due date: -7 is a week before, 0 the due day, 2 two days after."),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.messaging_choices())
    kind = models.CharField(_("template kind"), max_length=32, choices=Kind.choices)
    send_time = models.TimeField(_("local send time"), default=dt.time(10, 0))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["tier", "offset_days", "channel"]
        verbose_name = _("reminder rule")
        verbose_name_plural = _("reminder rules")
        permissions = [
            ("import_reminderrule", "Can import reminder rules"),
            ("export_reminderrule", "Can export reminder rules"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tier", "offset_days", "channel", "kind"],
                name="rule_unique_per_tier_offset_channel_kind",
            ),
            models.CheckConstraint(
                condition=Q(offset_days__gte=-60) & Q(offset_days__lte=60), name="rule_offset_within_60_days"
            ),
        ]

    def __str__(self):
        return (
            f"{self.tier_id}: {self.offset_days:+d}d {self.get_channel_display()} {self.get_kind_display()} "
            f"at {self.send_time:%H:%M}"
        )

    def clean(self):
        super().clean()
        if self.offset_days is None or not self.kind:
            return
        expected = {
            Kind.PRE_DUE: (
                self.offset_days < 0,
                _("A reminder before the due date needs a negative offset."),
            ),
            Kind.DUE_TODAY: (self.offset_days == 0, _("A due-day reminder needs offset 0.")),
            Kind.GRACE: (self.offset_days > 0, _("A grace reminder needs a positive offset.")),
            Kind.OVERDUE: (self.offset_days > 0, _("An overdue reminder needs a positive offset.")),
        }
        if self.kind in expected and not expected[self.kind][0]:
            raise ValidationError({"offset_days": expected[self.kind][1]})
        if self.kind == Kind.GRACE and self.tier_id and self.offset_days > self.tier.grace_period_days:
            raise ValidationError(
                {
                    "offset_days": _("Day %(offset)s is past the tier's grace period of %(grace)s days.")
                    % {"offset": self.offset_days, "grace": self.tier.grace_period_days}
                }
            )
        # Inside the grace period a late payment is not yet overdue: only grace reminders go out.
        if self.kind == Kind.OVERDUE and self.tier_id and self.offset_days <= self.tier.grace_period_days:
            raise ValidationError(
                {
                    "offset_days": _(
                        "Day %(offset)s is inside the tier's grace period of %(grace)s days: "
                        "use a grace reminder, or a day after the grace period."
                    )
                    % {"offset": self.offset_days, "grace": self.tier.grace_period_days}
                }
            )

    def fits_grace_period(self, grace_period_days: int) -> bool:
        """Whether the rule's kind suits its day: inside the grace period only grace reminders, after it none."""
        if self.offset_days <= 0:
            return self.kind not in (Kind.GRACE, Kind.OVERDUE)
        if self.offset_days <= grace_period_days:
            return self.kind == Kind.GRACE
        return self.kind != Kind.GRACE


VOICEMAIL_PLACEHOLDERS = ("agent_name", "business_name", "callback_number")
# Words that would tell whoever hears a voicemail that it is about a debt (1006.2(j): a limited-content message
# says nothing about the debt). Compared case-insensitively.
VOICEMAIL_FORBIDDEN_WORDS = (
    "debt",
    "collect",
    "overdue",
    "past due",
    "loan",
    "payment",
    "balance",
    "欠",
    "逾期",
    "催收",
    "贷款",
    "还款",
    "债",
)
DEFAULT_VOICEMAIL_TEXT = (
    "Hello, this is {agent_name} from {business_name}. Please call me back at {callback_number}. Thank you."
)


def validate_voicemail_text(value: str) -> None:
    """A limited-content message (12 CFR 1006.2(j)): the caller's name, a business name, a request to call back
    and a number; nothing about a debt. Only the placeholders {agent_name}, {business_name} and
    {callback_number} are allowed, {callback_number} is required, and no word names a debt."""
    import string

    if not value:
        return
    try:
        names = {name for _lit, name, _spec, _conv in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValidationError(_("The voicemail text has a broken placeholder.")) from exc
    unknown = sorted(names - set(VOICEMAIL_PLACEHOLDERS))
    if unknown:
        raise ValidationError(
            _("A voicemail may only name the caller, the business and a number: remove %(names)s.")
            % {"names": ", ".join("{" + n + "}" for n in unknown)}
        )
    if "callback_number" not in names:
        raise ValidationError(_("A voicemail must give the number to call back: add {callback_number}."))
    lowered = value.lower()
    found = [w for w in VOICEMAIL_FORBIDDEN_WORDS if w in lowered]
    if found:
        raise ValidationError(
            _("A voicemail must say nothing about a debt (found: %(words)s).") % {"words": ", ".join(found)}
        )


class ContactRules(models.Model):
    """The contact window and the call limits (Regulation F 1006.6(b)(1)(i), 1006.14(b)(2)), and the
    limited-content voicemail (1006.2(j)): the contact policy holds the defaults, a jurisdiction its own."""

    window_start = models.TimeField(_("contact window opens (local time)"), default=dt.time(8, 0))
    window_end = models.TimeField(_("contact window closes (local time)"), default=dt.time(21, 0))
    max_calls_per_debt_in_7_days = models.PositiveSmallIntegerField(
        _("calls per loan in 7 days"),
        default=7,
        help_text=_("Call attempts about one loan in any 7 consecutive days, counted when they were made."),
    )
    call_pause_days_after_conversation = models.PositiveSmallIntegerField(
        _("days without calls after a conversation"),
        default=7,
        help_text=_("The day of the conversation counts as the first day."),
    )
    max_call_attempts_per_day = models.PositiveSmallIntegerField(
        _("call attempts per person a day"),
        default=3,
        help_text=_("Across all the person's loans, on their local day."),
    )
    voicemail_text = models.TextField(
        _("voicemail text"),
        default=DEFAULT_VOICEMAIL_TEXT,
        validators=[validate_voicemail_text],
        help_text=_(
            "What a collector leaves on a voicemail: only {agent_name}, {business_name} and {callback_number}, "
            "nothing about the debt."
        ),
    )
    business_name = models.CharField(
        _("business name in voicemails"),
        max_length=100,
        blank=True,
        help_text=_("A name that does not say it is about a debt."),
    )
    callback_number = models.CharField(_("call-back number"), max_length=32, blank=True)

    class Meta:
        abstract = True

    def clean(self):
        super().clean()
        errors = self.rules_errors()
        if errors:
            raise ValidationError(errors)

    def rules_errors(self) -> dict:
        errors = {}
        if self.window_start and self.window_end and self.window_start >= self.window_end:
            errors["window_end"] = _("The window must close after it opens.")
        try:
            validate_voicemail_text(self.voicemail_text or "")
        except ValidationError as exc:
            errors["voicemail_text"] = exc.messages
        return errors

    def rules(self, *, holiday_country: str, jurisdiction: str, fallback: ContactRules | None = None):
        """These settings as the compliance gates' plain ``Rules`` (the voicemail's business name and number
        taken from ``fallback`` where these leave them empty)."""
        from .compliance import Rules, Window

        return Rules(
            window=Window(self.window_start, self.window_end, holiday_country),
            max_calls_per_debt_in_7_days=self.max_calls_per_debt_in_7_days,
            call_pause_days_after_conversation=self.call_pause_days_after_conversation,
            max_call_attempts_per_day=self.max_call_attempts_per_day,
            voicemail_text=self.render_voicemail_template(fallback),
            jurisdictions=(jurisdiction,) if jurisdiction else (),
        )

    def render_voicemail_template(self, fallback: ContactRules | None = None) -> str:
        """The voicemail with the business name and number filled in ({agent_name} is left for the call)."""
        business = self.business_name or (fallback.business_name if fallback else "")
        number = self.callback_number or (fallback.callback_number if fallback else "")
        text = self.voicemail_text or (fallback.voicemail_text if fallback else "")
        return text.replace("{business_name}", business).replace("{callback_number}", number)


# The (channel, language) pairs whose opt-out line the contact policy holds.
OPT_OUT_LINES = tuple(
    (channel, language)
    for channel in (Channel.SMS.value, Channel.EMAIL.value)
    for language in (Customer.Language.ZH_HANS.value, Customer.Language.EN.value)
)


class ContactPolicy(ContactRules):
    """The one row of contact settings operations can change in the admin. Its window and call limits apply to
    every customer, together with the rules of the jurisdictions the customer's location points at (the
    strictest wins)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    holiday_country = models.CharField(
        _("public holidays of country"),
        max_length=2,
        blank=True,
        help_text=_("ISO code such as CN; empty for none."),
    )
    no_contact_on_holidays = models.BooleanField(_("no contact on public holidays"), default=False)
    default_language = models.CharField(
        _("default language"),
        max_length=10,
        choices=Customer.Language.choices,
        default=Customer.Language.ZH_HANS,
    )
    max_send_attempts = models.PositiveSmallIntegerField(_("send attempts before failing"), default=3)
    retry_backoff_seconds = models.PositiveIntegerField(_("first retry after (seconds)"), default=300)
    expire_after_hours = models.PositiveSmallIntegerField(
        _("planned contact expires after (hours)"),
        default=48,
        help_text=_("A contact still unsent this long after its time is dropped as expired."),
    )
    # Regulation F 1006.6(e): every SMS and email carries a simple way to opt out. The line of the message's
    # language is appended when the template does not carry it already (an email's names {unsubscribe_link}).
    sms_opt_out_line_zh_hans = models.CharField(
        _("SMS opt-out line (Chinese)"), max_length=100, default="回复TD退订"
    )
    sms_opt_out_line_en = models.CharField(
        _("SMS opt-out line (English)"), max_length=100, default="Reply STOP to opt out"
    )
    email_opt_out_line_zh_hans = models.CharField(
        _("email opt-out line (Chinese)"), max_length=200, default="退订：{unsubscribe_link}"
    )
    email_opt_out_line_en = models.CharField(
        _("email opt-out line (English)"), max_length=200, default="Unsubscribe: {unsubscribe_link}"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("contact policy")
        verbose_name_plural = _("contact policy")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="contact_policy_single_row")]

    def __str__(self):
        return str(_("Contact policy"))

    def clean(self):
        errors = self.rules_errors()
        if self.holiday_country:
            import holidays

            if self.holiday_country.upper() not in holidays.list_supported_countries():
                errors["holiday_country"] = _("Unknown country code.")
        if self.no_contact_on_holidays and not self.holiday_country:
            errors["holiday_country"] = _("Name the country whose public holidays have no contact.")
        from .templating import validate_template_text

        for channel, language in OPT_OUT_LINES:
            name = f"{channel}_opt_out_line_{language.replace('-', '_')}"
            line = getattr(self, name) or ""
            try:
                validate_template_text(line)
            except ValidationError as exc:
                errors[name] = exc.messages
                continue
            if not line.strip():
                errors[name] = _("Every SMS and email must carry a way to opt out.")
            elif channel == Channel.EMAIL and "{unsubscribe_link}" not in line:
                errors[name] = _("An email's opt-out line must carry the {unsubscribe_link}.")
        if errors:
            raise ValidationError(errors)

    def opt_out_line(self, channel: str, language: str) -> str:
        """The opt-out line of an SMS or email in ``language`` (English when the language has none); "" for a
        channel without one (push: the app's own settings)."""
        if (channel, language) not in OPT_OUT_LINES:
            language = Customer.Language.EN
        if (channel, language) not in OPT_OUT_LINES:
            return ""
        return getattr(self, f"{channel}_opt_out_line_{language.replace('-', '_')}")

    @classmethod
    def get(cls) -> ContactPolicy:
        policy, _created = cls.objects.get_or_create(id=1)
        return policy


class JurisdictionPolicy(ContactRules):
    """The contact rules of one country, chosen by the customer's location (phone country, zones): the legal
    floor there. A customer gets the strictest of the contact policy and every jurisdiction their location
    points at."""

    country = models.CharField(
        _("country"),
        max_length=2,
        unique=True,
        help_text=_("ISO 3166 code of the phone number or zone: US, CN."),
    )
    name = models.CharField(_("name"), max_length=100)
    source = models.CharField(
        _("source"), max_length=300, blank=True, help_text=_("Where the values come from (a regulation).")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["country"]
        verbose_name = _("jurisdiction's contact rules")
        verbose_name_plural = _("jurisdictions' contact rules")

    def __str__(self):
        return f"{self.country} · {self.name}"

    def save(self, *args, **kwargs):
        self.country = (self.country or "").upper()
        super().save(*args, **kwargs)


class NotificationLogQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status__in=NotificationLog.PENDING_STATUSES)

    def counted_for_cap(self):
        return self.filter(status__in=NotificationLog.CONTACTED_STATUSES)


class NotificationLog(models.Model):
    """One planned contact and its fate. Never deleted: a contact held back stays here with its reason."""

    class Status(models.TextChoices):
        PLANNED = "planned", _("Planned")
        DEFERRED = "deferred", _("Deferred")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        SUPPRESSED = "suppressed", _("Suppressed")
        CANCELLED = "cancelled", _("Cancelled")

    class Reason(models.TextChoices):
        NONE = "", _("—")
        OUTSIDE_CONTACT_WINDOW = "outside_contact_window", _("Outside the contact window")
        FREQUENCY_CAP = "frequency_cap", _("Weekly contact cap reached")
        OPTED_OUT = "opted_out", _("Customer opted out of the channel")
        DO_NOT_CONTACT = "do_not_contact", _("Customer must not be contacted")
        PAID = "paid", _("Already paid")
        NO_DESTINATION = "no_destination", _("No phone, email or device to send to")
        NO_TEMPLATE = "no_template", _("No template for this kind and channel")
        TIER_CHANGED = "tier_changed", _("Credit tier changed")
        PROVIDER_ERROR = "provider_error", _("The provider failed")
        EXPIRED = "expired", _("Not sent in time")
        CALL_LIMIT = "call_limit", _("Call limit reached")

    PENDING_STATUSES = (Status.PLANNED, Status.DEFERRED)
    CONTACTED_STATUSES = (Status.SENT, Status.DELIVERED)

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="notifications")
    installments = models.ManyToManyField(
        Installment, through="NotificationItem", related_name="notifications"
    )
    tier = models.ForeignKey(CreditTier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PLANNED)
    reason = models.CharField(_("reason"), max_length=32, choices=Reason.choices, blank=True, default="")
    due_date = models.DateField(_("due date"), null=True, blank=True)
    offset_days = models.SmallIntegerField(_("offset (days)"), null=True, blank=True)
    scheduled_for = models.DateTimeField(_("scheduled for"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    destination = models.CharField(_("destination"), max_length=255, blank=True)
    language = models.CharField(_("language"), max_length=10, blank=True)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("body"), blank=True)
    loan_refs = models.CharField(
        _("loans"), max_length=500, blank=True, help_text=_("Comma-separated loan references.")
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    # Sent to the provider so a retry after a crash between sending and recording is recognised, not re-sent.
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # What makes a planned contact unique (customer, due date, rule...): planning twice adds nothing.
    dedupe_key = models.CharField(max_length=200, unique=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NotificationLogQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notification log")
        permissions = [("export_notificationlog", "Can export the notification log")]
        indexes = [
            models.Index(
                fields=["scheduled_for"],
                condition=Q(status__in=["planned", "deferred"]),
                name="notif_pending_due_idx",
            ),
            models.Index(fields=["customer", "sent_at"], name="notif_customer_sent_idx"),
            models.Index(fields=["customer", "-scheduled_for"], name="notif_customer_timeline_idx"),
            models.Index(fields=["-scheduled_for", "-id"], name="notif_changelist_idx"),
            models.Index(fields=["status", "-scheduled_for"], name="notif_status_idx"),
            # The compliance officer's usual filter (held back, by reason), in the changelist's order.
            models.Index(fields=["status", "reason", "-scheduled_for"], name="notif_status_reason_idx"),
            models.Index(fields=["provider_message_id"], name="notif_provider_id_idx"),
        ]

    def __str__(self):
        return f"{self.channel} {self.kind} to {self.customer_id} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status in self.PENDING_STATUSES


class NotificationItem(models.Model):
    """Which instalments a (possibly consolidated) contact is about."""

    notification = models.ForeignKey(NotificationLog, on_delete=models.CASCADE, related_name="items")
    installment = models.ForeignKey(Installment, on_delete=models.PROTECT, related_name="notification_items")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "installment"], name="notif_item_unique")
        ]
        indexes = [models.Index(fields=["installment"], name="notif_item_installment_idx")]

    def __str__(self):
        return f"{self.notification_id}: {self.installment_id}"


class OutboxMessage(models.Model):
    """What the default delivery backend "sent": kept in the database so the demo shows every message."""

    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    destination = models.CharField(_("destination"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("body"))
    idempotency_key = models.UUIDField(unique=True)
    provider_message_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox")

    def __str__(self):
        # Not the destination: this text is the admin's page title, breadcrumb and history heading, which
        # viewers who may not see personal data see too.
        return f"{self.channel} {self.provider_message_id}"
