"""The import fast path: what django-import-export does for each row, without its per-row overhead.

``tests/test_import_fast_path.py`` holds it to the library's own loop (the same rows saved, the same errors)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.forms.models import model_to_dict
from import_export.fields import NOT_PROVIDED
from import_export.results import Result, RowResult
from import_export.utils import atomic_if_using_transaction

from .keys import KeyedInstanceLoader, key_part
from .widgets import (
    BoolWidget,
    IntWidget,
    ISODateTimeWidget,
    ISODateWidget,
    ListWidget,
    LocalTimeWidget,
    MoneyWidget,
    RefWidget,
    TextWidget,
)

logger = logging.getLogger(__name__)


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


def object_values(obj: models.Model) -> dict[str, Any]:
    """An object's editable values as the admin's audit records them (foreign keys as ids, no primary key)."""
    return {k: v for k, v in model_to_dict(obj).items() if k != obj._meta.pk.name}


class FastPathMixin:
    """The fast path of ``BookResource``: a real import without django-import-export's per-row machinery
    (``import_rows_fast``), and on SQLite the file read and checked before its one short write transaction
    opens (``import_then_write``). ``BookResource.can_import_fast`` says when it applies."""

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
                    parts.append(key_part(column.clean(values)))
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
