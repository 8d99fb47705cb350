"""The compliance gates the dispatcher checks at send time: contact window, public holidays, weekly cap.

Times come in and go out aware (UTC in the database); the customer's local time is only used here, to decide.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterable

from django.db.models import Count

from .models import ContactPolicy, NotificationLog

CAP_WINDOW = dt.timedelta(days=7)
# How far ahead to look for an opening (a long holiday season plus weekends is far below this).
MAX_DAYS_AHEAD = 60


@functools.lru_cache(maxsize=64)
def _holidays_of(country: str, year: int):
    import holidays

    return holidays.country_holidays(country, years=year)


def is_holiday(day: dt.date, policy: ContactPolicy) -> bool:
    """True when the policy forbids contact on public holidays and ``day`` is one in its country."""
    if not (policy.no_contact_on_holidays and policy.holiday_country):
        return False
    return day in _holidays_of(policy.holiday_country.upper(), day.year)


def is_within_contact_window(tz_name: str, at: dt.datetime, policy: ContactPolicy) -> bool:
    """Whether ``at`` falls in the window (start inclusive, end exclusive) of the customer's local day."""
    local = at.astimezone(zoneinfo.ZoneInfo(tz_name))
    if is_holiday(local.date(), policy):
        return False
    return policy.window_start <= local.time().replace(tzinfo=None) < policy.window_end


def next_window_opening(tz_name: str, at: dt.datetime, policy: ContactPolicy) -> dt.datetime:
    """The first moment at or after ``at`` inside the contact window, in UTC (``at`` itself when open now).

    Days that are public holidays (when the policy says so) are skipped. Raises ValueError when no opening
    exists in the next ``MAX_DAYS_AHEAD`` days (a misconfigured policy).
    """
    if is_within_contact_window(tz_name, at, policy):
        return at
    zone = zoneinfo.ZoneInfo(tz_name)
    local_day = at.astimezone(zone).date()
    for ahead in range(MAX_DAYS_AHEAD + 1):
        day = local_day + dt.timedelta(days=ahead)
        if is_holiday(day, policy):
            continue
        opening = dt.datetime.combine(day, policy.window_start, tzinfo=zone).astimezone(dt.UTC)
        if opening > at:
            return opening
    raise ValueError(
        f"No contact window opens within {MAX_DAYS_AHEAD} days of {at.isoformat()} in {tz_name}."
    )


def contacts_in_last_7_days(customer_ids: Iterable[int], now: dt.datetime) -> dict[int, int]:
    """Contacts (sent or delivered, all loans, all channels) per customer in the rolling 7 days up to ``now``.

    One query for any number of customers; customers without a contact are absent (count 0).
    """
    rows = (
        NotificationLog.objects.counted_for_cap()
        .filter(customer_id__any_of=list(customer_ids), sent_at__gt=now - CAP_WINDOW, sent_at__lte=now)
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
    )
    return {row["customer_id"]: row["n"] for row in rows}


def is_over_weekly_cap(sent_in_window: int, max_contacts_per_week: int | None) -> bool:
    return max_contacts_per_week is not None and sent_in_window >= max_contacts_per_week


def contacts_in_flight(
    customer_ids: Iterable[int], now: dt.datetime, exclude_ids: Iterable[int]
) -> dict[int, list[tuple[dt.datetime, int]]]:
    """Due contacts of these customers that another worker has claimed and may be sending right now, as
    ``(scheduled_for, id)`` per customer (one query).

    Several workers dispatch at once (the minute sweep and the chunks of the daily run): the weekly cap of a
    customer whose contacts were split between workers counts the ones claimed elsewhere that come first in
    the dispatch order, so two workers never both send the customer's last allowed contact.
    """
    rows = (
        NotificationLog.objects.pending()
        .filter(customer_id__any_of=list(customer_ids), scheduled_for__lte=now, claimed_until__gt=now)
        .exclude(id__any_of=list(exclude_ids))
        .order_by()
        .values_list("customer_id", "scheduled_for", "id")
    )
    in_flight: dict[int, list[tuple[dt.datetime, int]]] = {}
    for customer_id, scheduled_for, id_ in rows:
        in_flight.setdefault(customer_id, []).append((scheduled_for, id_))
    return in_flight
