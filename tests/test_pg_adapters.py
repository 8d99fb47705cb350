"""On PostgreSQL, timestamps read and arrays written through the core's fast adapters (``core.pg_adapters``) are
exactly what the driver's own adapters read and send, whatever the value and the session's time zone."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import connection

from core.pg_adapters import install_fast_adapters

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]

MOMENTS = [
    "2026-11-30 02:30:00+00",
    "2026-11-30 02:30:00.1+00",
    "2026-11-30 02:30:00.123456+00",
    "2026-03-29 01:59:59.999999+00",
    "0001-01-02 00:00:00+00",
    "9999-12-30 23:59:59.999999+00",
    "2026-11-30 10:30:00+08",
    "1900-01-01 00:00:00+08:05:43",
]
TEXTS = [
    "quote \" and ' apostrophe",
    "back\\slash {braces}, commas",
    "NULL",
    "null",
    "",
    " leading and trailing ",
    "line\nbreak\ttab",
    "王小明 😀",
    "\\",
    '"',
    None,
]
MOMENT = dt.datetime(2026, 12, 1, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
ARRAYS = [
    ("bigint", [1, -2, 0, 10**15], True),
    ("bigint", [3, None, 4], True),
    ("integer", [7], True),
    ("text", TEXTS, True),
    ("varchar", ["a", "b b"], True),
    ("boolean", [True, False, None], False),
    ("numeric", [Decimal("0.01"), Decimal("-123456.78"), Decimal("1E+2"), Decimal("-0"), None], True),
    ("numeric", [Decimal("Infinity"), Decimal("1")], False),
    ("uuid", [uuid.UUID(int=1), None], False),
    ("date", [dt.date(2026, 2, 28), None], False),
    (
        "timestamp with time zone",
        [
            MOMENT,
            None,
            dt.datetime(1900, 1, 1, 0, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8, seconds=3))),
        ],
        True,
    ),
    ("timestamp", [MOMENT.replace(tzinfo=None)], False),
    ("text", [None, None], False),
]


def plain_driver(cursor):
    """Put the driver's own timestamp loader and list dumper back on this cursor."""
    from psycopg import adapters
    from psycopg.adapt import PyFormat
    from psycopg.types.array import ListDumper

    raw = cursor.cursor
    loader = raw.adapters.get_loader(adapters.types["timestamptz"].oid, 0)
    raw.adapters.register_loader(
        "timestamptz", next(c for c in loader.__mro__ if not getattr(c, "fast", False))
    )
    raw.adapters.register_dumper(list, ListDumper)
    assert not getattr(raw.adapters.get_dumper(list, PyFormat.TEXT), "fast", False)


def select(sql, params, *, plain: bool):
    with connection.cursor() as cursor:
        if plain:
            plain_driver(cursor)
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def test_every_connection_has_them():
    connection.ensure_connection()
    assert install_fast_adapters(connection)
    from psycopg.adapt import PyFormat

    with connection.cursor() as cursor:
        assert getattr(cursor.cursor.adapters.get_loader(1184, 0), "fast", False)  # timestamptz, text
        assert getattr(cursor.cursor.adapters.get_dumper(list, PyFormat.TEXT), "fast", False)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_timestamps_read_what_the_driver_reads_in_any_session_zone(zone):
    sql = "SELECT v::timestamptz FROM unnest(%s::text[]) WITH ORDINALITY AS t (v, n) ORDER BY n"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone')")
        (before,) = cursor.fetchone()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE %s", [zone])
        fast, plain = select(sql, [MOMENTS], plain=False), select(sql, [MOMENTS], plain=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE %s", [before])
    assert fast == plain
    assert [(v.utcoffset(), v.tzinfo) for v in fast] == [(v.utcoffset(), v.tzinfo) for v in plain]
    if zone == "UTC":  # Django's own session zone
        assert fast[2] == dt.datetime(2026, 11, 30, 2, 30, 0, 123456, tzinfo=dt.timezone.utc)


def test_infinity_is_refused_as_the_driver_refuses_it():
    from django.db import DataError

    with pytest.raises(DataError):
        select("SELECT 'infinity'::timestamptz", [], plain=False)


@pytest.mark.parametrize("sql_type,values,written_fast", ARRAYS)
def test_arrays_are_read_by_the_database_as_the_driver_writes_them(sql_type, values, written_fast):
    sql = f"SELECT x FROM unnest(%s::{sql_type}[]) WITH ORDINALITY AS t (x, n) ORDER BY n"
    assert select(sql, [values], plain=False) == select(sql, [values], plain=True) == values
    from unittest import mock

    from psycopg.adapt import PyFormat
    from psycopg.types.array import ListDumper

    with connection.cursor() as cursor:
        adapters = cursor.cursor.adapters
        dumper = adapters.get_dumper(list, PyFormat.TEXT)(list, cursor.cursor).upgrade(values, PyFormat.TEXT)
        plain = bytes(super(type(dumper), dumper).dump(values))
        if written_fast:  # in one pass: the driver's element-by-element dump is never called
            with mock.patch.object(ListDumper, "dump", side_effect=AssertionError("the driver's dump")):
                text = bytes(dumper.dump(values))
        else:
            text = bytes(dumper.dump(values))
    if not written_fast or sql_type in ("numeric", "timestamp with time zone"):
        assert text == plain
    elif sql_type in ("bigint", "integer"):  # whole numbers are written exactly as the driver writes them
        assert (
            text == plain == ("{" + ",".join("NULL" if v is None else str(v) for v in values) + "}").encode()
        )
    else:  # every text quoted, in one pass
        assert text.count(b'"') >= 2 * sum(v is not None for v in values)


def test_a_text_holding_nul_is_refused_as_the_driver_refuses_it():
    from django.db import DataError

    with pytest.raises(DataError):
        select("SELECT unnest(%s::text[])", [["a\x00b"]], plain=False)
