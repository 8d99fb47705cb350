"""A fast ``bulk_update`` for the daily jobs: one ``UPDATE ... FROM`` statement per batch.

Django's ``QuerySet.bulk_update`` writes a ``CASE WHEN pk = ... THEN ...`` expression per field and row; building
those expressions costs far more Python time than the database spends on the update (tens of milliseconds per
hundred rows). ``bulk_update_rows`` sends the same rows as a set joined on the primary key: one array per column
through ``UNNEST`` on PostgreSQL, a ``VALUES`` list on SQLite (3.33 or later); on any other database it falls back
to ``bulk_update``. ``update_rows`` takes the same rows as plain values (``(pk, value, ...)``) for a job that read
them with ``values_list``; ``insert_rows`` inserts plain values with one prepared statement run for every row,
for a job that needs neither the objects nor their new ids (``bulk_create`` makes both).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, models, router, transaction

from .lookups import array_element_type

_SQLITE_HAS_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def bulk_update_rows(
    objs: Sequence[models.Model],
    fields: Sequence[str],
    *,
    batch_size: int = 500,
    same: Mapping[str, Any] | None = None,
) -> int:
    """Write ``fields`` of every object in ``objs`` (all of one model, saved already) to its row; returns how many
    rows were updated. Values go through each field's ``get_db_prep_save`` as in ``bulk_update``. No signals,
    no ``auto_now`` (set ``updated_at`` yourself), like ``bulk_update``. Raises ValueError for an object without
    a primary key or for the primary key among ``fields`` or ``same``. Atomic: all batches in one transaction.

    ``same`` maps fields to the one value every row gets, in the same statement (one parameter each instead of a
    value per row); the objects are expected to hold it already.
    """
    objs = list(objs)
    if not objs:
        return 0
    if any(obj.pk is None for obj in objs):
        raise ValueError("All objects passed to bulk_update_rows must have a primary key.")
    model = type(objs[0])
    opts = model._meta
    attnames = [opts.get_field(name).attname for name in fields]
    rows = [(obj.pk, *(getattr(obj, a) for a in attnames)) for obj in objs]
    return update_rows(model, fields, rows, batch_size=batch_size, same=same, objs=objs)


def update_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    batch_size: int = 500,
    same: Mapping[str, Any] | None = None,
    objs: Sequence[models.Model] | None = None,
) -> int:
    """``bulk_update_rows`` for rows given as plain values: each row is ``(pk, value of fields[0], ...)``, no
    model object made for it (a job that read its rows with ``values_list``). Returns how many rows were
    updated; the same statements, the same errors."""
    rows = list(rows)
    if not rows:
        return 0
    opts = model._meta
    concrete = [opts.get_field(name) for name in fields]
    constant = [(opts.get_field(name), value) for name, value in (same or {}).items()]
    if any(f.primary_key for f in concrete) or any(f.primary_key for f, _value in constant):
        raise ValueError("bulk_update_rows cannot update the primary key.")
    if any(row[0] is None for row in rows):
        raise ValueError("All objects passed to bulk_update_rows must have a primary key.")
    using = router.db_for_write(model)
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite") or (
        connection.vendor == "sqlite" and not _SQLITE_HAS_UPDATE_FROM
    ):
        if objs is None:
            objs = [model(**{opts.pk.attname: row[0]}) for row in rows]
            for obj, row in zip(objs, rows):
                for f, value in zip(concrete, row[1:]):
                    setattr(obj, f.attname, value)
        for field, value in constant:
            for obj in objs:
                setattr(obj, field.attname, value)
        return model._default_manager.using(using).bulk_update(
            objs, [*fields, *(f.name for f, _value in constant)], batch_size=batch_size
        )
    set_same = [f"{connection.ops.quote_name(f.column)} = %s" for f, _value in constant]
    same_params = [f.get_db_prep_save(value, connection) for f, value in constant]

    qn = connection.ops.quote_name
    pk = opts.pk
    columns = [pk, *concrete]
    max_params = getattr(connection.features, "max_query_params", None) or 32766
    per_batch = max(1, min(batch_size, (max_params - len(constant)) // len(columns)))
    table = qn(opts.db_table)
    if connection.vendor == "postgresql" and all(
        f.get_internal_type() not in _NOT_IN_ARRAYS for f in columns
    ):
        return _update_from_arrays(
            connection,
            model,
            columns,
            concrete,
            rows,
            per_batch=max(batch_size, 5000),
            set_same=set_same,
            same_params=same_params,
        )
    if connection.vendor == "postgresql":
        placeholder = "(" + ", ".join(f"CAST(%s AS {f.cast_db_type(connection)})" for f in columns) + ")"
        names = ", ".join(qn(f.column) for f in columns)
        source = f'AS "v" ({names})'
        ref = {f: f'"v".{qn(f.column)}' for f in columns}
    else:
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        source = 'AS "v"'
        ref = {f: f'"v"."column{i}"' for i, f in enumerate(columns, start=1)}
    assignments = ", ".join([*set_same, *(f"{qn(f.column)} = {ref[f]}" for f in concrete)])
    preps = [pk.get_db_prep_value, *(f.get_db_prep_save for f in concrete)]
    updated = 0
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params = list(same_params)
            for row in batch:
                params.extend(prep(value, connection) for prep, value in zip(preps, row))
            sql = (
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([placeholder] * len(batch))}) {source} "
                f"WHERE {table}.{qn(pk.column)} = {ref[pk]}"
            )
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``rows`` (each the values of ``fields``, in order) as ``bulk_create`` would store them, without
    making a model object per row nor reading the new ids back: one prepared ``INSERT`` run for every row.
    Values go through each field's ``get_db_prep_save``; no signals, no defaults (give every column that has
    no database default). Returns how many rows were inserted."""
    rows = list(rows)
    if not rows:
        return 0
    opts = model._meta
    concrete = [opts.get_field(name) for name in fields]
    connection = connections[router.db_for_write(model)]
    qn = connection.ops.quote_name
    preps = [f.get_db_prep_save for f in concrete]
    params = [tuple(prep(value, connection) for prep, value in zip(preps, row)) for row in rows]
    sql = (
        f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in concrete)}) "
        f"VALUES ({', '.join(['%s'] * len(concrete))})"
    )
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(rows)


# Fields whose values are adapted by wrapper objects that a PostgreSQL array cannot hold as they are.
_NOT_IN_ARRAYS = {"JSONField", "BinaryField", "ArrayField", "HStoreField"}


def _update_from_arrays(
    connection, model, columns, concrete, rows, *, per_batch: int, set_same=(), same_params=()
) -> int:
    """PostgreSQL: one ``UPDATE ... FROM UNNEST(%s::type[], ...)`` per batch, one array parameter per column.

    The statement's text is the same for every batch and short, so the driver parses it once (a statement with
    thousands of placeholders is longer than its statement cache takes and is parsed again for each batch), and
    the planner sees a set it joins through the primary key index."""
    qn = connection.ops.quote_name
    opts = model._meta
    table = qn(opts.db_table)
    pk = opts.pk
    arrays = ", ".join(f"%s::{array_element_type(f, connection)}[]" for f in columns)
    names = ", ".join(qn(f.column) for f in columns)
    assignments = ", ".join([*set_same, *(f'{qn(f.column)} = "v".{qn(f.column)}' for f in concrete)])
    sql = (
        f'UPDATE {table} SET {assignments} FROM UNNEST({arrays}) AS "v" ({names}) '
        f'WHERE {table}.{qn(pk.column)} = "v".{qn(pk.column)}'
    )
    updated = 0
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params = [*same_params, [pk.get_db_prep_value(row[0], connection) for row in batch]]
            params.extend(
                [f.get_db_prep_save(row[i], connection) for row in batch] for i, f in enumerate(concrete, 1)
            )
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated
