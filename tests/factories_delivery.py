"""Factories for delivery tests: contacts already handed to a provider."""

from __future__ import annotations

import datetime as dt
import itertools

from notifications.models import NotificationLog

from .factories import make_customer

_seq = itertools.count(1)


def make_sent_notification(customer=None, **kwargs) -> NotificationLog:
    n = next(_seq)
    customer = customer or make_customer()
    kwargs.setdefault("channel", "sms")
    kwargs.setdefault("kind", "pre_due")
    kwargs.setdefault("status", NotificationLog.Status.SENT)
    kwargs.setdefault("scheduled_for", dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.timezone.utc))
    kwargs.setdefault("sent_at", kwargs["scheduled_for"])
    kwargs.setdefault("destination", customer.destination(kwargs["channel"]))
    kwargs.setdefault("body", "Your instalment is due soon.")
    kwargs.setdefault("provider_message_id", f"pm-{n}")
    kwargs.setdefault("dedupe_key", f"test-delivery:{n}")
    kwargs.setdefault("attempts", 1)
    return NotificationLog.objects.create(customer=customer, **kwargs)
