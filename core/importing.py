"""What every import of the back office shares (django-import-export).

``BookResource`` is the base of every resource of the product (``loans.resources``,
``notifications.resources``, ``debt_collection.resources``). It makes an import all-or-nothing, runs the model
validation of each row, reports each bad row as ``line 7, column phone: “12ab” is not a phone number.`` (the
header is line 1) and writes ``backoffice.import.completed`` to the audit trail after a successful import.

The widgets below read cells strictly, as SPEC.md describes the files: booleans ``1/0/true/false/yes/no``, dates
``YYYY-MM-DD``, times ISO-8601 with an offset, lists comma-separated inside one cell, references by ``ref``.
A widget raises ``ValueError`` with a message for the operator; the resource attaches the line and column.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import gc
import hashlib
import json
import logging
import os
import re
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages as admin_messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.forms.models import model_to_dict
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from import_export import resources, widgets
from import_export.fields import NOT_PROVIDED
from import_export.instance_loaders import ModelInstanceLoader
from import_export.results import Result, RowResult
from import_export.utils import atomic_if_using_transaction

from .audit import log_event
from .background import claim_job
from .bulk import bulk_update_rows
from .import_files import FORMATS, FileReadError, count_rows, read_dataset
from .private_files import write_private

if TYPE_CHECKING:
    from .models import ImportJob

logger = logging.getLogger(__name__)

IMPORT_COMPLETED = "backoffice.import.completed"

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
            for obj in manager.filter(**{f"{self.field}__any_of": keys[start : start + step]}).order_by():
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


def _key_part(value: Any) -> Any:
    return value.pk if isinstance(value, models.Model) else value


def _validate_field(f, instance) -> tuple | list | None:
    """``Model.clean_fields`` for one field: None when skipped (blank and empty), ``(value,)`` the cleaned value,
    or the field's error list."""
    raw = getattr(instance, f.attname)
    if f.blank and raw in f.empty_values:
        return None
    if isinstance(raw, models.expressions.DatabaseDefault):
        return None
    try:
        return (f.clean(raw, instance),)
    except ValidationError as exc:
        return exc.error_list


def _blank_instance_factory(model) -> Callable[[], models.Model]:
    """``model()``, given its defaults as positional values (Django's faster way in): the same instance, with
    a default that is a callable or a database default still made for each instance."""
    fields = model._meta.concrete_fields
    if any(f.column is None or f.generated for f in fields):
        return model
    values = [f.get_default() for f in fields]
    each_time = [
        (i, f)
        for i, f in enumerate(fields)
        if f.has_db_default() or (f.has_default() and callable(f.default))
    ]
    if not each_time:
        return lambda: model(*values)

    def make():
        args = list(values)
        for i, f in each_time:
            args[i] = f.get_default()
        return model(*args)

    return make


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a file's rows are read, back on after (as it was before the first of
    nested or concurrent imports of the process).

    An import keeps every row's instance and row result alive until it ends, so the collector's full passes,
    started by that growth, walk the same hundreds of thousands of objects again and again: about half the
    time of a large import, for nothing to collect (rows make no reference cycles; the few a bad row's
    exception makes are collected once the collector is back). Reference counting still frees everything else
    as usual."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class KeyedInstanceLoader(ModelInstanceLoader):
    """Finds each row's existing object by the resource's key columns, loading them for the whole file at once.

    The existing objects of every key in the file are read in a few queries up front (not one per row). A
    key cell that cannot be read (unknown reference, bad date) becomes a validation error of that column, so
    it is reported with its line and column like any other bad cell. A key that repeats an earlier line of the
    file is an error too (``BookResource.import_instance``).
    """

    def __init__(self, resource, dataset=None):
        super().__init__(resource, dataset)
        self.key_fields = [resource.fields[k] for k in resource.get_import_id_fields()]
        self.instances: dict[tuple, Any] = {}
        self.first_line: dict[tuple, int] = {}
        self.repeats: dict[int, int] = {}  # row number -> row number it repeats
        keys = []
        if dataset is not None and dataset.headers:
            for number, row in enumerate(dataset.dict, 1):
                try:
                    key = self.key_of(row)
                except (ValueError, ValidationError):
                    continue
                if key is None:
                    continue
                if key in self.first_line:
                    self.repeats[number] = self.first_line[key]
                else:
                    self.first_line[key] = number
                    keys.append(key)
        self._preload(keys)

    def key_of(self, row) -> tuple | None:
        values = tuple(_key_part(field.clean(row)) for field in self.key_fields)
        return None if any(v in (None, "") for v in values) else values

    def _preload(self, keys: list[tuple]) -> None:
        if not keys:
            return
        model = self.resource._meta.model
        attnames = [model._meta.get_field(f.attribute).attname for f in self.key_fields]
        first = attnames[0]
        firsts = sorted({k[0] for k in keys}, key=str)
        queryset = self.get_queryset().order_by()  # a dictionary is filled: no ORDER BY (nor its joins)
        step = lookup_chunk(queryset.db)
        for start in range(0, len(firsts), step):
            for obj in queryset.filter(**{f"{first}__any_of": firsts[start : start + step]}):
                self.instances[tuple(getattr(obj, a) for a in attnames)] = obj

    def get_instance(self, row):
        errors = {}
        values = []
        for field in self.key_fields:
            try:
                values.append(_key_part(field.clean(row)))
            except ValueError as exc:
                errors[field.attribute] = ValidationError(str(exc), code="invalid")
        if errors:
            raise ValidationError(errors)
        if any(v in (None, "") for v in values):
            return None
        return self.instances.get(tuple(values))


#: Widgets whose ``clean`` depends on the cell alone (not on the row, the database or the time): the fast path
#: reads each distinct cell of their columns once. Compared by function, so a subclass that overrides
#: ``clean`` (``InstallmentSeqWidget`` reads the row) is cleaned row by row.
_PURE_WIDGET_CLEANS = frozenset(
    {
        TextWidget.clean,
        BoolWidget.clean,
        IntWidget.clean,
        MoneyWidget.clean,
        ISODateWidget.clean,
        ISODateTimeWidget.clean,
        LocalTimeWidget.clean,
        ListWidget.clean,
    }
)
_MISS = object()


