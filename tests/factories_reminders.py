"""Factories of the reminder engine: rules, templates, the contact policy, local moments."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from notifications.models import ContactPolicy, NotificationLog, ReminderRule, ReminderTemplate
from notifications.planning import plan_contacts

from .factories import make_customer, make_installment, make_loan, make_tier

SHANGHAI = "Asia/Shanghai"
LOS_ANGELES = "America/Los_Angeles"


def local(tz_name: str, year, month, day, hour=0, minute=0) -> dt.datetime:
    """The UTC moment of a local wall-clock time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=zoneinfo.ZoneInfo(tz_name)).astimezone(dt.UTC)


def kind_for(offset_days: int) -> str:
    return "pre_due" if offset_days < 0 else "due_today" if offset_days == 0 else "grace"


def make_rule(tier, offset_days: int, channel: str = "sms", **kwargs) -> ReminderRule:
    kwargs.setdefault("kind", kind_for(offset_days))
    kwargs.setdefault("send_time", dt.time(10, 0))
    return ReminderRule.objects.create(tier=tier, offset_days=offset_days, channel=channel, **kwargs)


def make_template(
    kind: str = "pre_due", channel: str = "sms", language: str = "zh-hans", **kwargs
) -> ReminderTemplate:
    kwargs.setdefault("subject", "" if channel == "sms" else "Repayment reminder")
    kwargs.setdefault("body", "{customer_name}: {amount_due} {currency} due {due_date}.\n{loans}")
    return ReminderTemplate.objects.create(kind=kind, channel=channel, language=language, **kwargs)


def set_policy(**kwargs) -> ContactPolicy:
    policy = ContactPolicy.get()
    for key, value in kwargs.items():
        setattr(policy, key, value)
    policy.save()
    return policy


def make_debtor(tier=None, *, loans: int = 1, due_date=dt.date(2026, 12, 1), **customer_kwargs):
    """A customer of ``tier`` with ``loans`` active loans, each with one instalment due on ``due_date``."""
    tier = tier or make_tier()
    customer = make_customer(tier=tier, **customer_kwargs)
    installments = [make_installment(make_loan(customer), due_date=due_date) for _ in range(loans)]
    return customer, installments


def logs_of(customer) -> list[NotificationLog]:
    return list(NotificationLog.objects.filter(customer=customer).order_by("channel", "id"))


def pre_due_debtor(channel_order: str, *, tier_kwargs=None, plan_at=None, **customer_kwargs):
    """A customer of a tier with ``channel_order`` whose pre-due reminder (3 days before 2026-12-01, on the first
    channel of the order) is planned, with a template on every channel of the order. Returns the customer and
    their instalments."""
    channels = channel_order.split(",")
    tier = make_tier(channel_order=channel_order, **(tier_kwargs or {}))
    make_rule(tier, -3, channels[0])
    for channel in channels:
        make_template("pre_due", channel, "zh-hans")
    customer, installments = make_debtor(tier, due_date=dt.date(2026, 12, 1), **customer_kwargs)
    plan_contacts(plan_at or local(SHANGHAI, 2026, 11, 28, 0, 30))
    return customer, installments
