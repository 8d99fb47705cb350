"""A fast ``bulk_update`` for the daily jobs: one ``UPDATE ... FROM`` statement per batch.

Django's ``QuerySet.bulk_update`` writes a ``CASE WHEN pk = ... THEN ...`` expression per field and row; building
those expressions costs far more Python time than the database spends on the update (tens of milliseconds per
hundred rows). ``bulk_update_rows`` sends the same rows as a set joined on the primary key: one array per column
through ``UNNEST`` on PostgreSQL, a ``VALUES`` list on SQLite (3.33 or later); on any other database it falls back
to ``bulk_update``. ``update_rows`` takes the same rows as plain values (``(pk, value, ...)``) for a job that read
them with ``values_list``; ``insert_rows`` inserts plain values as ``bulk_create`` would (defaults included), for
a job that needs neither the objects nor their new ids (``bulk_create`` makes both): one ``INSERT ... SELECT FROM
UNNEST`` per batch on PostgreSQL, without a call per value for values already stored as they are.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

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
    preps = [
        _value_prep(pk, connection, pk.get_db_prep_value),
        *(_value_prep(f, connection) for f in concrete),
    ]
    updated = 0
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params = list(same_params)
            for row in batch:
                params.extend(prep(value) for prep, value in zip(preps, row))
            sql = (
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([placeholder] * len(batch))}) {source} "
                f"WHERE {table}.{qn(pk.column)} = {ref[pk]}"
            )
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated


def insert_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
    batch_size: int = 5000,
) -> int:
    """Insert ``rows`` (each the values of ``fields``, in order) as ``bulk_create`` would store them, without
    making a model object per row nor reading the new ids back. The model's other columns get what
    ``bulk_create`` gives them: their default (a callable one called for each row), the moment of the call for
    ``auto_now`` and ``auto_now_add``; a column with a database default is left to the database. Values go
    through each field's ``get_db_prep_save``; no signals. With ``ignore_conflicts`` a row that breaks a unique
    constraint is left out (``bulk_create(..., ignore_conflicts=True)``). Returns how many rows were inserted.

    PostgreSQL: one ``INSERT ... SELECT * FROM UNNEST(...)`` per ``batch_size`` rows, an array per column (a
    value every row shares goes once); elsewhere one prepared ``INSERT`` run for every row."""
    rows = list(rows)
    if not rows:
        return 0
    opts = model._meta
    given = [opts.get_field(name) for name in fields]
    connection = connections[router.db_for_write(model)]
    per_row, same = _defaults(model, given)
    columns = [*given, *per_row, *same]
    if per_row:
        rows = [(*row, *(f.get_default() for f in per_row)) for row in rows]
    same_values = [f.get_db_prep_save(value, connection) for f, value in same.items()]
    qn = connection.ops.quote_name
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    head = (
        f"{connection.ops.insert_statement(on_conflict=on_conflict)} {qn(opts.db_table)} "
        f"({', '.join(qn(f.column) for f in columns)})"
    )
    tail = connection.ops.on_conflict_suffix_sql(columns, on_conflict, [], [])
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        if connection.vendor == "postgresql" and all(
            f.get_internal_type() not in _NOT_IN_ARRAYS for f in given + per_row
        ):
            arrays = ", ".join(f"%s::{array_element_type(f, connection)}[]" for f in given + per_row)
            constants = "".join(f", %s::{array_element_type(f, connection)}" for f in same)
            sql = f'{head} SELECT "v".*{constants} FROM UNNEST({arrays}) AS "v" {tail}'
            inserted = 0
            preps = [_column_prep(f, connection) for f in given + per_row]
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                params = [prep([row[i] for row in batch]) for i, prep in enumerate(preps)]
                cursor.execute(sql, [*same_values, *params])  # the constants come first in the text
                inserted += cursor.rowcount
            return inserted
        preps = [_value_prep(f, connection) for f in given + per_row]
        params = [(*(prep(value) for prep, value in zip(preps, row)), *same_values) for row in rows]
        cursor.executemany(f"{head} VALUES ({', '.join(['%s'] * len(columns))}) {tail}", params)
        return cursor.rowcount if cursor.rowcount >= 0 else len(rows)


def _defaults(model: type[models.Model], given: list) -> tuple[list, dict]:
    """The columns ``insert_rows`` fills for the fields not given: those whose default is called for each row,
    and the others with the one value every row gets (a default, or the moment for ``auto_now``)."""
    per_row, same = [], {}
    now = None
    for f in model._meta.concrete_fields:
        if f in given or f.primary_key or f.db_default is not models.NOT_PROVIDED:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            if now is None:
                now = timezone.now()
            # As their ``pre_save`` does: a moment for a DateTimeField, today's date for a DateField.
            same[f] = now if isinstance(f, models.DateTimeField) else dt.date.today()
        elif f.has_default() and callable(f.default):
            per_row.append(f)
        else:
            same[f] = f.get_default()
    return per_row, same


# Values a field stores as they are on PostgreSQL (``get_db_prep_save`` gives them back unchanged): the job's
# plain values skip a call per value; anything else (a text in a number column, a naive moment) goes through it.
_STORED_AS_THEY_ARE = {
    "CharField": (str,),
    "TextField": (str,),
    "SlugField": (str,),
    "EmailField": (str,),
    "IntegerField": (int,),
    "BigIntegerField": (int,),
    "SmallIntegerField": (int,),
    "PositiveIntegerField": (int,),
    "PositiveBigIntegerField": (int,),
    "PositiveSmallIntegerField": (int,),
    "AutoField": (int,),
    "BigAutoField": (int,),
    "BooleanField": (bool,),
    "UUIDField": (uuid.UUID,),
    "DateField": (dt.date,),
}


def _column_prep(field, connection, prep=None):
    """A function of a column's values that gives what ``prep`` (default ``get_db_prep_save``) gives each
    (PostgreSQL)."""
    target = field.target_field if field.is_relation else field
    plain = _STORED_AS_THEY_ARE.get(target.get_internal_type(), ())
    prep = prep or field.get_db_prep_save
    if target.get_internal_type() == "DateTimeField":

        def column(values):
            return [
                v if type(v) is dt.datetime and v.utcoffset() is not None else prep(v, connection)
                for v in values
            ]

        return column
    if target.get_internal_type() == "DecimalField":
        # A finite Decimal is what its field gives PostgreSQL (``to_python`` keeps it, the backend adapts nothing).

        def column(values):
            return [
                v if v is None or (type(v) is Decimal and v.is_finite()) else prep(v, connection)
                for v in values
            ]

        return column

    def column(values):
        return [v if v is None or type(v) in plain else prep(v, connection) for v in values]

    return column


# What SQLite's driver stores of a value as ``get_db_prep_save`` would give it: the value itself for these
# (a Decimal through the adapter Django registers, its text), a moment as its UTC text (below).
_SQLITE_AS_THEY_ARE = {
    **_STORED_AS_THEY_ARE,
    "DecimalField": (Decimal,),
    "DateField": (),  # a date goes through its field (Django's adapter is deprecated in the driver)
    "UUIDField": (),  # stored as its hex text: through its field
}


def _value_prep(field, connection, prep=None):
    """A function of one value that gives what ``prep`` (default ``get_db_prep_save``) gives it, without the
    field's chain of calls for a value already of the type the column stores (SQLite: an aware moment becomes
    the naive text in the connection's zone, as ``adapt_datetimefield_value`` makes it; a finite Decimal is
    stored as it is). Anything else goes through ``prep``. Elsewhere, ``prep`` itself."""
    prep = prep or field.get_db_prep_save
    if connection.vendor != "sqlite":
        return lambda value: prep(value, connection)
    target = field.target_field if field.is_relation else field
    kind = target.get_internal_type()
    if kind == "DateTimeField" and settings.USE_TZ:
        zone = connection.timezone

        def moment(value):
            if type(value) is dt.datetime and value.utcoffset() is not None:
                return value.astimezone(zone).replace(tzinfo=None).isoformat(" ")
            return prep(value, connection)

        return moment
    plain = _SQLITE_AS_THEY_ARE.get(kind, ())
    if not plain:
        return lambda value: prep(value, connection)
    if Decimal in plain:

        def number(value):
            if type(value) is Decimal and value.is_finite():
                return value
            return prep(value, connection)

        return number

    def value_as_it_is(value):
        return value if value is None or type(value) in plain else prep(value, connection)

    return value_as_it_is


# Fields whose values are adapted by wrapper objects that a PostgreSQL array cannot hold as they are.
_NOT_IN_ARRAYS = {"JSONField", "BinaryField", "ArrayField", "HStoreField"}


def _update_from_arrays(
    connection, model, columns, concrete, rows, *, per_batch: int, set_same=(), same_params=()
) -> int:
    """PostgreSQL: one ``UPDATE ... FROM UNNEST(%s::type[], ...)`` per batch, one array parameter per column.

    The statement's text is the same for every batch and short, so the driver parses it once (a statement with
    thousands of placeholders is longer than its statement cache takes and is parsed again for each batch).
    Each statement also says the least and greatest primary key of its batch: without them PostgreSQL joined
    the set to the whole table, read once per batch (a sequential scan and a hash of every row: a file's
    payments updating a million instalments read the table 200 times); within them it reads the primary key's
    index over that range."""
    qn = connection.ops.quote_name
    opts = model._meta
    table = qn(opts.db_table)
    pk = opts.pk
    arrays = ", ".join(f"%s::{array_element_type(f, connection)}[]" for f in columns)
    names = ", ".join(qn(f.column) for f in columns)
    assignments = ", ".join([*set_same, *(f'{qn(f.column)} = "v".{qn(f.column)}' for f in concrete)])
    pk_type = array_element_type(pk, connection)
    sql = (
        f'UPDATE {table} SET {assignments} FROM UNNEST({arrays}) AS "v" ({names}) '
        f'WHERE {table}.{qn(pk.column)} = "v".{qn(pk.column)}'
    )
    # Bounds taken in Python hold for whole numbers only (the database orders texts by its collation).
    bounded = f"{sql} AND {table}.{qn(pk.column)} BETWEEN %s::{pk_type} AND %s::{pk_type}"
    pk_prep = _column_prep(pk, connection, pk.get_db_prep_value)
    preps = [_column_prep(f, connection) for f in concrete]
    updated = 0
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            keys = pk_prep([row[0] for row in batch])
            params = [*same_params, keys]
            params.extend(prep([row[i] for row in batch]) for i, prep in enumerate(preps, 1))
            if all(type(k) is int for k in keys):
                cursor.execute(bounded, [*params, min(keys), max(keys)])
            else:
                cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated
