"""PostgreSQL's values through the driver in one pass: timestamps read and arrays written.

Django's ``timestamptz`` loader subclasses psycopg's pure-Python one (even with the driver's C build installed), which
reads every value with a regular expression and builds it field by field (300,000 timestamps: 1.1 s of CPU, 0.5 s
with this loader); and the driver writes every list parameter element by element, a regular expression per element
to decide its quoting.
The daily jobs read tens of thousands of timestamps (each contact, customer, instalment and case row holds several)
and send long arrays (ids through ``any_of``, the columns of ``bulk_update_rows`` and of Django's ``bulk_create``,
which goes through ``UNNEST`` on PostgreSQL): together about a tenth of the run's Python time.

- ``timestamptz``: Django's session speaks UTC, so the text PostgreSQL sends (``2026-11-30 02:30:00.123456+00``)
  is ISO 8601 that ``datetime.fromisoformat`` reads in one C call.
- lists of whole numbers or texts (and None): the array's text (``{1,2,NULL}``, ``{"a b","c\\"d"}``) written
  in one join, every text quoted; likewise lists of finite Decimals and of aware moments (an import's amounts and
  moments, ``insert_rows`` and ``update_rows`` columns), each written as the driver writes it.

Anything else goes to the driver's own code (another session zone, an offset other than zero, infinity, a year BC
or past 9999; lists of other values, nested lists, a text holding NUL, which the driver refuses), so what is read
or sent is always what the driver would have read or sent. ``install_fast_adapters`` puts both on each new
connection (``register``, from the core's ``ready``); tests hold them equal to the driver's.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.backends.signals import connection_created

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"})


class FastTimestamptzMixin:
    """Put before the connection's own ``timestamptz`` text loader (Django's, which sets its time zone)."""

    fast = True

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        tz = getattr(self, "_timezone", None)
        self._session_is_utc = tz is dt.timezone.utc or getattr(tz, "key", None) in _UTC_NAMES

    def load(self, data):
        if self._session_is_utc:
            try:
                value = dt.datetime.fromisoformat(bytes(data).decode())
            except ValueError:
                pass
            else:
                if value.tzinfo is dt.timezone.utc:
                    # What the driver returns (the moment in the session's zone, UTC) with the zone Django puts on.
                    return value.replace(tzinfo=self.timezone)
        return super().load(data)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fast_list_dumper(base):
    """A subclass of the driver's text ``ListDumper`` ``base`` writing flat lists of whole numbers or of texts in
    one pass."""

    class FastListDumper(base):
        fast = True

        def dump(self, obj):
            if self.delimiter == b"," and obj:
                kinds = set(map(type, obj))
                kinds.discard(type(None))
                if kinds == {int}:
                    if None not in obj:
                        return ("{" + ",".join(map(str, obj)) + "}").encode()
                    return ("{" + ",".join("NULL" if v is None else str(v) for v in obj) + "}").encode()
                if kinds == {str} and not any("\x00" in v for v in obj if v is not None):
                    encoding = getattr(self.sub_dumper, "_encoding", None) or "utf-8"
                    text = ",".join("NULL" if v is None else _quoted(v) for v in obj)
                    return ("{" + text + "}").encode(encoding)
                if kinds == {Decimal} and all(v.is_finite() for v in obj if v is not None):
                    return ("{" + ",".join("NULL" if v is None else str(v) for v in obj) + "}").encode()
                if kinds == {dt.datetime} and all(v.utcoffset() is not None for v in obj if v is not None):
                    # The driver's text of an aware moment (``str``: a space before the time) needs quotes.
                    return ("{" + ",".join("NULL" if v is None else f'"{v}"' for v in obj) + "}").encode()
            return super().dump(obj)

    return FastListDumper


def install_fast_adapters(connection) -> bool:
    """Give a PostgreSQL connection (Django's wrapper, connected) the fast timestamp loader and list dumper.
    Returns whether it has them."""
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    from psycopg import adapters
    from psycopg.adapt import PyFormat
    from psycopg.pq import Format
    from psycopg.types.array import ListDumper

    adapters_map = connection.connection.adapters
    installed = False
    loader = adapters_map.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
    if loader is not None and hasattr(loader, "timezone"):  # Django's loader; any other is left alone
        if not getattr(loader, "fast", False):
            adapters_map.register_loader(
                "timestamptz", type(f"Fast{loader.__name__}", (FastTimestamptzMixin, loader), {})
            )
        installed = True
    dumper = adapters_map.get_dumper(list, PyFormat.TEXT)
    if dumper is ListDumper:
        adapters_map.register_dumper(list, fast_list_dumper(ListDumper))
    return installed and getattr(adapters_map.get_dumper(list, PyFormat.TEXT), "fast", False)


def _on_connection_created(sender, connection, **kwargs):
    install_fast_adapters(connection)


def register() -> None:
    connection_created.connect(_on_connection_created, dispatch_uid="core.fast_pg_adapters")