class _Failed:
    """A cell its widget refused (the ``ValueError`` message), remembered for the next equal cell."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


class _Column:
    """One imported column of the fast path: ``Field.clean`` of its cell, remembered per distinct text cell
    when the result depends on the cell alone, and the model field's own ``clean`` of that value likewise."""

    __slots__ = (
        "field",
        "index",
        "headers",
        "attribute",
        "sets_none",
        "memo",
        "memo_failures",
        "model_field",
        "model_memo",
    )

    def __init__(self, field, headers: list[str], model_field):
        self.field = field
        self.headers = headers
        self.index = headers.index(field.column_name)
        self.attribute = field.attribute
        self.sets_none = field.saves_null_values
        widget_clean = getattr(type(field.widget), "clean", None)
        default = field.default
        pure_default = default is NOT_PROVIDED or not callable(default)
        self.memo: dict | None = None
        self.memo_failures = False
        if pure_default and widget_clean in _PURE_WIDGET_CLEANS:
            self.memo, self.memo_failures = {}, True
        elif pure_default and widget_clean is RefWidget.clean:
            # A reference found stays found during the import; one not found is looked up again on each row.
            self.memo = {}
        # The model field's validation of the value, remembered per cell when it depends on the value alone:
        # Django's own non-relational fields (to_python, null/blank/choices, validators).
        self.model_field = None
        self.model_memo: dict | None = None
        if model_field is not None and field.saves_null_values and self.memo is not None:
            if not model_field.is_relation and type(model_field).__module__.startswith("django.db.models."):
                self.model_field = model_field
                self.model_memo = {}

    def clean(self, values, row=None):
        """``Field.clean(row)``: the python value, or ``ValueError`` with the widget's message. ``row`` (the
        cells by column) is made from ``values`` when it is not given and the widget needs it."""
        memo = self.memo
        cell = values[self.index]
        if memo is None or (cell is not None and type(cell) is not str):  # a spreadsheet's typed cell
            return self.field.clean(row if row is not None else dict(zip(self.headers, values)))
        hit = memo.get(cell, _MISS)
        if hit is _MISS:
            try:
                hit = self.field.clean(row if row is not None else dict(zip(self.headers, values)))
            except ValueError as exc:
                if not self.memo_failures:
                    raise
                hit = _Failed(str(exc))
            memo[cell] = hit
        if type(hit) is _Failed:
            raise ValueError(hit.message)
        return hit


class HeaderError(ValueError):
    """A file whose columns are not its resource's: unknown, missing and repeated columns, and the expected
    header. Reported as one error of the whole file (``file: the header does not match this import: ...``)."""

    def __init__(self, *, unknown: list[str], missing: list[str], repeated: list[str], expected: list[str]):
        self.unknown, self.missing, self.repeated, self.expected = unknown, missing, repeated, expected
        parts = []
        for name in unknown:
            close = difflib.get_close_matches(name, [e for e in expected if e in missing] or expected, n=1)
            hint = f" (did you mean “{close[0]}”?)" if close else ""
            parts.append(f"unknown column “{name or ' '}”{hint}")
        parts += [f"missing column “{name}”" for name in missing]
        parts += [f"repeated column “{name}”" for name in repeated]
        super().__init__(
            f"the header does not match this import: {'; '.join(parts)}. Expected header: {','.join(expected)}"
        )


