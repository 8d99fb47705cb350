"""What every import of the product shares (django-import-export).

``BookResource`` is the base of every resource of the product (``loans.resources``,
``notifications.resources``, ``debt_collection.resources``). It makes an import all-or-nothing, runs the model
validation of each row, reports each bad row as ``line 7, column phone: “12ab” is not a phone number.`` (the
header is line 1) and writes ``backoffice.import.completed`` to the audit trail after a successful import.
``run_import`` imports the bytes of a file with a resource."""

from __future__ import annotations

import copy
import difflib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.utils import timezone
from import_export import resources, widgets
from import_export.results import Result, RowResult

from ..audit import Event, actor_name, log_event, log_events
from ..bulk import bulk_update_rows, insert_rows
from .chunks import ChunkRows
from .columns import object_values
from .fast_path import FastPathMixin
from .files import read_blocks
from .keys import KeyedInstanceLoader
from .rows import RowSource, as_source, open_rows
from .widgets import _NUMBER_RE, FORMULA_PREFIXES, RefWidget, _text

IMPORT_COMPLETED = "backoffice.import.completed"


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


def _inserted_fields(model) -> list:
    """The columns ``BookResource.bulk_create`` takes from the objects: all but the primary key, a database
    default and the moments Django sets itself (``insert_rows`` gives those the moment of the insert, as
    ``bulk_create``'s ``pre_save`` does)."""
    return [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key
        and f.db_default is models.NOT_PROVIDED
        and not getattr(f, "auto_now", False)
        and not getattr(f, "auto_now_add", False)
    ]


class BookResource(FastPathMixin, resources.ModelResource):
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
        # The rows as they are read (a file's ``RowSource``, or a tablib Dataset read the same way).
        dataset = as_source(dataset)
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

    # --- the header ---------------------------------------------------------------------------------------
    def expected_header(self) -> list[str]:
        """The file's columns, in order: the column names of the resource's import fields (SPEC.md)."""
        return [f.column_name for f in self.get_import_fields() if f.column_name]

    def header_error(self, dataset) -> HeaderError | None:
        """``HeaderError`` naming every unknown, missing and repeated column of the file (and the expected
        header), or None when the file's header is the resource's (in any order). Spaces around a column name
        are dropped; a column without a name and without a value is ignored (spreadsheets export those).
        ``dataset`` is a ``rows.RowSource`` or a tablib Dataset (its header is tidied in place)."""
        expected = self.expected_header()
        source = as_source(dataset)
        raw = list(source.headers or [])
        names = [_text(name) for name in raw]
        empty = {i for i, name in enumerate(names) if name == "" and not source.column_has_values(i)}
        if empty:
            keep = [i for i in range(len(names)) if i not in empty]
            source.use_columns(keep, [names[i] for i in keep])
        elif names != raw:
            source.use_columns(None, names)
        names = list(source.headers or [])
        known = set(expected)
        unknown = [name for name in dict.fromkeys(names) if name not in known]
        missing = [name for name in expected if name not in names]
        repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
        if not (unknown or missing or repeated):
            return None
        return HeaderError(unknown=unknown, missing=missing, repeated=repeated, expected=expected)

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

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        self._rows_total = len(dataset)
        self._audit_snapshots: list[tuple[models.Model, dict | None]] = []
        if self._chunked:
            return  # the fast path loads references a chunk at a time (``preload_chunk``)
        headers = set(dataset.headers or [])
        for field in self.fields.values():
            if isinstance(field.widget, RefWidget) and field.column_name in headers:
                field.widget.preload(dataset[field.column_name])

    def preload_chunk(self, rows: ChunkRows) -> None:
        """Every reference of the chunk's rows loaded in one query per referenced model."""
        super().preload_chunk(rows)
        for field in self.fields.values():
            if isinstance(field.widget, RefWidget) and field.column_name in rows:
                field.widget.preload(rows.column(field.column_name))

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

    def bulk_create(self, using_transactions, dry_run, raise_errors, batch_size=None, result=None):
        """The fast path's new rows written with ``insert_rows`` (their stored values, no model object made for
        the insert, no ids read back) when nothing needs their ids afterwards: not a configuration import
        (``audit_each_object`` names each object by its id), not asked to keep the instances. Django's
        ``bulk_create`` prepared every value of a payments file through its field's chain of calls: more time
        than the database took to store the rows. Otherwise ``bulk_create`` as django-import-export calls it."""
        if not self._chunked or self.audit_each_object or self._meta.store_instance:
            return super().bulk_create(using_transactions, dry_run, raise_errors, batch_size, result)
        if self.create_instances and (using_transactions or not dry_run):
            try:
                model = self._meta.model
                fields = _inserted_fields(model)
                attnames = [f.attname for f in fields]
                names = [f.name for f in fields]
                objs, step = self.create_instances, batch_size or len(self.create_instances)
                for start in range(0, len(objs), step):  # the statements bulk_create would run
                    rows = [[getattr(obj, a) for a in attnames] for obj in objs[start : start + step]]
                    insert_rows(model, names, rows, batch_size=step)
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            finally:
                self.create_instances.clear()

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
        for error_row in result.error_rows:
            for error in error_row.errors:
                records.append(
                    {"line": error_row.number + 1, "column": None, "message": describe_exception(error.error)}
                )
        for invalid in result.invalid_rows:
            for name, messages in invalid.error_dict.items():
                column = None if name == NON_FIELD_ERRORS else self.column_for(name)
                for message in messages:
                    records.append({"line": invalid.number + 1, "column": column, "message": str(message)})
        unlisted = getattr(result, "unlisted_error_rows", 0)
        if unlisted:
            listed = len(result.error_rows) + len(result.invalid_rows)
            records.append(
                {
                    "line": None,
                    "column": None,
                    "message": f"{unlisted} more rows have errors (the first {listed} are listed).",
                }
            )
        return records

    def error_messages(self, result: Result) -> list[str]:
        """Every error of the import, one line each: ``line 7, column phone: “12ab” is not a phone number.``"""
        return [format_error(record) for record in self.error_records(result)]


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


def file_sha256(data: bytes | str | Path) -> str:
    """The SHA-256 of a file's bytes, or of the file at a path (read a block at a time)."""
    if isinstance(data, Path):
        digest = hashlib.sha256()
        for block in read_blocks(data):
            digest.update(block)
        return digest.hexdigest()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def run_import(
    resource: BookResource,
    data: bytes | str | Path,
    *,
    format_name: str = "CSV",
    file_name: str = "",
    dry_run: bool = False,
    user: Any = None,
    progress: Callable[[int, int | None], None] | None = None,
    import_job_id: int | None = None,
    preview_rows: bool = True,
) -> tuple[Result, list[str]]:
    """Import ``data`` (the bytes of a CSV or XLSX file, or its path) with ``resource``; all or nothing. The
    file is read as it is imported (``rows.open_rows``), a chunk of rows at a time on the fast path.

    Returns the django-import-export result and the error lines (empty when it succeeded); the same errors
    as ``{line, column, message}`` are on ``result.book_error_records``. Nothing is saved when there is any
    error or when ``dry_run``. ``progress(rows_done, rows_total)`` is called after every row, inside the
    import's transaction (on SQLite, while the file is read, before its one write transaction opens).
    ``format_name`` is ``CSV`` or ``XLSX`` (or a dotted path ending so); raises
    ``FileReadError`` for a file that cannot be read as that format.
    """
    dataset: RowSource = open_rows(data, format_name, file_name or None)
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
