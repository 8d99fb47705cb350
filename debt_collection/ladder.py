"""The derived state of an instalment and where an overdue loan stands on its tier's ladder.

An instalment is ``upcoming`` before its due date, ``due`` on it, in ``grace`` while the days past due (DPD,
counted from the due date in the customer's local calendar) are within the tier's grace period, ``overdue``
after it, and ``paid`` once covered. Nothing here writes: the services decide, these functions describe.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

DEFAULT_GRACE_PERIOD_DAYS = 3


class InstallmentState(models.TextChoices):
    UPCOMING = "upcoming", _("Upcoming")
    DUE = "due", _("Due today")
    GRACE = "grace", _("In grace period")
    OVERDUE = "overdue", _("Overdue")
    PAID = "paid", _("Paid")


class DpdBucket(models.TextChoices):
    CURRENT = "", _("Not past due")
    B1_30 = "1-30", "1-30"
    B31_60 = "31-60", "31-60"
    B61_90 = "61-90", "61-90"
    B90_PLUS = "90+", "90+"


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_date(at: dt.datetime, tz_name: str) -> dt.date:
    """The customer's calendar day that holds the moment ``at``."""
    return at.astimezone(zone(tz_name)).date()


def days_past_due(due_date: dt.date, today: dt.date) -> int:
    """Days past the due date (0 on or before it)."""
    return max((today - due_date).days, 0)


def dpd_bucket(dpd: int) -> str:
    if dpd <= 0:
        return DpdBucket.CURRENT
    if dpd <= 30:
        return DpdBucket.B1_30
    if dpd <= 60:
        return DpdBucket.B31_60
    if dpd <= 90:
        return DpdBucket.B61_90
    return DpdBucket.B90_PLUS


def grace_days_of(tier) -> int:
    return tier.grace_period_days if tier is not None else DEFAULT_GRACE_PERIOD_DAYS


def installment_state(
    *, due_date: dt.date, today: dt.date, grace_period_days: int, is_paid: bool = False
) -> InstallmentState:
    if is_paid:
        return InstallmentState.PAID
    if today < due_date:
        return InstallmentState.UPCOMING
    if today == due_date:
        return InstallmentState.DUE
    if days_past_due(due_date, today) <= grace_period_days:
        return InstallmentState.GRACE
    return InstallmentState.OVERDUE


def state_of(installment, at: dt.datetime) -> InstallmentState:
    """The state of an ``Installment`` at the moment ``at`` (uses its customer's time zone and tier)."""
    customer = installment.loan.customer
    return installment_state(
        due_date=installment.due_date,
        today=local_date(at, customer.timezone),
        grace_period_days=grace_days_of(customer.tier),
        is_paid=installment.paid_at is not None,
    )


def grace_end_date(due_date: dt.date, grace_period_days: int) -> dt.date:
    """The last day of grace: the day after it the instalment is overdue."""
    return due_date + dt.timedelta(days=grace_period_days)


def overdue_q(today: dt.date, tiers: Iterable, prefix: str = "") -> Q:
    """A filter for unpaid instalments past their tier's grace period on ``today`` (one condition per tier).

    ``prefix`` is the path from the queried model to the instalment (``""`` for ``Installment`` itself).
    Customers without a tier use the default grace period.
    """
    p = prefix
    q = Q(
        **{
            f"{p}loan__customer__tier__isnull": True,
            f"{p}due_date__lt": today - dt.timedelta(days=DEFAULT_GRACE_PERIOD_DAYS),
        }
    )
    for tier in tiers:
        q |= Q(
            **{
                f"{p}loan__customer__tier": tier,
                f"{p}due_date__lt": today - dt.timedelta(days=tier.grace_period_days),
            }
        )
    return Q(**{f"{p}paid_at__isnull": True}) & q
