from __future__ import annotations

import datetime as dt

import pytest

from notifications.compliance import is_within_contact_window, next_window_opening
from notifications.models import ContactPolicy

from .factories_reminders import LOS_ANGELES, SHANGHAI, local


def policy(**kwargs) -> ContactPolicy:
    return ContactPolicy(**kwargs)  # unsaved: the gates only read it


@pytest.mark.parametrize(
    "hour, minute, is_open",
    [(7, 59, False), (8, 0, True), (12, 0, True), (20, 59, True), (21, 0, False), (23, 30, False)],
)
def test_the_default_window_is_eight_to_nine_in_the_customers_local_time(hour, minute, is_open):
    assert (
        is_within_contact_window(SHANGHAI, local(SHANGHAI, 2026, 11, 30, hour, minute), policy()) is is_open
    )
    assert (
        is_within_contact_window(LOS_ANGELES, local(LOS_ANGELES, 2026, 11, 30, hour, minute), policy())
        is is_open
    )


def test_the_next_opening_is_now_when_open_later_today_or_tomorrow_morning():
    p = policy(window_start=dt.time(9, 0), window_end=dt.time(18, 0))
    noon = local(SHANGHAI, 2026, 11, 30, 12)
    assert next_window_opening(SHANGHAI, noon, p) == noon
    assert next_window_opening(SHANGHAI, local(SHANGHAI, 2026, 11, 30, 6), p) == local(
        SHANGHAI, 2026, 11, 30, 9
    )
    assert next_window_opening(SHANGHAI, local(SHANGHAI, 2026, 11, 30, 18), p) == local(
        SHANGHAI, 2026, 12, 1, 9
    )


def test_the_next_opening_keeps_the_local_hour_across_the_dst_change():
    # 2026-10-31 22:00 in Los Angeles is daylight time; the next morning (Nov 1) is standard time.
    opening = next_window_opening(LOS_ANGELES, local(LOS_ANGELES, 2026, 10, 31, 22), policy())
    assert opening == dt.datetime(2026, 11, 1, 16, 0, tzinfo=dt.UTC)


def test_public_holidays_are_closed_only_when_the_policy_says_so():
    new_year = local(SHANGHAI, 2027, 1, 1, 10)
    assert is_within_contact_window(SHANGHAI, new_year, policy(holiday_country="CN")) is True
    closed = policy(holiday_country="CN", no_contact_on_holidays=True)
    assert is_within_contact_window(SHANGHAI, new_year, closed) is False
    assert next_window_opening(SHANGHAI, new_year, closed) > new_year
    assert is_within_contact_window(SHANGHAI, local(SHANGHAI, 2027, 1, 5, 10), closed) is True