class BookResource(resources.ModelResource):
    """Base of every import of the product. Subclasses declare ``Meta.model``, ``fields`` and ``import_id_fields``.

    - Each row is validated with the model's ``full_clean`` (phone as E.164, time zone, tier overlap, negative
      amounts...) and a row with any error fails the whole file: everything is rolled back, including the rows
      before it (``rollback_on_validation_errors`` is always on).
    - ``error_messages(result)`` gives ``line N, column C: message`` for each error (header = line 1).
    - After a successful, non-dry import, ``backoffice.import.completed`` is written to the audit trail in the
      same transaction, with file name, SHA-256, resource and row counts. ``import_data`` accepts the keyword
      arguments ``file_name``, ``file_sha256`` and ``user`` (a user or an actor string) for it.
    - A configuration resource sets ``audit_each_object = True``: each object the file created or changed is
      also written as ``<app>.<model>.created|changed`` with before and after (``log_object_changes``).
    - Importing the same file again updates the rows it keys on and never duplicates them; a key repeated
      inside one file is an error.
    - Rows are written with ``bulk_create``/``bulk_update`` (``use_bulk``): ``Model.save()`` is NOT called, so
      a subclass does in ``before_save_instance`` what the model's ``save()`` would do.
    """

    is_dry_run = False
    _progress = None
    _rows_total: int | None = None

    class Meta:
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True
        use_transactions = True
        instance_loader_class = KeyedInstanceLoader
        # Rows are validated one by one but written in batches: a 100,000-row file is not 100,000 INSERTs.
        use_bulk = True
        batch_size = 1000

    # --- the import -------------------------------------------------------------------------------------
    def import_data(
        self,
        dataset,
        dry_run=False,
        raise_errors=False,
        use_transactions=None,
        collect_failed_rows=False,
        rollback_on_validation_errors=True,
        **kwargs,
    ):
        self.is_dry_run = dry_run
        self._import_fields = None
        header_error = self.header_error(dataset)
        if header_error is not None:
            # Before anything reads a cell: nothing of a file whose columns are not the resource's is saved.
            result = self.get_result_class()()
            result.total_rows = len(dataset)
            self.handle_import_error(result, header_error, raise_errors=False)
            result.book_error_records = self.error_records(result)
            result.book_errors = [format_error(record) for record in result.book_error_records]
            return result
        # ``progress(rows_done, rows_total)`` is called after each row (a background job reports it).
        self._progress = kwargs.pop("progress", None)
        # The preview (dry run) shows what changes; the real import skips the per-row diff for speed, and so
        # does a dry run whose rows nobody looks at (``preview_rows=False``: a background job's counts).
        preview_rows = kwargs.pop("preview_rows", True)
        self._meta = copy.copy(type(self)._meta)
        self._meta.skip_diff = not (dry_run and preview_rows)
        if self.writes_at_the_end(
            dataset,
            use_transactions=use_transactions,
            raise_errors=raise_errors,
            collect_failed_rows=collect_failed_rows,
        ):
            result = self.import_then_write(dataset, dry_run, raise_errors, **kwargs)
        else:
            result = super().import_data(
                dataset,
                dry_run=dry_run,
                raise_errors=raise_errors,
                use_transactions=use_transactions,
                collect_failed_rows=collect_failed_rows,
                # A file is all or nothing: one bad row and none of it is saved.
                rollback_on_validation_errors=True,
                **kwargs,
            )
        result.book_error_records = self.error_records(result)
        result.book_errors = [format_error(record) for record in result.book_error_records]
        return result

    # --- SQLite: a short write transaction ------------------------------------------------------------------
    #: Set while ``import_then_write`` runs: the fast path keeps every row to write until the file is read.
    _writes_at_the_end = False

    def writes_at_the_end(self, dataset, *, use_transactions, raise_errors, collect_failed_rows) -> bool:
        """On SQLite, whether the file is read and checked before its one write transaction opens (the fast
        path): SQLite has one writer at a time, so an import holding the write lock while it reads a large
        file would lock every log-in and every edit out (``database is locked``) for as long."""
        if connections[self.get_db_connection_name()].vendor != "sqlite":
            return False
        if use_transactions is None:
            use_transactions = self.get_use_transactions()
        return bool(use_transactions) and self.can_import_fast(
            dataset, raise_errors=raise_errors, collect_failed_rows=collect_failed_rows
        )

    def import_then_write(self, dataset, dry_run, raise_errors, **kwargs) -> Result:
        """The fast path in two steps: read and check every row outside any transaction (the database is only
        read, which never blocks another connection in WAL mode), then write them all, apply what follows from
        them (``after_import``) and audit the import in ONE transaction, rolled back when anything failed or for
        a dry run. A row read in the first step that changed before the second is overwritten (or its
        constraint fails the whole file), as if the import had come a moment later."""
        self._writes_at_the_end = True
        try:
            return self.import_rows_fast(dataset, dry_run, raise_errors, True, **kwargs)
        finally:
            self._writes_at_the_end = False

    def _write_at_the_end(self, dataset, result, dry_run, raise_errors, db_alias, kwargs) -> None:
        with transaction.atomic(using=db_alias):
            if result.has_errors() or result.has_validation_errors():
                # Nothing of this file is kept: write nothing (after_import still sees the result).
                self.create_instances.clear()
                self.update_instances.clear()
                self.delete_instances.clear()
            else:
                with transaction.atomic(using=db_alias):
                    batch_size = self._meta.batch_size
                    self.bulk_create(True, dry_run, raise_errors, batch_size=batch_size, result=result)
                    self.bulk_update(True, dry_run, raise_errors, batch_size=batch_size, result=result)
                    self.bulk_delete(True, dry_run, raise_errors, result=result)
            try:
                with transaction.atomic(using=db_alias):
                    self.after_import(dataset, result, **kwargs)
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            if dry_run or result.has_errors() or result.has_validation_errors():
                transaction.set_rollback(True, using=db_alias)

    # --- the header ---------------------------------------------------------------------------------------
    def expected_header(self) -> list[str]:
        """The file's columns, in order: the column names of the resource's import fields (SPEC.md)."""
        return [f.column_name for f in self.get_import_fields() if f.column_name]

    def header_error(self, dataset) -> HeaderError | None:
        """``HeaderError`` naming every unknown, missing and repeated column of the file (and the expected
        header), or None when the file's header is the resource's (in any order). Spaces around a column name
        are dropped; a column without a name and without a value is ignored (spreadsheets export those)."""
        expected = self.expected_header()
        raw = list(dataset.headers or [])
        names = [_text(name) for name in raw]
        empty = [
            i
            for i, name in enumerate(names)
            if name == "" and all(_text(v) == "" for v in dataset.get_col(i))
        ]
        if empty:
            keep = [i for i in range(len(names)) if i not in set(empty)]
            rows = [[row[i] for i in keep] for row in dataset]
            dataset.wipe()
            dataset.headers = [names[i] for i in keep]
            dataset.extend(rows)
        elif names != raw:
            dataset.headers = names
        names = list(dataset.headers or [])
        known = set(expected)
        unknown = [name for name in dict.fromkeys(names) if name not in known]
        missing = [name for name in expected if name not in names]
        repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
        if not (unknown or missing or repeated):
            return None
        return HeaderError(unknown=unknown, missing=missing, repeated=repeated, expected=expected)

    # --- the fast path ------------------------------------------------------------------------------------
    #: A real import (no preview) takes ``import_rows_fast`` when the resource allows it (see ``can_import_fast``).
    #: Tests switch it off on an instance to check both paths give the same result.
    fast_import = True

    #: django-import-export's per-row steps the fast path does itself: a resource that overrides one of them
    #: is imported by the library's own loop.
    _FAST_PATH_STEPS = (
        "import_row",
        "import_instance",
        "validate_instance",
        "import_field",
        "get_or_init_instance",
        "get_instance",
        "init_instance",
        "for_delete",
        "skip_row",
        "before_import_row",
        "after_import_row",
        "save_instance",
        "save_m2m",
        "get_import_fields",
        "get_import_id_fields",
    )

    def import_data_inner(
        self, dataset, dry_run, raise_errors, using_transactions, collect_failed_rows, **kwargs
    ):
        if self.can_import_fast(dataset, raise_errors=raise_errors, collect_failed_rows=collect_failed_rows):
            return self.import_rows_fast(dataset, dry_run, raise_errors, using_transactions, **kwargs)
        return super().import_data_inner(
            dataset, dry_run, raise_errors, using_transactions, collect_failed_rows, **kwargs
        )

    def can_import_fast(self, dataset, *, raise_errors=False, collect_failed_rows=False) -> bool:
        """Whether this import can skip django-import-export's per-row machinery: a real import (the preview
        needs each row's diff), rows written in bulk, the keyed loader, every key column in the file, plain
        attributes, and none of the per-row steps overridden."""
        meta = self._meta
        if not (self.fast_import and meta.skip_diff and meta.use_bulk) or meta.force_init_instance:
            return False
        if raise_errors or collect_failed_rows or meta.instance_loader_class is not KeyedInstanceLoader:
            return False
        if meta.batch_size is not None and meta.batch_size <= 0:
            return False
        headers = dataset.headers or []
        if not headers or len(set(headers)) != len(headers):
            return False
        for name in self._FAST_PATH_STEPS:
            if getattr(type(self), name) is not getattr(BookResource, name):
                return False
        if any(self.fields[k].column_name not in headers for k in self.get_import_id_fields()):
            return False
        for field in self.get_import_fields():
            if isinstance(field.widget, widgets.ManyToManyWidget):
                return False
            if field.attribute and "__" in field.attribute:
                return False
        return True

    def import_rows_fast(self, dataset, dry_run, raise_errors, using_transactions, **kwargs) -> Result:
        """What ``import_data_inner`` and ``import_row`` do for each row, without their per-row overhead.

        Same steps, same hooks (``before_import``, ``after_init_instance``, ``before_save_instance``,
        ``after_save_instance``, ``after_import``), same errors: a key cell that cannot be read is the row's
        only error; otherwise the widgets' errors, a repeated key, then the model's field validation and
        ``clean()`` as ``validate_instance`` runs them. The differences are only in the work: each distinct
        cell of a column whose widget depends on the cell alone is cleaned (and its model field validated)
        once, the keys are read once, no diff is built, and the cycle collector waits until the rows are
        written (``cyclic_gc_paused``). Rows are written with ``bulk_create`` / ``bulk_update`` in the same
        batches; the caller's transaction makes the file all or nothing.
        """
        with cyclic_gc_paused():
            return self._import_rows_fast(dataset, dry_run, raise_errors, using_transactions, **kwargs)

    def _import_rows_fast(self, dataset, dry_run, raise_errors, using_transactions, **kwargs) -> Result:
        result = self.get_result_class()()
        result.diff_headers = self.get_diff_headers()
        result.total_rows = len(dataset)
        db_alias = self.get_db_connection_name()
        try:
            with atomic_if_using_transaction(using_transactions, using=db_alias):
                self.before_import(dataset, **kwargs)
            self._check_import_id_fields(dataset.headers)
        except Exception as exc:
            self.handle_import_error(result, exc, raise_errors)
        result.total_rows = len(dataset)
        meta = self._meta
        if not meta.store_instance:
            meta.store_instance = kwargs.get("retain_instance_in_row_result", False)
        store_instance, store_row_values = meta.store_instance, meta.store_row_values
        kwargs.update({"dry_run": dry_run, "using_transactions": using_transactions})

        model = meta.model
        opts = model._meta
        headers = list(dataset.headers)
        data = [tuple(values) for values in dataset]
        import_fields = self.get_import_fields()
        model_fields = {f.name: f for f in opts.fields}
        columns = [
            _Column(field, headers, model_fields.get(field.attribute))
            for field in import_fields
            if field.attribute and field.column_name in headers and not field.readonly
        ]
        by_field = {id(column.field): column for column in columns}

        # The keys: read once for the whole file, as ``KeyedInstanceLoader`` does, existing rows loaded at once.
        loader = KeyedInstanceLoader(self, None)
        key_columns = [by_field[id(self.fields[k])] for k in self.get_import_id_fields()]
        row_keys: list[Any] = [None] * len(data)
        key_errors: dict[int, Any] = {}
        first_line, repeats, keys = loader.first_line, loader.repeats, []
        for number, values in enumerate(data, 1):
            parts, failed = [], {}
            for column in key_columns:
                try:
                    parts.append(_key_part(column.clean(values)))
                except ValueError as exc:
                    failed[column.attribute] = str(exc)
                except ValidationError as exc:
                    failed = exc  # raised again by its row, as ``get_instance`` would
                    break
            if failed:
                key_errors[number] = failed
                continue
            if any(v in (None, "") for v in parts):
                continue
            key = tuple(parts)
            row_keys[number - 1] = key
            if key in first_line:
                repeats[number] = first_line[key]
            else:
                first_line[key] = number
                keys.append(key)
        loader._preload(keys)
        instances = loader.instances
        self._loader = loader
        last_key = self.fields[self.get_import_id_fields()[-1]].attribute if key_columns else None

        # The model's validation, as ``validate_instance`` runs ``full_clean``: the fields the file sets.
        self.get_import_fields()
        not_imported = set(self._not_imported)
        by_attribute = {column.attribute: column for column in columns}
        checks = [
            (f, by_attribute.get(f.name))
            for f in opts.fields
            if f.name not in not_imported and not f.generated
        ]
        has_clean = model.clean is not models.Model.clean
        blank_instance = _blank_instance_factory(model)
        audit = self.audit_each_object

        row_result_class = self.get_row_result_class()
        error_class = self.get_error_result_class()
        new_type, update_type = RowResult.IMPORT_TYPE_NEW, RowResult.IMPORT_TYPE_UPDATE
        batch_size = meta.batch_size
        at_the_end = self._writes_at_the_end  # SQLite: every write in one short transaction after the loop
        creates, updates, deletes = self.create_instances, self.update_instances, self.delete_instances
        report_skipped = meta.report_skipped
        progress, total = self._progress, self._rows_total
        after_init, before_save, after_save = (
            self.after_init_instance,
            self.before_save_instance,
            self.after_save_instance,
        )

        for number, values in enumerate(data, 1):
            row = dict(zip(headers, values))
            kwargs["row_number"] = number
            row_result = row_result_class()
            if store_row_values:
                row_result.row_values = row
            try:
                failed = key_errors.get(number)
                if failed is not None:
                    if isinstance(failed, ValidationError):
                        raise failed
                    raise ValidationError(
                        {name: ValidationError(message, code="invalid") for name, message in failed.items()}
                    )
                key = row_keys[number - 1]
                instance = instances.get(key) if key is not None else None
                new = instance is None
                if new:
                    instance = blank_instance()
                after_init(instance, new, row, **kwargs)
                row_result.import_type = new_type if new else update_type
                if audit:
                    self._audit_snapshots.append((instance, object_values(instance) if instance.pk else None))
                errors: dict[str, list] = {}
                cleaned = {}
                for column in columns:
                    try:
                        value = column.clean(values, row)
                    except ValueError as exc:
                        errors[column.attribute] = [ValidationError(str(exc), code="invalid")]
                        continue
                    if value is not None or column.sets_none:
                        setattr(instance, column.attribute, value)
                        cleaned[column.attribute] = True
                repeated = repeats.get(number)
                if repeated:
                    errors.setdefault(last_key, []).append(
                        ValidationError(
                            f"this key repeats line {repeated + 1}; each row must have its own key.",
                            code="duplicate",
                        )
                    )
                # full_clean(exclude=[errors, resolved relations, fields not imported], no unique/constraints)
                field_errors: dict[str, list] = {}
                for f, column in checks:
                    name = f.name
                    if name in errors:
                        continue
                    if f.is_relation:
                        if (
                            f.is_cached(instance)
                            and getattr(f.get_cached_value(instance), "pk", None) is not None
                        ):
                            continue
                    model_memo = column.model_memo if column is not None and name in cleaned else None
                    if model_memo is not None:
                        cell = values[column.index]
                        if cell is None or type(cell) is str:
                            outcome = model_memo.get(cell, _MISS)
                            if outcome is _MISS:
                                outcome = _validate_field(f, instance)
                                model_memo[cell] = outcome
                            if outcome is not None:
                                if type(outcome) is list:
                                    field_errors[name] = outcome
                                else:
                                    setattr(instance, f.attname, outcome[0])
                            continue
                    outcome = _validate_field(f, instance)
                    if outcome is not None:
                        if type(outcome) is list:
                            field_errors[name] = outcome
                        else:
                            setattr(instance, f.attname, outcome[0])
                full_errors: dict[str, list] = {}
                if field_errors:
                    full_errors = ValidationError(field_errors).update_error_dict(full_errors)
                if has_clean:
                    try:
                        instance.clean()
                    except ValidationError as exc:
                        full_errors = exc.update_error_dict(full_errors)
                if full_errors:
                    errors = ValidationError(full_errors).update_error_dict(errors)
                if errors:
                    raise ValidationError(errors)
                before_save(instance, row, **kwargs)
                (creates if new else updates).append(instance)
                after_save(instance, row, **kwargs)
                row_result.add_instance_info(instance)
                if store_instance:
                    row_result.instance = instance
            except ValidationError as exc:
                row_result.import_type = RowResult.IMPORT_TYPE_INVALID
                row_result.validation_error = exc
            except Exception as exc:
                row_result.import_type = RowResult.IMPORT_TYPE_ERROR
                logger.debug(exc, exc_info=True)
                row_result.errors.append(error_class(exc, row=row, number=number))
            if len(creates) == batch_size and not at_the_end:
                with atomic_if_using_transaction(using_transactions, using=db_alias):
                    self.bulk_create(
                        using_transactions, dry_run, raise_errors, batch_size=batch_size, result=result
                    )
            if len(updates) == batch_size and not at_the_end:
                with atomic_if_using_transaction(using_transactions, using=db_alias):
                    self.bulk_update(
                        using_transactions, dry_run, raise_errors, batch_size=batch_size, result=result
                    )
            if len(deletes) == batch_size and not at_the_end:
                with atomic_if_using_transaction(using_transactions, using=db_alias):
                    self.bulk_delete(using_transactions, dry_run, raise_errors, result=result)
            result.increment_row_result_total(row_result)
            if row_result.errors:
                result.append_error_row(number, row, row_result.errors)
            elif row_result.validation_error:
                result.append_invalid_row(number, row, row_result.validation_error)
            if row_result.import_type != RowResult.IMPORT_TYPE_SKIP or report_skipped:
                result.append_row_result(row_result)
            if progress is not None:
                progress(number, total)

        if at_the_end:
            self._write_at_the_end(dataset, result, dry_run, raise_errors, db_alias, kwargs)
            return result
        with atomic_if_using_transaction(using_transactions, using=db_alias):
            self.bulk_create(using_transactions, dry_run, raise_errors, result=result)
            self.bulk_update(using_transactions, dry_run, raise_errors, result=result)
            self.bulk_delete(using_transactions, dry_run, raise_errors, result=result)
        try:
            with atomic_if_using_transaction(using_transactions, using=db_alias):
                self.after_import(dataset, result, **kwargs)
        except Exception as exc:
            self.handle_import_error(result, exc, raise_errors)
        return result

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self._rows_total = len(dataset)
        self._audit_snapshots: list[tuple[models.Model, dict | None]] = []
        headers = set(dataset.headers or [])
        for field in self.fields.values():
            if isinstance(field.widget, RefWidget) and field.column_name in headers:
                field.widget.preload(dataset[field.column_name])

    def get_import_fields(self):
        # Asked for every row by django-import-export; the answer does not change during an import.
        if getattr(self, "_import_fields", None) is None:
            self._import_fields = super().get_import_fields()
            model = self._meta.model
            imported = {f.attribute for f in self._import_fields if f.attribute}
            # Model fields the file does not set (ids, amounts computed later) need no validation per row.
            self._not_imported = (
                [f.name for f in model._meta.concrete_fields if f.name not in imported] if model else []
            )
        return self._import_fields

    def import_row(self, row, instance_loader, **kwargs):
        self._loader = instance_loader
        row_result = super().import_row(row, instance_loader, **kwargs)
        if self._progress is not None and kwargs.get("row_number"):
            self._progress(kwargs["row_number"], self._rows_total)
        return row_result

    #: Configuration (tiers, templates, rules, escalation steps) switches this on: each object the file creates
    #: or changes is audited as ``<app>.<model>.created|changed`` with before and after, as an admin edit is.
    audit_each_object = False

    def import_instance(self, instance, row, **kwargs):
        if self.audit_each_object:
            self._audit_snapshots.append((instance, object_values(instance) if instance.pk else None))
        errors = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        loader = getattr(self, "_loader", None)
        repeated = getattr(loader, "repeats", {}).get(kwargs.get("row_number"))
        if repeated:
            key = self.fields[self.get_import_id_fields()[-1]]
            errors.setdefault(key.attribute, []).append(
                ValidationError(
                    f"this key repeats line {repeated + 1}; each row must have its own key.", code="duplicate"
                )
            )
        if errors:
            raise ValidationError(errors)

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        """The model's field validation and ``clean()``, without a query per row for uniqueness: the keys are
        checked against the loaded instances and the rest of the file, and the database constraints stay the
        last word (a violation fails the whole file)."""
        errors = dict(import_validation_errors or {})
        # A related object the row named was just read from the database: skip Django's query per row that
        # checks it exists.
        resolved = [
            f.name
            for f in instance._meta.concrete_fields
            if f.is_relation
            and f.is_cached(instance)
            and getattr(f.get_cached_value(instance), "pk", None) is not None
        ]
        try:
            self.get_import_fields()
            instance.full_clean(
                exclude=[*errors, *resolved, *self._not_imported],
                validate_unique=False,
                validate_constraints=False,
            )
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    #: Model fields a subclass sets in ``before_save_instance`` that ``bulk_update`` must write too.
    extra_update_fields: tuple[str, ...] = ()

    def bulk_update(self, using_transactions, dry_run, raise_errors, batch_size=None, result=None):
        """The batch's changed rows written with ``bulk_update_rows`` (one ``UPDATE ... FROM`` per batch, its
        parameters counted per row and column), not Django's ``bulk_update``: its ``CASE WHEN`` batches take
        about twice the parameters SQLite's limit is checked against, so a re-import of a wide file failed
        with "too many SQL variables"; and building those expressions is slower."""
        if self.update_instances and (using_transactions or not dry_run):
            try:
                bulk_update_rows(
                    self.update_instances, self.get_bulk_update_fields(), batch_size=batch_size or 1000
                )
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            finally:
                self.update_instances.clear()

    def get_bulk_update_fields(self):
        ids = set(self.get_import_id_fields())
        names = [f.attribute for name, f in self.fields.items() if name not in ids and f.attribute]
        auto_now = [f.name for f in self._meta.model._meta.concrete_fields if getattr(f, "auto_now", False)]
        return list(dict.fromkeys([*names, *self.extra_update_fields, *auto_now]))

    def before_save_instance(self, instance, row, **kwargs):
        super().before_save_instance(instance, row, **kwargs)
        # bulk_update() does not run pre_save(): keep ``updated_at`` (auto_now) true.
        if instance.pk:
            now = timezone.now()
            for f in instance._meta.concrete_fields:
                if getattr(f, "auto_now", False):
                    setattr(instance, f.attname, now)

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if self.is_dry_run or result.has_errors() or result.has_validation_errors():
            return
        if self.audit_each_object:
            self.log_object_changes(kwargs.get("user"))
        self.log_import(result, **kwargs)

    def log_object_changes(self, user: Any) -> None:
        """Writes ``<app>.<model>.created|changed`` for each object of the file whose values differ from before
        (``before`` is None for a new one; ``after`` carries ``"source": "import"``), in the import's
        transaction. Rows that change nothing write nothing."""
        from .audit import Event, actor_name, log_events

        model = self._meta.model
        keys = [model._meta.get_field(self.fields[k].attribute).attname for k in self.get_import_id_fields()]
        actor = actor_name(user)
        ids: dict[tuple, Any] = {}
        if any(obj.pk is None for obj, _before in self._audit_snapshots):
            # A database that does not return ids from bulk inserts: configuration tables are small.
            ids = {tuple(row[:-1]): row[-1] for row in model._default_manager.values_list(*keys, "pk")}
        events = []
        for obj, before in self._audit_snapshots:
            after = object_values(obj)
            if before == after:
                continue
            pk = obj.pk if obj.pk is not None else ids.get(tuple(getattr(obj, k) for k in keys))
            events.append(
                Event(
                    action=f"{model._meta.app_label}.{model._meta.model_name}.{'changed' if before is not None else 'created'}",
                    actor=actor,
                    object_type=model._meta.label,
                    object_id=str(pk or ""),
                    before=before,
                    after={**after, "source": "import"},
                )
            )
        log_events(events)

    def log_import(self, result: Result, **kwargs) -> None:
        totals = result.totals
        model = self._meta.model
        after = {
            "resource": f"{type(self).__module__}.{type(self).__name__}",
            "file_name": kwargs.get("file_name") or "",
            "sha256": kwargs.get("file_sha256") or "",
            "rows": {
                "total": result.total_rows,
                "new": totals[RowResult.IMPORT_TYPE_NEW],
                "updated": totals[RowResult.IMPORT_TYPE_UPDATE],
                "skipped": totals[RowResult.IMPORT_TYPE_SKIP],
                "errors": totals[RowResult.IMPORT_TYPE_ERROR] + totals[RowResult.IMPORT_TYPE_INVALID],
            },
        }
        if kwargs.get("import_job_id"):
            after["import_job"] = kwargs["import_job_id"]
        log_event(
            IMPORT_COMPLETED,
            actor=kwargs.get("user"),
            object_type=model._meta.label if model else "",
            after=after,
        )

    # --- export -----------------------------------------------------------------------------------------
    def export_field(self, field, instance, **kwargs):
        # A text cell a spreadsheet would run as a formula gets a leading quote (numbers such as -3 stay).
        value = super().export_field(field, instance, **kwargs)
        if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _NUMBER_RE.match(value):
            return "'" + value
        return value

    # --- errors -----------------------------------------------------------------------------------------
    def column_for(self, name: str) -> str:
        """The file column of a model field or resource attribute (``customer`` -> ``customer_ref``)."""
        for field in self.fields.values():
            if name in (field.attribute, field.column_name):
                return field.column_name
        return name

    def error_records(self, result: Result) -> list[dict[str, Any]]:
        """Every error of the import as ``{"line": 7, "column": "phone", "message": "..."}`` (header = line 1;
        ``line`` is None for an error of the whole file, ``column`` None for an error of the whole row)."""
        records: list[dict[str, Any]] = []
        for error in result.base_errors:
            records.append({"line": None, "column": None, "message": describe_exception(error.error)})
        for number, errors in result.row_errors():
            for error in errors:
                records.append(
                    {"line": number + 1, "column": None, "message": describe_exception(error.error)}
                )
        for invalid in result.invalid_rows:
            for name, messages in invalid.error_dict.items():
                column = None if name == NON_FIELD_ERRORS else self.column_for(name)
                for message in messages:
                    records.append({"line": invalid.number + 1, "column": column, "message": str(message)})
        return records

    def error_messages(self, result: Result) -> list[str]:
        """Every error of the import, one line each: ``line 7, column phone: “12ab” is not a phone number.``"""
        return [format_error(record) for record in self.error_records(result)]


