"""The compliance gates, checked at the moment of a contact: a message when it is sent, a call when it is made.

Everything here that decides is a pure function over plain values (the window, the customer's zones, the calls
made); the gatherers at the bottom read what they need in bulk. Times come in and go out aware (UTC in the
database); a local time is only used here, to decide.

- ``allowed_at(instant, zones, window)`` / ``next_opening(instant, zones, window)``: the contact window, which
  must hold in EVERY zone the customer may be in (Regulation F 1006.6(b)(1)(i) and comment 6(b)(1)(i)-2).
- ``rules_for(countries, by_country, default)``: the contact rules for the customer's location: the lender's
  contact policy and the rules of every jurisdiction the location points at, the strictest of them all.
- ``window_gate``: the contact window as a decision; ``is_over_weekly_cap``: the weekly cap;
  ``call_limit_gate``: the call limits (1006.14(b)(2)). The chain that orders them is ``notifications.gates``.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db.models import Count

from .models import ContactPolicy, JurisdictionPolicy, NotificationLog

CAP_WINDOW = dt.timedelta(days=7)
# How far ahead to look for an opening (a long holiday season plus weekends is far below this).
MAX_DAYS_AHEAD = 60

Reason = NotificationLog.Reason


# --- values ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The local hours a contact may happen (start inclusive, end exclusive); closed on the public holidays of
    ``holiday_country`` when it is set."""

    start: dt.time
    end: dt.time
    holiday_country: str = ""

    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Rules:
    """The contact rules of one jurisdiction (or the strictest of several)."""

    window: Window
    max_calls_per_debt_in_7_days: int = 7
    call_pause_days_after_conversation: int = 7
    max_call_attempts_per_day: int = 3
    voicemail_text: str = ""
    jurisdictions: tuple[str, ...] = ()

    def audit(self) -> dict:
        return {
            "jurisdictions": list(self.jurisdictions),
            "window": self.window.label(),
            "holiday_country": self.window.holiday_country,
        }


@dataclass(frozen=True)
class Verdict:
    """What one of the checks here says: allowed, or not with its reason code, the inputs that decided it, and
    the first moment the answer may change (None: not by waiting). ``notifications.gates`` turns it into the
    chain's ``Decision``."""

    allowed: bool
    reason: str = ""
    inputs: dict = field(default_factory=dict)
    not_before: dt.datetime | None = None


ALLOWED = Verdict(True)


# --- the contact window --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _holidays_of(country: str, year: int):
    import holidays

    return holidays.country_holidays(country, years=year)


def is_holiday(day: dt.date, country: str) -> bool:
    """True when ``day`` is a public holiday of ``country`` ("" for none)."""
    return bool(country) and day in _holidays_of(country.upper(), day.year)


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _open_in(instant: dt.datetime, zone: str, window: Window) -> bool:
    local = instant.astimezone(_zone(zone))
    if is_holiday(local.date(), window.holiday_country):
        return False
    return window.start <= local.time().replace(tzinfo=None) < window.end


def allowed_at(instant: dt.datetime, zones: Iterable[str], window: Window) -> bool:
    """Whether ``instant`` is inside the window in every one of ``zones`` (a customer who may be in several
    places may be contacted only at a time convenient in all of them). No zone at all is never allowed: the
    caller must say where the customer may be (``loans.locations.locate`` always does)."""
    zones = tuple(zones)
    return bool(zones) and all(_open_in(instant, zone, window) for zone in zones)


def next_opening(instant: dt.datetime, zones: Iterable[str], window: Window) -> dt.datetime | None:
    """The first moment at or after ``instant`` allowed in every zone (``instant`` itself when allowed now), in
    UTC; None when the zones' windows never overlap within ``MAX_DAYS_AHEAD`` days (such a contact can never be
    made at a convenient time, and is not).

    Where several windows overlap, the overlap starts when the last of them opens: the candidates are each zone's
    openings, tried in time order."""
    zones = tuple(sorted(set(zones)))
    if allowed_at(instant, zones, window):
        return instant
    if not zones or window.start >= window.end:
        return None
    candidates = set()
    for zone in zones:
        tz = _zone(zone)
        local_day = instant.astimezone(tz).date()
        for ahead in range(MAX_DAYS_AHEAD + 1):
            opening = dt.datetime.combine(local_day + dt.timedelta(days=ahead), window.start, tzinfo=tz)
            opening = opening.astimezone(dt.UTC)
            if opening > instant:
                candidates.add(opening)
    for candidate in sorted(candidates):
        if allowed_at(candidate, zones, window):
            return candidate
    return None


def local_times(instant: dt.datetime, zones: Iterable[str]) -> dict[str, str]:
    """``instant`` on the wall clock of each zone (for the audit trail and the collector's queue)."""
    return {zone: instant.astimezone(_zone(zone)).isoformat() for zone in zones}


def window_gate(now: dt.datetime, location, rules: Rules) -> Verdict:
    """The contact window in every zone of ``location`` (a ``loans.locations.Location``)."""
    if allowed_at(now, location.zones, rules.window):
        return ALLOWED
    opening = next_opening(now, location.zones, rules.window)
    return Verdict(
        False,
        Reason.OUTSIDE_CONTACT_WINDOW,
        {
            **location.audit(),
            **rules.audit(),
            "local_times": local_times(now, location.zones),
            "deferred_to": opening,
        },
        opening,
    )


# --- the weekly cap ------------------------------------------------------------------------------------------
def is_over_weekly_cap(sent_in_window: int, max_contacts_per_week: int | None) -> bool:
    return max_contacts_per_week is not None and sent_in_window >= max_contacts_per_week


# --- jurisdictions --------------------------------------------------------------------------------------------
def strictest(rules: Iterable[Rules]) -> Rules:
    """One set of rules that satisfies each of ``rules``: the narrowest window, the lowest limits, the longest
    pause (a customer whose location points at several jurisdictions gets what all of them allow)."""
    rules = list(rules)
    first = rules[0]
    if len(rules) == 1:
        return first
    return Rules(
        window=Window(
            start=max(r.window.start for r in rules),
            end=min(r.window.end for r in rules),
            holiday_country=first.window.holiday_country,
        ),
        max_calls_per_debt_in_7_days=min(r.max_calls_per_debt_in_7_days for r in rules),
        call_pause_days_after_conversation=max(r.call_pause_days_after_conversation for r in rules),
        max_call_attempts_per_day=min(r.max_call_attempts_per_day for r in rules),
        voicemail_text=next((r.voicemail_text for r in rules if r.voicemail_text), ""),
        jurisdictions=tuple(sorted({j for r in rules for j in r.jurisdictions})),
    )


def rules_for(countries: Iterable[str], by_country: dict[str, Rules], default: Rules) -> Rules:
    """The rules for a customer whose location points at ``countries``: the lender's own contact policy
    (``default``, which applies to everyone) together with the rules of every one of those countries the product
    knows, the strictest of them all (a jurisdiction's rules are the legal floor where the customer may be)."""
    chosen = [by_country[c] for c in sorted(set(countries)) if c in by_country]
    return strictest([*chosen, default])


@dataclass
class RulesBook:
    """The contact policy and the jurisdictions' rules, loaded once per batch."""

    policy: ContactPolicy
    default: Rules
    by_country: dict[str, Rules]
    _by_countries: dict[tuple[str, ...], Rules] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, policy: ContactPolicy | None = None) -> RulesBook:
        # Not ContactPolicy.get(): reading the rules writes nothing (the preview and the gates only read).
        policy = policy or ContactPolicy.objects.filter(id=1).first() or ContactPolicy()
        holiday_country = policy.holiday_country if policy.no_contact_on_holidays else ""
        return cls(
            policy=policy,
            default=policy.rules(holiday_country=holiday_country, jurisdiction=""),
            by_country={
                j.country: j.rules(holiday_country=holiday_country, jurisdiction=j.country, fallback=policy)
                for j in JurisdictionPolicy.objects.all()
            },
        )

    def for_location(self, location) -> Rules:
        """``rules_for`` the location's countries, worked out once per set of countries (a book holds a few)."""
        countries = location.countries
        rules = self._by_countries.get(countries)
        if rules is None:
            rules = self._by_countries[countries] = rules_for(countries, self.by_country, self.default)
        return rules


# --- calls -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallMade:
    """A call attempt already made: when, and the loans it was about (the loan called about and those it
    covered)."""

    at: dt.datetime
    loan_ids: frozenset[int]
    is_conversation: bool = False


def _day_start(day: dt.date, zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=_zone(zone)).astimezone(dt.UTC)


def _calls_in_days(now: dt.datetime, calls: list[CallMade], zone: str, days: int) -> list[CallMade]:
    """The calls on the local days of ``zone`` from ``days - 1`` days before today through today."""
    today = now.astimezone(_zone(zone)).date()
    first = today - dt.timedelta(days=days - 1)
    return [c for c in calls if first <= c.at.astimezone(_zone(zone)).date() <= today and c.at <= now]


