"""What operations write: the reminder templates and the per-tier reminder rules."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import CreditTier, Customer

from ..choices import Channel, Kind
from ..templating import validate_template_text


class ReminderTemplate(models.Model):
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.messaging_choices())
    language = models.CharField(_("language"), max_length=10, choices=Customer.Language.choices)
    subject = models.CharField(_("subject"), max_length=200, blank=True, help_text=_("Email and push only."))
    body = models.TextField(_("body"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

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
        validate_template_text(self.subject or "")
        validate_template_text(self.body or "")
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
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
        # Inside the grace period a late payment is not yet overdue: only grace reminders go out.
        if (
            self.kind in (Kind.GRACE, Kind.OVERDUE)
            and self.tier_id
            and not self.fits_grace_period(self.tier.grace_period_days)
        ):
            values = {"offset": self.offset_days, "grace": self.tier.grace_period_days}
            if self.kind == Kind.GRACE:
                message = _("Day %(offset)s is past the tier's grace period of %(grace)s days.") % values
            else:
                message = (
                    _(
                        "Day %(offset)s is inside the tier's grace period of %(grace)s days: "
                        "use a grace reminder, or a day after the grace period."
                    )
                    % values
                )
            raise ValidationError({"offset_days": message})

    def fits_grace_period(self, grace_period_days: int) -> bool:
        """Whether the rule's kind suits its day: inside the grace period only grace reminders, after it none."""
        if self.offset_days <= 0:
            return self.kind not in (Kind.GRACE, Kind.OVERDUE)
        if self.offset_days <= grace_period_days:
            return self.kind == Kind.GRACE
        return self.kind != Kind.GRACE
