"""Reading an export's rows fast: a chunk at a time, as the database driver returns them, times as UTC text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connections
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Cast

CHUNK_SIZE = 2000


def moment(value: dt.datetime | None) -> str | None:
    """A time as an export spells it: UTC ISO-8601 text."""
    return value.astimezone(dt.UTC).isoformat() if value else None


# PostgreSQL spells the instant in UTC itself, always with six fraction digits (psycopg's datetime loader, which
# Django wraps in Python, would otherwise build every time as a datetime first).
_PG_UTC_ISO = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"


def time_reading(connection) -> tuple[Callable[[str], Any] | None, Callable[[Any], str | None]]:
    """How an export reads a time column: what to select instead of the column (None: the column), and how
    what is read becomes UTC ISO-8601 text, exactly as ``moment`` spells it.

    SQLite's column is read as the text Django stored, a naive UTC time ``YYYY-MM-DD HH:MM:SS[.ffffff]``
    (``str(datetime)``) and rearranged; any other text (another time zone, another spelling) goes through
    Django's own converter. PostgreSQL's ``to_char`` text drops a zero fraction, as ``isoformat`` does."""
    if connection.vendor == "postgresql":

        def read_pg(value: Any) -> str | None:
            if value is None:
                return None
            return (value[:-7] if value.endswith(".000000") else value) + "+00:00"

        return (lambda name: Func(F(name), template=_PG_UTC_ISO, output_field=TextField())), read_pg
    if connection.vendor != "sqlite":
        return None, moment
    utc = connection.timezone_name == "UTC"
    convert = connection.ops.convert_datetimefield_value

    def read_sqlite(value: Any) -> str | None:
        if value is None:
            return None
        if (
            utc
            and value.__class__ is str
            and (len(value) == 19 or (len(value) == 26 and value[19] == "." and value[20:] != "000000"))
            and value[4:17:3] == "-- ::"  # value[4], [7], [10], [13], [16]
        ):
            return value[:10] + "T" + value[11:] + "+00:00"
        return moment(convert(value, None, connection))

    return (lambda name: Cast(name, TextField())), read_sqlite


def raw_batches(qs: QuerySet) -> Iterator[list[tuple]]:
    """The rows of a ``values_list`` query as the database driver returns them, a chunk at a time: what
    ``iterator(chunk_size=CHUNK_SIZE)`` reads (a server-side cursor on PostgreSQL), without Django's per-value
    converters (the caller converts what needs it)."""
    from django.db.models.sql.constants import MULTI

    chunked = not connections[qs.db].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    compiler = qs.query.get_compiler(using=qs.db)
    yield from compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK_SIZE)