def object_values(obj: models.Model) -> dict[str, Any]:
    """An object's editable values as the admin's audit records them (foreign keys as ids, no primary key)."""
    return {k: v for k, v in model_to_dict(obj).items() if k != obj._meta.pk.name}


def format_error(record: dict[str, Any]) -> str:
    """``line 7, column phone: message``, ``line 7: message`` or ``file: message``."""
    if record.get("line") is None:
        return f"file: {record['message']}"
    where = f"line {record['line']}"
    if record.get("column"):
        where += f", column {record['column']}"
    return f"{where}: {record['message']}"


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def file_sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


class BookImportAdminMixin:
    """For ``ImportMixin`` admins of ``BookResource`` resources: the confirmed import carries the uploaded
    file's SHA-256 into the audit event, and the preview lists errors as ``line N, column C: ...``."""

    import_template_name = "admin/loans/import.html"

    def get_import_formats(self):
        """CSV and XLSX only: the formats an import file may have (``import_files``)."""
        return list(FORMATS.values())

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, FileReadError):
            form.add_error("import_file", str(e))
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def import_action(self, request, **kwargs):
        """A file of more than ``IMPORT_BACKGROUND_THRESHOLD`` data rows is not read in the request: it is
        stored, its dry run (or, with the confirmation step switched off, its import) is queued as an
        ``ImportJob`` and the browser goes to the job's result page. Smaller files keep the usual flow."""
        if request.method == "POST" and self.has_import_permission(request):
            form = self.create_import_form(request)
            if form.is_valid():
                input_format = self.get_import_formats()[int(form.cleaned_data["format"])]
                upload = form.cleaned_data["import_file"]
                data = b"".join(upload.chunks())
                format_name = dotted_path(input_format)
                try:
                    rows = count_rows(data, format_name)
                except Exception:  # unreadable: the usual flow shows the library's message on the form
                    rows = 0
                resource_class = self.choose_import_resource_class(form, request)
                if rows > background_threshold() and issubclass(resource_class, BookResource):
                    job = start_import_job(
                        request.user,
                        resource_class,
                        data,
                        file_name=upload.name,
                        format_name=format_name,
                        dry_run=not self.is_skip_import_confirm_enabled(),
                    )
                    admin_messages.info(
                        request,
                        _(
                            "The file has %(rows)s rows: it is checked in the background; this page shows the result."
                        )
                        % {"rows": rows},
                    )
                    return HttpResponseRedirect(reverse("imports:job", args=[job.pk]))
        return super().import_action(request, **kwargs)

    def process_import(self, request, **kwargs):
        confirm_form = self.create_confirm_form(request)
        if self.has_import_permission(request) and confirm_form.is_valid():
            import_formats = self.get_import_formats()
            input_format = import_formats[int(confirm_form.cleaned_data["format"])](
                encoding=self.from_encoding
            )
            storage = self.get_tmp_storage_class()(
                name=confirm_form.cleaned_data["import_file_name"],
                encoding=None if input_format.is_binary() else self.from_encoding,
                read_mode=input_format.get_read_mode(),
                **self.get_tmp_storage_class_kwargs(),
            )
            request._import_file_sha256 = file_sha256(storage.read())
        return super().process_import(request, **kwargs)

    def get_import_data_kwargs(self, **kwargs):
        request = kwargs.get("request")
        kwargs = super().get_import_data_kwargs(**kwargs)
        kwargs.pop("request", None)
        sha = getattr(request, "_import_file_sha256", None)
        if sha:
            kwargs["file_sha256"] = sha
        return kwargs


