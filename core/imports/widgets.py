"""The widgets of every import: cells read strictly, as SPEC.md describes the files: booleans
``1/0/true/false/yes/no``, dates ``YYYY-MM-DD``, times ISO-8601 with an offset, lists comma-separated inside one
cell, references by ``ref``. A widget raises ``ValueError`` with a message for the operator; the resource
attaches the line and column."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from import_export import widgets

TRUE_WORDS = frozenset({"1", "true", "yes"})
FALSE_WORDS = frozenset({"0", "false", "no"})
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER_RE = re.compile(r"^[-+]?\d+(\.\d+)?$")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> str:
    """A cell as text: spreadsheet numbers such as ``1001.0`` read as ``1001``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class TextWidget(widgets.CharWidget):
    """Trimmed text; empty cells become ``""``."""

    def clean(self, value, row=None, **kwargs):
        return _text(value)


class BoolWidget(widgets.Widget):
    """``1/0/true/false/yes/no`` (any case); an empty cell is ``None`` (the field's default applies)."""

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, bool):
            return value
        text = _text(value).lower()
        if text == "":
            return None
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise ValueError(f"“{value}” is not a yes/no value (use 1/0, true/false or yes/no).")

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        return "true" if value else "false"


class IntWidget(widgets.IntegerWidget):
    def clean(self, value, row=None, **kwargs):
        text = _text(value)
        if text == "":
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"“{text}” is not a whole number.") from None
        if not number.is_finite() or number != number.to_integral_value() or abs(number) > 10**12:
            raise ValueError(f"“{text}” is not a whole number.")
        return int(number)


class MoneyWidget(widgets.DecimalWidget):
    """A decimal amount such as ``1234.50`` (no thousands separators)."""

    def clean(self, value, row=None, **kwargs):
        text = _text(value) if not isinstance(value, float) else repr(value)
        if text == "":
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"“{text}” is not an amount (write it like 1234.50).") from None
        if not number.is_finite():
            raise ValueError(f"“{text}” is not an amount (write it like 1234.50).")
        return number

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else str(value)


class ISODateWidget(widgets.DateWidget):
    """``YYYY-MM-DD``; a spreadsheet date cell is taken as it is."""

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        text = _text(value)
        if text == "":
            return None
        if not _DATE_RE.match(text):
            raise ValueError(f"“{text}” is not a date (write it as YYYY-MM-DD).")
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"“{text}” is not a date (write it as YYYY-MM-DD).") from None

    def render(self, value, obj=None, **kwargs):
        return value.isoformat() if value else ""


class ISODateTimeWidget(widgets.DateTimeWidget):
    """ISO-8601 with an offset (``2026-11-30T10:00:00+08:00`` or ``...Z``).

    A text cell without an offset is refused (the moment would be ambiguous). A spreadsheet date-time cell
    cannot carry an offset, so it is read in the project's ``TIME_ZONE``.
    """

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))
            return value
        text = _text(value)
        if text == "":
            return None
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"“{text}” is not a date and time (write it like 2026-11-30T10:00:00+08:00)."
            ) from None
        if parsed.tzinfo is None:
            raise ValueError(f"“{text}” has no UTC offset (write it like 2026-11-30T10:00:00+08:00).")
        return parsed

    def render(self, value, obj=None, **kwargs):
        if not value:
            return ""
        return value.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE)).isoformat()


class LocalTimeWidget(widgets.TimeWidget):
    """A local wall-clock time ``HH:MM`` (such as a rule's ``send_time``)."""

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, dt.time):
            return value
        if isinstance(value, dt.datetime):
            return value.time()
        text = _text(value)
        if text == "":
            return None
        if not re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", text):
            raise ValueError(f"“{text}” is not a time (write it as HH:MM).")
        try:
            return dt.time.fromisoformat(text.zfill(5) if len(text) == 4 else text)
        except ValueError:
            raise ValueError(f"“{text}” is not a time (write it as HH:MM).") from None

    def render(self, value, obj=None, **kwargs):
        return value.strftime("%H:%M") if value else ""


class ListWidget(widgets.Widget):
    """A comma-separated list in one cell, stored as ``a,b,c`` (spaces around items dropped)."""

    def clean(self, value, row=None, **kwargs):
        return ",".join(item.strip() for item in _text(value).split(",") if item.strip())

    def render(self, value, obj=None, **kwargs):
        return value or ""


def lookup_chunk(alias: str = DEFAULT_DB_ALIAS) -> int:
    """How many keys one query of a preload asks for (``__any_of``: one parameter for the whole list of whole
    numbers or texts on SQLite and PostgreSQL, one per key for other values): 2,000 where the database limits a
    query's parameters (SQLite; fewer if its limit is lower), 50,000 on PostgreSQL (most files in one round
    trip). No query of an import takes one parameter per row of its file."""
    limit = connections[alias].features.max_query_params
    return max(1, min(2000, limit - 100)) if limit else 50_000


class RefWidget(widgets.ForeignKeyWidget):
    """A foreign key given by the related row's reference (``ref`` by default).

    The resource preloads every reference of the file in one query (``preload``), so a file of a hundred
    thousand rows does not cost a query per row. An unknown reference is an error of that cell.
    """

    def __init__(self, model, field: str = "ref", label: str | None = None, **kwargs):
        super().__init__(model, field=field, **kwargs)
        self.label = label or str(model._meta.verbose_name)
        self._cache: dict[str, Any] = {}

    def preload(self, values: Iterable[Any]) -> None:
        keys = sorted({_text(v) for v in values} - {""})
        self._cache = {}
        manager = self.model._default_manager
        step = lookup_chunk(manager.db)
        for start in range(0, len(keys), step):
            batch = keys[start : start + step]
            # Also as a range (``within_bounds_of``): given a chunk's refs alone PostgreSQL read every row of the
            # table for each chunk of a file (80 ms for 2,000 refs among 500,000 loans).
            lookup = {f"{self.field}__any_of": batch, f"{self.field}__within_bounds_of": batch}
            for obj in manager.filter(**lookup).order_by():
                self._cache[str(getattr(obj, self.field))] = obj

    def clean(self, value, row=None, **kwargs):
        key = _text(value)
        if key == "":
            return None
        obj = self._cache.get(key)
        if obj is None:
            obj = self.model._default_manager.filter(**{self.field: key}).first()
            if obj is None:
                raise ValueError(f"no {self.label} with reference “{key}”.")
            self._cache[key] = obj
        return obj
