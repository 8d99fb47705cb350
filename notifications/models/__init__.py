"""Reminder engine: templates and per-tier rules (``rules``), the contact policy and jurisdictions' rules
(``policy``), the notification log and the outbox (``log``)."""

from .log import NotificationItem, NotificationLog, NotificationLogQuerySet, OutboxMessage, ParkedReceipt
from .policy import (
    DEFAULT_VOICEMAIL_TEXT,
    OPT_OUT_LINES,
    ContactPolicy,
    ContactRules,
    JurisdictionPolicy,
    validate_voicemail_text,
)
from .rules import ReminderRule, ReminderTemplate

__all__ = [
    "DEFAULT_VOICEMAIL_TEXT",
    "OPT_OUT_LINES",
    "ContactPolicy",
    "ContactRules",
    "JurisdictionPolicy",
    "NotificationItem",
    "NotificationLog",
    "NotificationLogQuerySet",
    "OutboxMessage",
    "ParkedReceipt",
    "ReminderRule",
    "ReminderTemplate",
    "validate_voicemail_text",
]
