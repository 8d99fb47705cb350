"""Factories for the operator screens' tests: notification log rows and their items, made directly."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

from notifications.models import NotificationItem, NotificationLog

_seq = itertools.count(1)
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def local(day: dt.date, hour: int = 12, minute: int = 0, zone=SHANGHAI) -> dt.datetime:
    """An aware datetime at ``hour:minute`` local time of ``day``."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone)


def make_log(customer, *, installments=(), **kwargs) -> NotificationLog:
    n = next(_seq)
    kwargs.setdefault("channel", "sms")
    kwargs.setdefault("kind", "pre_due")
    kwargs.setdefault("status", NotificationLog.Status.PLANNED)
    kwargs.setdefault("scheduled_for", dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.timezone.utc))
    kwargs.setdefault("dedupe_key", f"test:{n}")
    kwargs.setdefault("destination", customer.destination(kwargs["channel"]))
    if installments and "loan_refs" not in kwargs:
        kwargs["loan_refs"] = ",".join(sorted({i.loan.ref for i in installments}))
    log = NotificationLog.objects.create(customer=customer, **kwargs)
    NotificationItem.objects.bulk_create(
        [NotificationItem(notification=log, installment=i) for i in installments]
    )
    return log
