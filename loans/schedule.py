"""An instalment's standing over plain values: its state, days past due, DPD bucket and the end of its grace.

An instalment is ``upcoming`` before its due date, ``due`` on it, in ``grace`` while the days past due (DPD,
counted from the due date in the customer's local calendar) are within the tier's grace period, ``overdue``
after it, and ``paid`` once covered. ``Installment.state(on)``, ``.days_past_due(on)`` and ``.grace_end(tier)``
answer for one instalment; bulk paths (the daily jobs, the preview) call these functions over the values they
gathered. Nothing here reads the clock or the database.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

# The product's grace period for a customer without a tier (a tier's own default is the same).
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


def local_day(on: dt.date | dt.datetime, tz_name: str) -> dt.date:
    """``on`` as a calendar day of the zone ``tz_name``: a moment is read in that zone, a date is taken as it is."""
    return local_date(on, tz_name) if isinstance(on, dt.datetime) else on


def days_past_due(due_date: dt.date, today: dt.date) -> int:
    """Days past the due date (0 on or before it)."""
    return max((today - due_date).days, 0)


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def days_past_due_q(at: dt.datetime, first: int, last: int | None, *, date_field: str, zone_field: str) -> Q:
    """A filter for rows whose days past due at the moment ``at`` lie in ``[first, last]`` (``last`` None: no
    end), counted from the date in ``date_field`` in the calendar of the zone named by ``zone_field``.

    ``days_past_due`` as a condition on the counted-from date: at one moment the world's calendars show at most
    three days, so the rows are split by the day their zone shows (the zones of the commonest day are the
    rest, so a zone this list does not know is read as most are). ``first`` is at least 1."""
    by_day: dict[dt.date, list[str]] = {}
    for name in _zone_names():
        by_day.setdefault(local_date(at, name), []).append(name)
    days = sorted(by_day, key=lambda day: -len(by_day[day]))

    def counted_from(day: dt.date) -> Q:
        q = Q(**{f"{date_field}__lte": day - dt.timedelta(days=first)})
        if last is not None:
            q &= Q(**{f"{date_field}__gte": day - dt.timedelta(days=last)})
        return q

    others = [name for day in days[1:] for name in by_day[day]]
    q = counted_from(days[0]) & ~Q(**{f"{zone_field}__in": others})
    for day in days[1:]:
        q |= counted_from(day) & Q(**{f"{zone_field}__in": by_day[day]})
    return q


# Each past-due bucket's days past due, first and last (None: no end): ``dpd_bucket`` and the filters on days
# past due (the call queue's DPD bucket) read the same bounds.
DPD_BUCKET_BOUNDS: dict[DpdBucket, tuple[int, int | None]] = {
    DpdBucket.B1_30: (1, 30),
    DpdBucket.B31_60: (31, 60),
    DpdBucket.B61_90: (61, 90),
    DpdBucket.B90_PLUS: (91, None),
}


def dpd_bucket(dpd: int) -> DpdBucket:
    for bucket, (first, last) in DPD_BUCKET_BOUNDS.items():
        if first <= dpd and (last is None or dpd <= last):
            return bucket
    return DpdBucket.CURRENT


def grace_days_of(tier) -> int:
    """The grace period of ``tier`` (a ``CreditTier`` or None: a customer without a tier has the default)."""
    return tier.grace_period_days if tier is not None else DEFAULT_GRACE_PERIOD_DAYS


def grace_end_date(due_date: dt.date, grace_period_days: int) -> dt.date:
    """The last day of grace: the day after it the instalment is overdue."""
    return due_date + dt.timedelta(days=grace_period_days)


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


def unpaid_at_q(moment: dt.datetime) -> Q:
    """Instalments not yet paid in full at ``moment``: unpaid, or paid at or after it."""
    return Q(paid_at__isnull=True) | Q(paid_at__gte=moment)


def unpaid_after_q(day) -> Q:
    """Instalments not paid by the end of ``day`` (a date, or an expression of the row such as its due date plus
    some days): unpaid, or paid on a later day (in the active time zone)."""
    return Q(paid_at__isnull=True) | Q(paid_at__date__gt=day)


def went_overdue_q() -> Q:
    """Instalments not paid by their due date: unpaid, or paid on a later day (in the active time zone).
    The cure rate counts them (``loans.rates``), and the instalment list's "went overdue" filter shows them."""
    return unpaid_after_q(F("due_date"))
