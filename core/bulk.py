"""A fast ``bulk_update`` for the daily jobs: one ``UPDATE ... FROM`` statement per batch.

Django's ``QuerySet.bulk_update`` writes a ``CASE WHEN pk = ... THEN ...`` expression per field and row; building
those expressions costs far more Python time than the database spends on the update (tens of milliseconds per
hundred rows). ``bulk_update_rows`` sends the same rows as a set joined on the primary key: one array per column
through ``UNNEST`` on PostgreSQL, a ``VALUES`` list on SQLite (3.33 or later); on any other database it falls back
to ``bulk_update``.
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
    model = type(objs[0])
    opts = model._meta
    concrete = [opts.get_field(name) for name in fields]
    constant = [(opts.get_field(name), value) for name, value in (same or {}).items()]
    if any(f.primary_key for f in concrete) or any(f.primary_key for f, _value in constant):
        raise ValueError("bulk_update_rows cannot update the primary key.")
    if any(obj.pk is None for obj in objs):
        raise ValueError("All objects passed to bulk_update_rows must have a primary key.")
    using = router.db_for_write(model)
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite") or (
        connection.vendor == "sqlite" and not _SQLITE_HAS_UPDATE_FROM
    ):
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
            objs,
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
    updated = 0
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(objs), per_batch):
            batch = objs[start : start + per_batch]
            params = list(same_params)
            for obj in batch:
                params.append(pk.get_db_prep_value(obj.pk, connection))
                params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in concrete)
            sql = (
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([placeholder] * len(batch))}) {source} "
                f"WHERE {table}.{qn(pk.column)} = {ref[pk]}"
            )
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated


# Fields whose values are adapted by wrapper objects that a PostgreSQL array cannot hold as they are.
_NOT_IN_ARRAYS = {"JSONField", "BinaryField", "ArrayField", "HStoreField"}


def _update_from_arrays(
    connection, model, columns, concrete, objs, *, per_batch: int, set_same=(), same_params=()
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
        for start in range(0, len(objs), per_batch):
            batch = objs[start : start + per_batch]
            params = [*same_params, [pk.get_db_prep_value(obj.pk, connection) for obj in batch]]
            params.extend(
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in batch] for f in concrete
            )
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated
