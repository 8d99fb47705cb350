"""The contact window as a pure rule: ``allowed_at(instant, zones, window)`` and ``next_opening``, in every zone
the customer may be in (Regulation F 1006.6(b)(1)(i) and comment 6(b)(1)(i)-2)."""

from __future__ import annotations

import datetime as dt

import pytest

from loans.locations import calendar_zone, locate
from notifications.compliance import Rules, Window, allowed_at, next_opening, rules_for, strictest

from .factories_reminders import LOS_ANGELES, SHANGHAI, local

DEFAULT = Window(dt.time(8, 0), dt.time(21, 0))
BOTH = (SHANGHAI, LOS_ANGELES)


@pytest.mark.parametrize(
    "hour, minute, is_open",
    [(7, 59, False), (8, 0, True), (12, 0, True), (20, 59, True), (21, 0, False), (23, 30, False)],
)
def test_the_default_window_is_eight_to_nine_in_the_customers_local_time(hour, minute, is_open):
    assert allowed_at(local(SHANGHAI, 2026, 11, 30, hour, minute), [SHANGHAI], DEFAULT) is is_open
    assert allowed_at(local(LOS_ANGELES, 2026, 11, 30, hour, minute), [LOS_ANGELES], DEFAULT) is is_open


@pytest.mark.parametrize(
    "zone, hour, minute, is_open",
    [
        # The cases: a time convenient in the stored zone but not in the phone's.
        (LOS_ANGELES, 22, 5, False),  # 14:05 in Shanghai
        (LOS_ANGELES, 1, 5, False),  # 17:05 in Shanghai
        (SHANGHAI, 1, 5, False),  # 09:05 the day before in Los Angeles
        (SHANGHAI, 22, 5, False),  # 06:05 in Los Angeles
        # Where both windows overlap (Shanghai 08:00-13:00 = Los Angeles 16:00-21:00 in November).
        (SHANGHAI, 8, 0, True),
        (SHANGHAI, 12, 59, True),
        (LOS_ANGELES, 16, 0, True),
        (SHANGHAI, 13, 0, False),
        (LOS_ANGELES, 15, 59, False),
    ],
)
def test_a_customer_who_may_be_in_two_zones_is_contacted_only_when_both_are_open(zone, hour, minute, is_open):
    assert allowed_at(local(zone, 2026, 11, 30, hour, minute), BOTH, DEFAULT) is is_open


def test_no_zone_at_all_is_never_allowed():
    assert allowed_at(local(SHANGHAI, 2026, 11, 30, 12), [], DEFAULT) is False


@pytest.mark.parametrize(
    "zones, at, expected",
    [
        ([SHANGHAI], local(SHANGHAI, 2026, 11, 30, 12), local(SHANGHAI, 2026, 11, 30, 12)),
        ([SHANGHAI], local(SHANGHAI, 2026, 11, 30, 6), local(SHANGHAI, 2026, 11, 30, 8)),
        ([SHANGHAI], local(SHANGHAI, 2026, 11, 30, 21), local(SHANGHAI, 2026, 12, 1, 8)),
        # 22:05 in Los Angeles (14:05 in Shanghai): the next moment both are open is 08:00 in Shanghai.
        (BOTH, local(LOS_ANGELES, 2026, 11, 30, 22, 5), local(SHANGHAI, 2026, 12, 2, 8)),
        # 01:05 in Shanghai (09:05 the day before in Los Angeles): Los Angeles opens with Shanghai at 08:00.
        (BOTH, local(SHANGHAI, 2026, 11, 30, 1, 5), local(SHANGHAI, 2026, 11, 30, 8)),
        # 14:00 in Shanghai (22:00 in Los Angeles): Shanghai opens again first, Los Angeles is open then.
        (BOTH, local(SHANGHAI, 2026, 11, 30, 14), local(SHANGHAI, 2026, 12, 1, 8)),
    ],
)
def test_the_next_opening_is_the_first_moment_open_in_every_zone(zones, at, expected):
    assert next_opening(at, zones, DEFAULT) == expected
    assert allowed_at(expected, zones, DEFAULT)


def test_the_next_opening_keeps_the_local_hour_across_the_dst_change():
    # 2026-10-31 22:00 in Los Angeles is daylight time; the next morning (Nov 1) is standard time.
    opening = next_opening(local(LOS_ANGELES, 2026, 10, 31, 22), [LOS_ANGELES], DEFAULT)
    assert opening == dt.datetime(2026, 11, 1, 16, 0, tzinfo=dt.UTC)


def test_windows_that_never_overlap_have_no_opening():
    morning = Window(dt.time(8, 0), dt.time(12, 0))  # Shanghai 00:00-04:00 UTC, Los Angeles 16:00-20:00 UTC
    assert next_opening(local(SHANGHAI, 2026, 11, 30, 6), BOTH, morning) is None


def test_public_holidays_are_closed_only_when_the_window_says_so():
    new_year = local(SHANGHAI, 2027, 1, 1, 10)
    assert allowed_at(new_year, [SHANGHAI], DEFAULT) is True
    closed = Window(dt.time(8, 0), dt.time(21, 0), holiday_country="CN")
    assert allowed_at(new_year, [SHANGHAI], closed) is False
    assert next_opening(new_year, [SHANGHAI], closed) > new_year
    assert allowed_at(local(SHANGHAI, 2027, 1, 5, 10), [SHANGHAI], closed) is True


@pytest.mark.parametrize(
    "stored, phone, zones, countries, assumed",
    [
        (SHANGHAI, "+14155550123", (LOS_ANGELES, SHANGHAI), ("CN", "US"), False),
        (LOS_ANGELES, "+8613800138000", (LOS_ANGELES, SHANGHAI), ("CN", "US"), False),
        (SHANGHAI, "+8613800138000", (SHANGHAI,), ("CN",), False),
        ("", "+14155550123", (LOS_ANGELES,), ("US",), False),  # no zone given: the phone's, not a guess
        ("", "", (SHANGHAI,), ("CN",), True),  # nothing known: the operators' zone, marked assumed
        ("", "not a number", (SHANGHAI,), ("CN",), True),
    ],
)
def test_the_zones_a_customer_may_be_in_come_from_every_source(stored, phone, zones, countries, assumed):
    location = locate(stored_zone=stored, phone=phone, default_zone=SHANGHAI)
    assert (location.zones, location.countries, location.is_assumed) == (zones, countries, assumed)
    audit = location.audit()
    assert audit["zones"] == list(zones)
    assert audit["zone_sources"]["stored"] == (stored or None)
    assert audit["zone_sources"]["assumed"] == (SHANGHAI if assumed else None)


def test_a_number_spanning_many_zones_keeps_them_all():
    location = locate(stored_zone="", phone="+18005550123", default_zone=SHANGHAI)  # toll-free: all of NANP
    assert LOS_ANGELES in location.zones and "America/New_York" in location.zones
    assert calendar_zone(phone="+18005550123", default_zone=SHANGHAI) == SHANGHAI
    assert calendar_zone(phone="+14155550123", default_zone=SHANGHAI) == LOS_ANGELES


US = Rules(Window(dt.time(8), dt.time(21)), 7, 7, 5, jurisdictions=("US",))
CN = Rules(Window(dt.time(8), dt.time(21)), 7, 7, 3, jurisdictions=("CN",))
POLICY = Rules(Window(dt.time(7), dt.time(22)), 10, 3, 6)


@pytest.mark.parametrize(
    "countries, jurisdictions, window, daily, pause",
    [
        (["US"], ("US",), "08:00-21:00", 5, 7),
        (["CN"], ("CN",), "08:00-21:00", 3, 7),
        (["CN", "US"], ("CN", "US"), "08:00-21:00", 3, 7),
        (["SG"], (), "07:00-22:00", 6, 3),  # no rules of its own: the lender's policy
        ([], (), "07:00-22:00", 6, 3),
    ],
)
def test_the_rules_are_the_strictest_of_the_policy_and_every_jurisdiction_of_the_location(
    countries, jurisdictions, window, daily, pause
):
    rules = rules_for(countries, {"US": US, "CN": CN}, POLICY)
    assert rules.jurisdictions == jurisdictions
    assert (rules.window.label(), rules.max_call_attempts_per_day) == (window, daily)
    assert rules.call_pause_days_after_conversation == pause
    assert rules.max_calls_per_debt_in_7_days == (7 if jurisdictions else 10)


def test_a_stricter_policy_narrows_every_jurisdiction():
    policy = Rules(Window(dt.time(9), dt.time(20)), 7, 7, 2)
    rules = strictest([US, policy])
    assert (rules.window.label(), rules.max_call_attempts_per_day) == ("09:00-20:00", 2)