def run_import(
    resource: BookResource,
    data: bytes | str,
    *,
    format_name: str = "CSV",
    file_name: str = "",
    dry_run: bool = False,
    user: Any = None,
    progress: Callable[[int, int | None], None] | None = None,
    import_job_id: int | None = None,
    preview_rows: bool = True,
) -> tuple[Result, list[str]]:
    """Import ``data`` (the bytes of a CSV or XLSX file) with ``resource``; all or nothing.

    Returns the django-import-export result and the error lines (empty when it succeeded); the same errors
    as ``{line, column, message}`` are on ``result.book_error_records``. Nothing is saved when there is any
    error or when ``dry_run``. ``progress(rows_done, rows_total)`` is called after every row, inside the
    import's transaction (on SQLite, while the file is read, before its one write transaction opens).
    ``format_name`` is ``CSV`` or ``XLSX`` (or a dotted path ending so); raises
    ``FileReadError`` for a file that cannot be read as that format (``import_files.read_dataset``).
    """
    dataset = read_dataset(data, format_name, file_name or None)
    extra: dict[str, Any] = {"import_job_id": import_job_id} if import_job_id else {}
    if not preview_rows:  # nobody looks at each row's changes: a dry run takes the fast path too
        extra["preview_rows"] = False
    result = resource.import_data(
        dataset,
        dry_run=dry_run,
        file_name=file_name,
        file_sha256=file_sha256(data),
        user=user,
        progress=progress,
        **extra,
    )
    return result, result.book_errors


