"""Names shared by the reminder engine and collections (stable: they appear in exports)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    EMAIL = "email", _("Email")
    PUSH = "push", _("App push")
    CALL = "call", _("Call")

    @classmethod
    def messaging_choices(cls):
        """Channels a template or rule can use (a call is a collector's task, not a message)."""
        return [(c.value, c.label) for c in (cls.SMS, cls.EMAIL, cls.PUSH)]


# The channels a message goes on (a call is a collector's task).
MESSAGING_CHANNELS = (Channel.SMS.value, Channel.EMAIL.value, Channel.PUSH.value)


class Kind(models.TextChoices):
    PRE_DUE = "pre_due", _("Before the due date")
    DUE_TODAY = "due_today", _("Due today")
    GRACE = "grace", _("In grace period")
    OVERDUE = "overdue", _("Overdue")
    AUTODEBIT_FAILED = "autodebit_failed", _("Auto-debit failed")
    PROMISE_REMINDER = "promise_reminder", _("Promise to pay reminder")
