"""The fast path's work on one chunk of rows: each row's key, existing object, cells, model validation and hooks,
as django-import-export's ``import_row`` does them; and after the last chunk, the keys that repeat a row of an
earlier chunk (``FastPathMixin`` runs both)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from import_export.results import RowResult

from .chunks import ChunkRows, RowLedger, batched
from .columns import MISS, object_values, validate_field

logger = logging.getLogger(__name__)

INVALID = RowResult.IMPORT_TYPE_INVALID


def repeat_error(first_line: int) -> ValidationError:
    return ValidationError(
        f"this key repeats line {first_line + 1}; each row must have its own key.", code="duplicate"
    )


class ChunkCheckMixin:
    """``_import_chunk`` and ``_report_repeats_across_chunks`` of the fast path."""

    def _keep_row(self, result, kept: dict, number: int, row_result) -> None:
        """The row's result on ``result.rows`` when it is one of the first rows or a row with an exception."""
        if len(kept) < self.rows_kept or (
            row_result.errors and len(result.error_rows) <= self.error_rows_kept
        ):
            if row_result.import_type != RowResult.IMPORT_TYPE_SKIP or self._meta.report_skipped:
                result.append_row_result(row_result)
                kept[number] = row_result

    def _add_bad_row(self, result, number: int, row: dict, row_result) -> None:
        if len(result.invalid_rows) + len(result.error_rows) >= self.error_rows_kept:
            result.unlisted_error_rows += 1
        elif row_result.errors:
            result.append_error_row(number, row, row_result.errors)
        else:
            result.append_invalid_row(number, row, row_result.validation_error)

    def _import_chunk(self, chunk, plan, ledger: RowLedger, result, kept: dict, kwargs: dict) -> None:
        headers = plan.headers
        self.preload_chunk(ChunkRows(headers, chunk))

        # The keys: read once for the chunk, the existing rows of the chunk's keys loaded at once.
        loader = self._loader
        row_keys: dict[int, tuple] = {}
        key_errors: dict[int, Any] = {}
        first_line: dict[tuple, int] = {}
        repeats: dict[int, int] = {}
        keys = []
        for number, values in chunk:
            key, failed = plan.read_key(values)
            if failed is not None:
                key_errors[number] = failed
            elif key is not None:
                row_keys[number] = key
                if key in first_line:
                    repeats[number] = first_line[key]
                else:
                    first_line[key] = number
                    keys.append(key)
        loader.instances = {}
        loader._preload(keys, related=False)
        instances = loader.instances

        meta = self._meta
        store_instance, store_row_values = meta.store_instance, meta.store_row_values
        columns, checks, last_key = plan.columns, plan.checks, plan.last_key
        has_clean, blank_instance = plan.has_clean, plan.blank_instance
        audit = self.audit_each_object
        row_result_class = self.get_row_result_class()
        error_class = self.get_error_result_class()
        new_type, update_type = RowResult.IMPORT_TYPE_NEW, RowResult.IMPORT_TYPE_UPDATE
        creates, updates = self.create_instances, self.update_instances
        compared = plan.compared
        progress, total = self._progress, self._rows_total
        after_init, before_save, after_save = (
            self.after_init_instance,
            self.before_save_instance,
            self.after_save_instance,
        )

        for number, values in chunk:
            row = dict(zip(headers, values))
            kwargs["row_number"] = number
            row_result = row_result_class()
            if store_row_values:
                row_result.row_values = row
            key = row_keys.get(number)
            try:
                failed = key_errors.get(number)
                if failed is not None:
                    if isinstance(failed, ValidationError):
                        raise failed
                    raise ValidationError(
                        {name: ValidationError(message, code="invalid") for name, message in failed.items()}
                    )
                instance = instances.get(key) if key is not None else None
                new = instance is None
                if new:
                    instance = blank_instance()
                    before = None
                else:
                    before = [getattr(instance, name) for name in compared]
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
                    errors.setdefault(last_key, []).append(repeat_error(repeated))
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
                            outcome = model_memo.get(cell, MISS)
                            if outcome is MISS:
                                surely_valid = column.surely_valid
                                if surely_valid is not None and surely_valid(getattr(instance, f.attname)):
                                    continue  # a distinct reference or moment: its field would keep it
                                outcome = validate_field(f, instance)
                                model_memo[cell] = outcome
                            if outcome is not None:
                                if type(outcome) is list:
                                    field_errors[name] = outcome
                                else:
                                    setattr(instance, f.attname, outcome[0])
                            continue
                    outcome = validate_field(f, instance)
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
                # A row that changes nothing of its object is not written (``unchanged`` tells the hooks).
                unchanged = before is not None and before == [getattr(instance, name) for name in compared]
                if not unchanged:
                    (creates if new else updates).append(instance)
                kwargs["unchanged"] = unchanged
                after_save(instance, row, **kwargs)
                del kwargs["unchanged"]
                if len(kept) < self.rows_kept:
                    row_result.add_instance_info(instance)
                if store_instance:
                    row_result.instance = instance
            except ValidationError as exc:
                row_result.import_type = INVALID
                row_result.validation_error = exc
            except Exception as exc:
                row_result.import_type = RowResult.IMPORT_TYPE_ERROR
                logger.debug(exc, exc_info=True)
                row_result.errors.append(error_class(exc, row=row, number=number))
            result.increment_row_result_total(row_result)
            if row_result.errors or row_result.validation_error:
                self._add_bad_row(result, number, row, row_result)
            self._keep_row(result, kept, number, row_result)
            ledger.add(key, row_result.import_type, number in repeats)
            if progress is not None:
                progress(number, total)

    def _report_repeats_across_chunks(self, source, plan, ledger: RowLedger, result, kept: dict) -> None:
        """A key that repeats a row of an earlier chunk, reported on its row as a repeat within a chunk is.
        Only when two rows of the file have keys of the same hash is the file read again (their keys)."""
        hashes = ledger.repeated_hashes()
        if not hashes:
            return
        first_line: dict[tuple, int] = {}
        found = []
        for chunk in batched(enumerate(source, 1), max(1, self.chunk_rows)):
            candidates = [(n, values) for n, values in chunk if ledger.may_repeat(n, hashes)]
            if not candidates:
                continue
            self.preload_chunk(ChunkRows(plan.headers, candidates))
            for number, values in candidates:
                key, _failed = plan.read_key(values)
                if key is None:
                    continue
                if key not in first_line:
                    first_line[key] = number
                elif not ledger.reported(number):
                    found.append((number, first_line[key], values))
        if not found:
            return
        listed = {row.number: row for row in result.invalid_rows}
        totals = result.totals
        for number, first, values in found:
            message = repeat_error(first)
            before = ledger.import_type(number)
            if before != INVALID:
                if before:
                    totals[before] -= 1
                totals[INVALID] += 1
            row_result = kept.get(number)
            if row_result is not None and row_result.import_type != INVALID:
                row_result.import_type = INVALID
                row_result.validation_error = ValidationError({plan.last_key: [message]})
            invalid = listed.get(number)
            if invalid is not None:
                invalid.error_dict.setdefault(plan.last_key, []).append(message.messages[0])
            elif len(result.invalid_rows) + len(result.error_rows) < self.error_rows_kept:
                row = dict(zip(plan.headers, values))
                result.append_invalid_row(number, row, ValidationError({plan.last_key: [message]}))
            else:
                result.unlisted_error_rows += 1
        result.invalid_rows.sort(key=lambda row: row.number)