# --- Large imports in the background ----------------------------------------------------------------------
#
# An admin upload with more data rows than ``settings.IMPORT_BACKGROUND_THRESHOLD`` is stored under
# ``settings.IMPORT_ROOT`` and imported by a django-q2 task (``run_import_job``) through ``run_import``, so the
# request returns at once and the result page follows the job.
#
# Progress while the import's transaction is open: on PostgreSQL the task updates the job row from a second
# connection of its own (committed at once, so visible to the result page while the import is not). On
# SQLite the import transaction holds the database's only write lock (IMMEDIATE transactions), so no other
# connection can write the row: the task writes a small progress file beside the uploads instead
# (``IMPORT_ROOT/progress/<job>.json``; the worker must see IMPORT_ROOT anyway to read the upload). Not the
# cache: the embedded default is a per-process memory cache the web process cannot read.

#: The job's progress is written at most every this many rows.
PROGRESS_EVERY = 500


class ImportJobError(Exception):
    """A background import cannot be started or confirmed (bad file, file changed, nothing to confirm)."""


def background_threshold() -> int:
    return int(getattr(settings, "IMPORT_BACKGROUND_THRESHOLD", 5000))


def import_root() -> Path:
    return Path(settings.IMPORT_ROOT)


def dotted_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_permission(resource_class: type[resources.ModelResource]) -> str:
    """``<app_label>.import_<model>``: what django-import-export's admin asks of whoever imports this model."""
    opts = resource_class._meta.model._meta
    code = getattr(settings, "IMPORT_EXPORT_IMPORT_PERMISSION_CODE", None) or "import"
    return f"{opts.app_label}.{get_permission_codename(code, opts)}"


