"""The contact rules: the lender's contact policy (one row) and each jurisdiction's rules, with the
limited-content voicemail they hold."""

from __future__ import annotations

import datetime as dt
import string

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import Customer

from ..choices import Channel
from ..templating import validate_template_text

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
        from ..compliance import Rules, Window

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
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

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
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["country"]
        verbose_name = _("jurisdiction's contact rules")
        verbose_name_plural = _("jurisdictions' contact rules")

    def __str__(self):
        return f"{self.country} · {self.name}"

    def save(self, *args, **kwargs):
        self.country = (self.country or "").upper()
        super().save(*args, **kwargs)
