"""The ladder's rule (which steps a case performs) and the derived state of an instalment.

An instalment is ``upcoming`` before its due date, ``due`` on it, in ``grace`` while the days past due (DPD,
counted from the due date in the customer's local calendar) are within the tier's grace period, ``overdue``
after it, and ``paid`` once covered. Nothing here writes: the services decide, these functions describe.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from typing import Protocol, TypeVar

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


class Step(Protocol):
    min_dpd: int


S = TypeVar("S", bound=Step)


def steps_to_perform(
    steps: Sequence[S], dpd: int, grace: int, done: Collection[S]
) -> tuple[list[S], list[S]]:
    """The ladder steps a case performs at ``dpd`` days past due, and those it passes over (SPEC.md).

    Nothing is reached inside the grace period (``dpd <= grace``). Of the steps reached (``min_dpd <= dpd``)
    and not ``done`` yet, only those of the highest ``min_dpd`` are performed (all of them when several share
    it); the lower ones are skipped, never sent as a burst. Both lists keep the order of ``steps``. Used by the
    daily advance, by a tier change (whether the new ladder reaches a call) and by the policy preview.
    """
    if dpd <= grace:
        return [], []
    reached = [s for s in steps if s.min_dpd <= dpd and s not in done]
    if not reached:
        return [], []
    top = max(s.min_dpd for s in reached)
    return [s for s in reached if s.min_dpd == top], [s for s in reached if s.min_dpd < top]
