"""The import fast path: what django-import-export does for each row, without its per-row overhead, a chunk of
rows at a time (``chunk_rows``), so that a file of a million rows imports in bounded memory.

Each chunk's references and existing rows are loaded for that chunk, its rows checked, then written (in the
import's one transaction: the file stays all or nothing) or, on SQLite, kept in a temporary file until the
whole file has been read (``import_then_write``). Of the rows only the first ``rows_kept`` results and the first
``error_rows_kept`` bad rows are kept; the totals count every row. A key that repeats a row of an earlier chunk
is found after the last chunk from each row's key hash (``chunks.RowLedger``) and reported on its line.

``tests/test_import_fast_path.py`` holds it to the library's own loop (the same rows saved, the same errors)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from import_export.results import Result
from import_export.utils import atomic_if_using_transaction

from .checking import ChunkCheckMixin
from .chunks import ChunkRows, RowLedger, Spill, batched
from .columns import Column, blank_instance_factory
from .keys import KeyedInstanceLoader, key_part

logger = logging.getLogger(__name__)

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


@contextmanager
def write_page_cache(alias: str) -> Iterator[None]:
    """On SQLite, a page cache of ``IMPORT_SQLITE_CACHE_MB`` for the import's write transaction (the
    connection's own size back after it): with SQLite's default 2 MB, the indexes of the tables a large file
    writes into (its rows, the audit trail) are read again from the file for nearly every row. 0 (the default)
    changes nothing: the cache counts in the import's memory."""
    connection = connections[alias]
    if connection.vendor != "sqlite" or settings.IMPORT_SQLITE_CACHE_MB <= 0:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (before,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = {-1024 * int(settings.IMPORT_SQLITE_CACHE_MB):d}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(before):d}")


class _Plan:
    """What the fast path works out once per file: its columns, key columns and model checks."""

    def __init__(self, resource, headers: list[str]):
        meta = resource._meta
        model = meta.model
        opts = model._meta
        self.headers = headers
        import_fields = resource.get_import_fields()
        model_fields = {f.name: f for f in opts.fields}
        self.columns = [
            Column(field, headers, model_fields.get(field.attribute))
            for field in import_fields
            if field.attribute and field.column_name in headers and not field.readonly
        ]
        by_field = {id(column.field): column for column in self.columns}
        id_fields = resource.get_import_id_fields()
        self.key_columns = [by_field[id(resource.fields[k])] for k in id_fields]
        self.last_key = resource.fields[id_fields[-1]].attribute if self.key_columns else None
        # The model's validation, as ``validate_instance`` runs ``full_clean``: the fields the file sets.
        not_imported = set(resource._not_imported)
        by_attribute = {column.attribute: column for column in self.columns}
        self.checks = [
            (f, by_attribute.get(f.name))
            for f in opts.fields
            if f.name not in not_imported and not f.generated
        ]
        self.has_clean = model.clean is not models.Model.clean
        # What tells whether a row changed its object: every stored value but the id and the moments Django
        # sets itself (``updated_at``).
        self.compared = [
            f.attname
            for f in opts.concrete_fields
            if not f.primary_key
            and not getattr(f, "auto_now", False)
            and not getattr(f, "auto_now_add", False)
        ]
        self.blank_instance = blank_instance_factory(model)

    def read_key(self, values) -> tuple[tuple | None, Any]:
        """``(key, None)``, ``(None, None)`` for a row without a (whole) key, or ``(None, failure)``: the
        columns' messages, or the ``ValidationError`` its row raises again (as ``get_instance`` would)."""
        parts, failed = [], {}
        for column in self.key_columns:
            try:
                parts.append(key_part(column.clean(values)))
            except ValueError as exc:
                failed[column.attribute] = str(exc)
            except ValidationError as exc:
                return None, exc
        if failed:
            return None, failed
        if any(v in (None, "") for v in parts):
            return None, None
        return tuple(parts), None