def call_limit_gate(
    now: dt.datetime, loan_id: int, calls_made: Iterable[CallMade], zones: tuple[str, ...], rules: Rules
) -> Verdict:
    """Regulation F 1006.14(b)(2) and the per-person daily limit, over the calls actually MADE (not scheduled):

    - no call about a debt within ``call_pause_days_after_conversation`` days after a telephone conversation
      about it, the day of the conversation counting as the first day (a conversation that covered several
      loans blocks calls about each);
    - no more than ``max_calls_per_debt_in_7_days`` calls about a debt within 7 consecutive days (a call that
      covered several loans counts for each);
    - no more than ``max_call_attempts_per_day`` call attempts to the person on one day, across loans.

    Days are the customer's local days, in every zone they may be in (``zones``; the latest answer wins)."""
    calls = [c for c in calls_made if c.at <= now]
    about_loan = [c for c in calls if loan_id in c.loan_ids]
    base = {**rules.audit(), "zones": list(zones), "loan_id": loan_id}

    pause = rules.call_pause_days_after_conversation
    conversations = [c for c in about_loan if c.is_conversation]
    if pause and conversations:
        last = max(c.at for c in conversations)
        until = max(_day_start(last.astimezone(_zone(z)).date() + dt.timedelta(days=pause), z) for z in zones)
        if now < until:
            return Verdict(
                False,
                Reason.CALL_LIMIT,
                {**base, "limit": "conversation", "last_conversation_at": last, "pause_days": pause},
                until,
            )

    limit = rules.max_calls_per_debt_in_7_days
    worst_count, until = 0, None
    for zone in zones:
        recent = sorted(c.at for c in _calls_in_days(now, about_loan, zone, 7))
        if len(recent) >= limit:
            # The window frees a call when the oldest call that keeps it full leaves the 7 days.
            freeing = recent[len(recent) - limit]
            free_at = _day_start(freeing.astimezone(_zone(zone)).date() + dt.timedelta(days=7), zone)
            until = max(until, free_at) if until else free_at
        worst_count = max(worst_count, len(recent))
    if until is not None:
        return Verdict(
            False,
            Reason.CALL_LIMIT,
            {**base, "limit": "calls_per_debt_in_7_days", "calls_in_7_days": worst_count, "max": limit},
            until,
        )

    daily = rules.max_call_attempts_per_day
    worst_count, until = 0, None
    for zone in zones:
        today = _calls_in_days(now, calls, zone, 1)
        if len(today) >= daily:
            tomorrow = _day_start(now.astimezone(_zone(zone)).date() + dt.timedelta(days=1), zone)
            until = max(until, tomorrow) if until else tomorrow
        worst_count = max(worst_count, len(today))
    if until is not None:
        return Verdict(
            False,
            Reason.CALL_LIMIT,
            {**base, "limit": "attempts_per_day", "attempts_today": worst_count, "max": daily},
            until,
        )
    return ALLOWED


# --- gathering --------------------------------------------------------------------------------------------
#: Functions ``(customer_ids, since, until) -> {customer_id: n}`` that count contacts made outside this app
#: (collections registers its call attempts): the weekly cap counts every contact, whatever its channel.
_contact_counters: list[Callable[[list[int], dt.datetime, dt.datetime], dict[int, int]]] = []


def register_contact_counter(
    counter: Callable[[list[int], dt.datetime, dt.datetime], dict[int, int]],
) -> None:
    if counter not in _contact_counters:
        _contact_counters.append(counter)


def contacts_in_last_7_days(customer_ids: Iterable[int], now: dt.datetime) -> dict[int, int]:
    """Contacts per customer in the rolling 7 days up to ``now``: messages sent or delivered (all loans, all
    channels) and call attempts made. A fixed number of queries for any number of customers; customers without a
    contact are absent (count 0)."""
    ids = list(customer_ids)
    rows = (
        NotificationLog.objects.counted_for_cap()
        .filter(customer_id__any_of=ids, sent_at__gt=now - CAP_WINDOW, sent_at__lte=now)
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
    )
    counts = {row["customer_id"]: row["n"] for row in rows}
    for counter in _contact_counters:
        for customer_id, n in counter(ids, now - CAP_WINDOW, now).items():
            counts[customer_id] = counts.get(customer_id, 0) + n
    return counts


def contacts_in_flight(
    customer_ids: Iterable[int], now: dt.datetime, exclude_ids: Iterable[int]
) -> dict[int, list[tuple[dt.datetime, int]]]:
    """Due contacts of these customers that another worker has claimed and may be sending right now, as
    ``(scheduled_for, id)`` per customer (one query).

    Several workers dispatch at once (the minute sweep and the chunks of the daily run): the weekly cap of a
    customer whose contacts were split between workers counts the ones claimed elsewhere that come first in
    the dispatch order, so two workers never both send the customer's last allowed contact.
    """
    # By the customers' index, the status kept here (see ``NotificationLogQuerySet.pending``).
    rows = (
        NotificationLog.objects.filter(
            customer_id__any_of=list(customer_ids), scheduled_for__lte=now, claimed_until__gt=now
        )
        .exclude(id__any_of=list(exclude_ids))
        .order_by()
        .values_list("customer_id", "scheduled_for", "id", "status")
    )
    in_flight: dict[int, list[tuple[dt.datetime, int]]] = {}
    for customer_id, scheduled_for, id_, status in rows:
        if NotificationLog.is_pending_status(status):
            in_flight.setdefault(customer_id, []).append((scheduled_for, id_))
    return in_flight
