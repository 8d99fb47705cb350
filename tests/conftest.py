from __future__ import annotations

import datetime as dt
import os
import re

import pytest
import time_machine
from django.db import connection
from django.utils import translation


def pinned_clock(spec: str, real_now: dt.datetime) -> dt.datetime:
    """``TEST_CLOCK=HH:MM`` (UTC): the next such moment after the real clock. The next, not the last, so that
    cookies the test server sets are not already expired by the browser's own (real) clock."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})Z?", spec.strip())
    if not match:
        raise pytest.UsageError(f"TEST_CLOCK={spec!r}: expected HH:MM in UTC, e.g. 14:30")
    moment = real_now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    return moment if moment > real_now else moment + dt.timedelta(days=1)


def pytest_report_header(config):
    spec = os.environ.get("TEST_CLOCK")
    if spec:
        moment = pinned_clock(spec, dt.datetime.now(dt.UTC))
        return f"clock pinned to {moment.isoformat()} (TEST_CLOCK={spec}), ticking"
    return None


@pytest.fixture(scope="session", autouse=True)
def _pinned_clock():
    """With ``TEST_CLOCK`` set, the whole session runs at that hour (the clock ticks on from it), so a test
    that silently depends on the time of day fails on every run, not only when CI happens to run at night."""
    spec = os.environ.get("TEST_CLOCK")
    if not spec:
        yield None
        return
    with time_machine.travel(pinned_clock(spec, dt.datetime.now(dt.UTC)), tick=True) as traveller:
        yield traveller


def pytest_collection_modifyitems(config, items):
    on_postgres = "postgres" in os.environ.get("DATABASE_URL", "")
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (runs in the PostgreSQL pass of make test)")
    for item in items:
        if "postgres_only" in item.keywords and not on_postgres:
            item.add_marker(skip_pg)


@pytest.fixture(scope="session", autouse=True)
def _database_is_the_one_asked_for(_pinned_clock, django_db_setup, django_db_blocker):
    """In the PostgreSQL pass an unreachable or wrong database is a failure, never a silent SQLite run."""
    if os.environ.get("REQUIRE_POSTGRES"):
        with django_db_blocker.unblock():
            assert connection.vendor == "postgresql", f"expected PostgreSQL, got {connection.vendor}"


@pytest.fixture
def redis_url():
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    import redis

    client = redis.Redis.from_url(url)
    client.ping()  # Redis is part of every machine of this kind: unreachable is a failure.
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language: a request made in Chinese by an earlier test leaves the
    thread's active language behind (LocaleMiddleware activates it and nothing resets it between tests)."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _audit_anchor_and_exports_in_tmp(settings, tmp_path_factory):
    """The pipeline's anchor step and the exports write files: keep them out of the project's var/."""
    base = tmp_path_factory.mktemp("files")
    settings.AUDIT_ANCHOR_PATH = base / "audit-anchor.jsonl"
    settings.EXPORT_ROOT = base / "exports"
    settings.IMPORT_ROOT = base / "imports"