def may_import(user, resource_class: type[resources.ModelResource]) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(import_permission(resource_class)))


def job_resource_class(job: ImportJob) -> type[BookResource]:
    """The job's resource class; ``ImportJobError`` unless it is a ``BookResource``."""
    try:
        resource_class = import_string(job.resource)
    except ImportError as exc:
        raise ImportJobError(_("Unknown resource “%(resource)s”.") % {"resource": job.resource}) from exc
    if not (isinstance(resource_class, type) and issubclass(resource_class, BookResource)):
        raise ImportJobError(
            _("“%(resource)s” is not an import of the back office.") % {"resource": job.resource}
        )
    return resource_class


def may_see_import_job(user, job: ImportJob) -> bool:
    """The job's owner, or a user holding the import permission of the job's resource."""
    if user is None or not user.is_active:
        return False
    if job.user_id == user.pk:
        return True
    try:
        return may_import(user, job_resource_class(job))
    except ImportJobError:
        return False


def store_upload(data: bytes, file_name: str) -> str:
    """Write an upload under IMPORT_ROOT (complete or not at all) and return its path relative to it."""
    suffix = "".join(ch for ch in Path(file_name).suffix.lower() if ch.isalnum() or ch == ".")[:10]
    relative = Path(timezone.now().strftime("%Y/%m")) / f"{uuid.uuid4().hex}{suffix}"
    path = import_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write_private(partial, data)
    os.replace(partial, path)
    return str(relative)


def _enqueue(job_id: int) -> None:
    def enqueue():
        from django_q.tasks import async_task

        async_task("core.importing.run_import_job", job_id, task_name=f"import-{job_id}", group="imports")

    # After commit: a worker must find the job row (and the task must not run if the request rolls back).
    transaction.on_commit(enqueue)


def start_import_job(
    user,
    resource_class: type[BookResource],
    data: bytes,
    *,
    file_name: str,
    format_name: str,
    dry_run: bool = True,
) -> ImportJob:
    """Store ``data`` under IMPORT_ROOT, create the ``ImportJob`` of ``user`` and queue its task (after commit).

    Raises ``PermissionError`` when the user may not import this resource's model, ``ImportJobError`` when
    the resource is not a ``BookResource``, ``OSError`` when the file cannot be stored."""
    from .models import ImportJob

    if not (isinstance(resource_class, type) and issubclass(resource_class, BookResource)):
        raise ImportJobError(f"{resource_class!r} is not an import of the back office.")
    if not may_import(user, resource_class):
        raise PermissionError(
            f"{user} may not import {resource_class._meta.model._meta.verbose_name_plural}."
        )
    try:
        rows = count_rows(data, format_name)
    except Exception:  # an unreadable file: the task reports why, with the import's own message
        rows = None
    job = ImportJob.objects.create(
        user=user,
        resource=dotted_path(resource_class),
        file_name=Path(file_name).name[:255] or "upload",
        file_path=store_upload(data, file_name),
        file_sha256=file_sha256(data),
        format=format_name,
        is_dry_run=dry_run,
        rows_total=rows,
    )
    _enqueue(job.pk)
    return job