class FastPathMixin(ChunkCheckMixin):
    """The fast path of ``BookResource``: a real import without django-import-export's per-row machinery
    (``import_rows_fast``), a chunk at a time, and on SQLite the file read and checked before its one short write
    transaction opens (``import_then_write``). ``BookResource.can_import_fast`` says when it applies."""

    #: Rows read, checked and written at a time (their references and existing rows loaded for them).
    chunk_rows = 2000
    #: Row results kept on the result: the first rows' (the totals count every row).
    rows_kept = 1000
    #: Bad rows listed with their errors; more are counted (``result.unlisted_error_rows``).
    error_rows_kept = 1000
    #: Set while the fast path runs: references are loaded a chunk at a time (``preload_chunk``).
    _chunked = False

    def preload_chunk(self, rows: ChunkRows) -> None:
        """Load what the rows of one chunk refer to before they are read (a resource adds its own)."""

    # --- SQLite: a short write transaction ------------------------------------------------------------------
    #: Set while ``import_then_write`` runs: the checked rows wait in a temporary file until the file is read.
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
        read, which never blocks another connection in WAL mode), the checked rows of each chunk kept in a
        temporary file; then write them all, apply what follows from them (``after_import``) and audit the
        import in ONE transaction, rolled back when anything failed or for a dry run. A row read in the first
        step that changed before the second is overwritten (or its constraint fails the whole file), as if the
        import had come a moment later."""
        self._writes_at_the_end = True
        try:
            return self.import_rows_fast(dataset, dry_run, raise_errors, True, **kwargs)
        finally:
            self._writes_at_the_end = False

    def _write_at_the_end(self, dataset, result, dry_run, raise_errors, db_alias, kwargs, spill) -> None:
        with write_page_cache(db_alias), transaction.atomic(using=db_alias):
            if not (result.has_errors() or result.has_validation_errors()):
                # Nothing of a file with errors is kept: it writes nothing (after_import still sees the result).
                with transaction.atomic(using=db_alias):
                    batch_size = self._meta.batch_size
                    for creates, updates in spill.chunks():
                        self.create_instances[:] = creates
                        self.update_instances[:] = updates
                        self.bulk_create(True, dry_run, raise_errors, batch_size=batch_size, result=result)
                        self.bulk_update(True, dry_run, raise_errors, batch_size=batch_size, result=result)
            self.create_instances.clear()
            self.update_instances.clear()
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
        # django-import-export's own loop reads a whole table (the preview, small files).
        if hasattr(dataset, "to_dataset"):
            dataset = dataset.to_dataset()
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
        once, the keys are read once per chunk, no diff is built, and the cycle collector waits until the
        rows are written (``cyclic_gc_paused``). Rows are written with ``bulk_create`` / ``bulk_update`` a
        chunk at a time, none after the first error; the caller's transaction makes the file all or nothing.
        ``dataset`` is a ``rows.RowSource`` (or a tablib ``Dataset``).
        """
        self._chunked = True
        try:
            with cyclic_gc_paused():
                return self._import_rows_fast(dataset, dry_run, raise_errors, using_transactions, **kwargs)
        finally:
            self._chunked = False

    def _import_rows_fast(self, source, dry_run, raise_errors, using_transactions, **kwargs) -> Result:
        result = self.get_result_class()()
        result.diff_headers = self.get_diff_headers()
        result.total_rows = len(source)
        result.unlisted_error_rows = 0
        db_alias = self.get_db_connection_name()
        try:
            with atomic_if_using_transaction(using_transactions, using=db_alias):
                self.before_import(source, **kwargs)
            self._check_import_id_fields(source.headers)
        except Exception as exc:
            self.handle_import_error(result, exc, raise_errors)
        meta = self._meta
        if not meta.store_instance:
            meta.store_instance = kwargs.get("retain_instance_in_row_result", False)
        kwargs.update({"dry_run": dry_run, "using_transactions": using_transactions})

        plan = _Plan(self, list(source.headers))
        self._loader = KeyedInstanceLoader(self, None)
        ledger = RowLedger()
        kept: dict[int, Any] = {}
        at_the_end = self._writes_at_the_end  # SQLite: every write in one short transaction after the read
        spill = Spill(meta.model, db_alias) if at_the_end else None
        try:
            for chunk in batched(enumerate(source, 1), max(1, self.chunk_rows)):
                self._import_chunk(chunk, plan, ledger, result, kept, kwargs)
                failed = result.has_errors() or result.has_validation_errors()
                if failed:  # nothing of the file is kept: no more writes
                    self.create_instances.clear()
                    self.update_instances.clear()
                    self.delete_instances.clear()
                elif at_the_end:
                    spill.add(self.create_instances, self.update_instances)
                    self.create_instances.clear()
                    self.update_instances.clear()
                else:
                    self._write_chunk(using_transactions, dry_run, raise_errors, db_alias, result)
                for column in plan.columns:
                    column.trim()
            self._report_repeats_across_chunks(source, plan, ledger, result, kept)
            kwargs.pop("unchanged", None)
            if at_the_end:
                self._write_at_the_end(source, result, dry_run, raise_errors, db_alias, kwargs, spill)
                return result
        finally:
            if spill is not None:
                spill.close()
        try:
            with atomic_if_using_transaction(using_transactions, using=db_alias):
                self.after_import(source, result, **kwargs)
        except Exception as exc:
            self.handle_import_error(result, exc, raise_errors)
        return result

    def _write_chunk(self, using_transactions, dry_run, raise_errors, db_alias, result) -> None:
        batch_size = self._meta.batch_size
        with atomic_if_using_transaction(using_transactions, using=db_alias):
            self.bulk_create(using_transactions, dry_run, raise_errors, batch_size=batch_size, result=result)
            self.bulk_update(using_transactions, dry_run, raise_errors, batch_size=batch_size, result=result)
            self.bulk_delete(using_transactions, dry_run, raise_errors, result=result)
