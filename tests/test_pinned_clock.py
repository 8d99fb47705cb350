"""The suite's pinned clock (``TEST_CLOCK``): the SQLite pass of ``make test`` runs at night in Shanghai and Los
Angeles, the PostgreSQL pass by day in both, so a test that depends on the hour it runs at fails on every run,
whatever hour the run starts at."""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from pathlib import Path

import pytest
from django.utils import timezone

from .conftest import pinned_clock


def test_it_pins_the_clock_to_the_next_such_moment():
    real = dt.datetime(2026, 11, 29, 23, 28, tzinfo=dt.UTC)
    assert pinned_clock("14:30", real) == dt.datetime(2026, 11, 30, 14, 30, tzinfo=dt.UTC)
    assert pinned_clock("23:45Z", real) == dt.datetime(2026, 11, 29, 23, 45, tzinfo=dt.UTC)


def test_it_refuses_a_clock_it_cannot_read():
    with pytest.raises(pytest.UsageError):
        pinned_clock("half past two", dt.datetime(2026, 11, 29, tzinfo=dt.UTC))


@pytest.mark.skipif(not os.environ.get("TEST_CLOCK"), reason="the unpinned pass runs at the real hour")
def test_the_pinned_pass_runs_at_the_hour_it_asked_for():
    now = timezone.now()
    asked = pinned_clock(os.environ["TEST_CLOCK"], now - dt.timedelta(hours=3))
    # The clock ticks on from the pinned moment: a whole pass takes minutes, not hours.
    assert asked <= now < asked + dt.timedelta(hours=3), f"{now} is not the pinned {asked}"


def pinned_hours_of_make_test() -> dict[str, str]:
    """The hour each pass of ``make test`` is pinned to, as scripts/test.sh sets it."""
    script = (Path(__file__).resolve().parent.parent / "scripts" / "test.sh").read_text()
    return dict(re.findall(r"\$\{(TEST_CLOCK\w*):=(\d{1,2}:\d{2})\}", script))


def test_make_test_runs_one_pass_at_night_and_one_by_day_in_shanghai_and_los_angeles():
    hours = pinned_hours_of_make_test()
    assert set(hours) == {"TEST_CLOCK", "TEST_CLOCK_POSTGRES"}, hours
    window = (dt.time(8, 0), dt.time(21, 0))
    for zone in ("Asia/Shanghai", "America/Los_Angeles"):
        for month in (1, 7):  # standard and summer time
            local = {
                name: pinned_clock(spec, dt.datetime(2026, month, 15, tzinfo=dt.UTC))
                .astimezone(zoneinfo.ZoneInfo(zone))
                .time()
                for name, spec in hours.items()
            }
            assert not window[0] <= local["TEST_CLOCK"] < window[1], f"{zone}: the SQLite pass is by day"
            assert window[0] <= local["TEST_CLOCK_POSTGRES"] < window[1], (
                f"{zone}: the PostgreSQL pass is at night"
            )