def confirm_import_job(user, dry_run_job_id: int) -> ImportJob:
    """Queue the real import of a successful dry run's stored file (a new job, ``confirmed_from`` the dry run).

    Confirming twice returns the job of the first confirmation. Raises ``PermissionError`` when the user may
    not import the resource, ``ImportJobError`` when the job is not a successful dry run or its stored file
    is missing or no longer has the SHA-256 the dry run checked."""
    from .models import ImportJob

    dry = ImportJob.objects.get(pk=dry_run_job_id)
    resource_class = job_resource_class(dry)
    if not may_import(user, resource_class):
        raise PermissionError(
            f"{user} may not import {resource_class._meta.model._meta.verbose_name_plural}."
        )
    if not dry.is_dry_run or dry.status != ImportJob.Status.SUCCEEDED:
        raise ImportJobError(_("Only a dry run without errors can be confirmed."))
    existing = ImportJob.objects.filter(confirmed_from=dry).first()
    if existing is not None:
        return existing
    try:
        data = (import_root() / dry.file_path).read_bytes()
    except OSError as exc:
        raise ImportJobError(_("The uploaded file is not stored any more: upload it again.")) from exc
    if file_sha256(data) != dry.file_sha256:
        raise ImportJobError(_("The stored file changed since the dry run: upload it again."))
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                user=user,
                resource=dry.resource,
                file_name=dry.file_name,
                file_path=dry.file_path,
                file_sha256=dry.file_sha256,
                format=dry.format,
                is_dry_run=False,
                confirmed_from=dry,
                rows_total=dry.rows_total,
            )
    except IntegrityError:  # confirmed at the same moment by another request
        return ImportJob.objects.get(confirmed_from=dry)
    _enqueue(job.pk)
    return job


def progress_path(job_id: int) -> Path:
    return import_root() / "progress" / f"{job_id}.json"


class ProgressReporter:
    """``progress(rows_done, rows_total)`` for ``run_import``: writes the job's progress every PROGRESS_EVERY
    rows where the result page can read it while the import's transaction is still open (see above)."""

    def __init__(self, job_id: int, every: int | None = None):
        self.job_id = job_id
        self.every = every or PROGRESS_EVERY
        self.last = 0
        self.use_file = connection.vendor == "sqlite"
        self._side = None

    def __call__(self, done: int, total: int | None) -> None:
        if done - self.last < self.every and done != total:
            return
        self.last = done
        if self.use_file:
            path = progress_path(self.job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(json.dumps({"rows_done": done, "rows_total": total}))
            os.replace(partial, path)
            return
        from .models import ImportJob

        if self._side is None:
            # Its own connection, in autocommit: the update is visible before the import commits.
            main = connections[DEFAULT_DB_ALIAS]
            self._side = type(main)(dict(main.settings_dict), alias=DEFAULT_DB_ALIAS)
        table = self._side.ops.quote_name(ImportJob._meta.db_table)
        with self._side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET rows_done = %s, rows_total = COALESCE(%s, rows_total) WHERE id = %s",
                [done, total, self.job_id],
            )

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None
        progress_path(self.job_id).unlink(missing_ok=True)


def current_progress(job: ImportJob) -> tuple[int, int | None]:
    """``(rows_done, rows_total)`` of a job as the result page shows it (the progress file while it runs)."""
    done, total = job.rows_done, job.rows_total
    if job.status == job.Status.RUNNING:
        try:
            data = json.loads(progress_path(job.pk).read_text())
        except (OSError, ValueError):
            data = {}
        done = max(done, int(data.get("rows_done") or 0))
        total = data.get("rows_total") or total
    return done, total


def _cap_errors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .models import ImportJob

    return records[: ImportJob.MAX_STORED_ERRORS]


def run_import_job(job_id: int) -> dict[str, Any]:
    """Run one queued import job (the django-q2 task) through ``run_import``: all or nothing, errors by line
    and column, ``backoffice.import.completed`` in the audit trail after a real import.

    Safe to run twice: a conditional UPDATE claims only a queued job (or one left running by a worker killed
    at the cluster's timeout, whose transaction was rolled back), so a second run of a finished job returns
    without importing. Any failure is stored on the job (status ``failed``, errors), never raised."""
    from .models import ImportJob

    now = timezone.now()
    if not claim_job(ImportJob, job_id, now):
        return {"job": job_id, "skipped": "not queued"}
    job = ImportJob.objects.select_related("user").get(pk=job_id)
    reporter = ProgressReporter(job_id)
    try:
        resource_class = job_resource_class(job)
        data = (import_root() / job.file_path).read_bytes()
        if file_sha256(data) != job.file_sha256:
            raise ImportJobError(_("The stored file does not have the SHA-256 it was uploaded with."))
        result, _lines = run_import(
            resource_class(),
            data,
            format_name=job.format,
            file_name=job.file_name,
            dry_run=job.is_dry_run,
            user=job.user,
            progress=reporter,
            import_job_id=job.pk,
            preview_rows=False,
        )
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            error_count=1,
            errors=[{"line": None, "column": None, "message": describe_exception(exc)[:2000]}],
            finished_at=timezone.now(),
        )
        return {"job": job_id, "failed": describe_exception(exc)}
    finally:
        reporter.close()
    records = result.book_error_records
    totals = result.totals
    succeeded = not records
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.SUCCEEDED if succeeded else ImportJob.Status.FAILED,
        rows_total=result.total_rows,
        rows_done=result.total_rows,
        # A failed file saved nothing: it has no new or updated rows.
        rows_new=totals[RowResult.IMPORT_TYPE_NEW] if succeeded else 0,
        rows_updated=totals[RowResult.IMPORT_TYPE_UPDATE] if succeeded else 0,
        rows_skipped=totals[RowResult.IMPORT_TYPE_SKIP] if succeeded else 0,
        error_count=len(records),
        errors=_cap_errors(records),
        finished_at=timezone.now(),
    )
    outcome = "succeeded" if succeeded else "failed"
    return {"job": job_id, outcome: True, "rows": result.total_rows, "errors": len(records)}


__all__ = [
    "IMPORT_COMPLETED",
    "BookImportAdminMixin",
    "BookResource",
    "BoolWidget",
    "ISODateTimeWidget",
    "ISODateWidget",
    "IntWidget",
    "KeyedInstanceLoader",
    "ListWidget",
    "LocalTimeWidget",
    "MoneyWidget",
    "RefWidget",
    "TextWidget",
    "ImportJobError",
    "ProgressReporter",
    "confirm_import_job",
    "count_rows",
    "FileReadError",
    "current_progress",
    "file_sha256",
    "format_error",
    "may_import",
    "may_see_import_job",
    "run_import",
    "run_import_job",
    "start_import_job",
]
