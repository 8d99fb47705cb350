"""The suite's pinned clock (``TEST_CLOCK``): the SQLite pass of ``make test`` runs at night in Shanghai and
Los Angeles, so a test that depends on the hour it runs at fails on every run."""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo

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
def test_the_pinned_pass_runs_at_night_in_shanghai_and_los_angeles():
    now = timezone.now()
    for zone in ("Asia/Shanghai", "America/Los_Angeles"):
        local = now.astimezone(zoneinfo.ZoneInfo(zone)).time()
        assert not dt.time(8, 0) <= local < dt.time(21, 0), f"{zone}: {local} is inside the contact window"
