"""Monthly partitions on PostgreSQL (the audit trail; declarative RANGE partitioning on a timestamp, months in
UTC). SQLite, the embedded default, keeps plain tables: every function here is a no-op there, and the Django
models are the same on both.

A partitioned table has one partition per month, named ``<table>_pYYYYMM``, and a DEFAULT partition
(``<table>_default``) that catches any row no month partition takes (a month not created yet, an archived
month, a far past or future moment), so an insert never fails for want of a partition. The hourly
housekeeping creates the current month's and the next ``PARTITION_MONTHS_AHEAD`` months' partitions ahead of
time (``ensure_month_partitions``). A month whose rows already went to the DEFAULT partition gets no partition
of its own (PostgreSQL would refuse it): its rows, and its later ones, stay in DEFAULT, which is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


def month_start(moment: dt.date | dt.datetime) -> dt.date:
    if isinstance(moment, dt.datetime):
        moment = moment.astimezone(dt.timezone.utc).date()
    return moment.replace(day=1)


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` as the first day of that month; ValueError for anything else."""
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a month: expected YYYY-MM, e.g. 2026-01") from exc


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The month's first moment and the next month's, in UTC (a partition holds ``from <= key < to``)."""
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.timezone.utc)
    end_month = add_months(month, 1)
    return start, dt.datetime(end_month.year, end_month.month, 1, tzinfo=dt.timezone.utc)


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y%m}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


@dataclass(frozen=True)
class Partitioning:
    """How a partitioned table is cut: its name and the timestamp column that decides a row's month."""

    table: str
    key: str


def is_partitioned(connection, table: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [table],
        )
        return cursor.fetchone() is not None


def partitioned_tables(connection) -> list[Partitioning]:
    """Every RANGE-partitioned table of the database with its key column (read from the catalogue, so core
    needs no import of the apps whose tables are partitioned)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, a.attname FROM pg_partitioned_table p "
            "JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
            "WHERE p.partstrat = 'r' AND pg_table_is_visible(c.oid) ORDER BY c.relname"
        )
        return [Partitioning(table, key) for table, key in cursor.fetchall()]


def month_partitions(connection, table: str) -> list[str]:
    """The names of the table's partitions, oldest month first, DEFAULT last."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    default = default_partition_name(table)
    return sorted(n for n in names if n != default) + [n for n in names if n == default]


def create_month_partition(connection, part: Partitioning, month: dt.date, *, parent: str = "") -> bool:
    """Create the month's partition unless it exists. False (and a warning) when the DEFAULT partition already
    holds rows of that month: PostgreSQL refuses a partition whose rows sit in DEFAULT, and they stay there.
    ``parent`` names the table to attach to when it is not yet called ``part.table`` (``partition_table``)."""
    qn = connection.ops.quote_name
    name = partition_name(part.table, month)
    start, end = month_bounds(month)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return False
        default = default_partition_name(part.table)
        cursor.execute("SELECT to_regclass(%s)", [default])
        if cursor.fetchone()[0] is not None:
            cursor.execute(
                f"SELECT 1 FROM {qn(default)} WHERE {qn(part.key)} >= %s AND {qn(part.key)} < %s LIMIT 1",
                [start, end],
            )
            if cursor.fetchone() is not None:
                logger.warning(
                    "%s: rows of %s are in the DEFAULT partition; the month gets no partition of its own",
                    part.table,
                    f"{month:%Y-%m}",
                )
                return False
        cursor.execute(
            f"CREATE TABLE {qn(name)} PARTITION OF {qn(parent or part.table)} FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )
        copy_truncate_guards(cursor, qn, parent or part.table, name)
    return True


# pg_trigger.tgtype bits: a statement-level trigger fired by TRUNCATE.
TRIGGER_TYPE_ROW = 1
TRIGGER_TYPE_TRUNCATE = 32


def truncate_guards(cursor, table: str) -> list[tuple[str, str]]:
    """The statement-level TRUNCATE triggers of ``table``: (trigger name, function name)."""
    cursor.execute(
        "SELECT t.tgname, p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal "
        "AND (t.tgtype & %s) <> 0 AND (t.tgtype & %s) = 0 ORDER BY t.tgname",
        [table, TRIGGER_TYPE_TRUNCATE, TRIGGER_TYPE_ROW],
    )
    return list(cursor.fetchall())


def copy_truncate_guards(cursor, qn, parent: str, partition: str) -> int:
    """Give ``partition`` its parent's TRUNCATE triggers. PostgreSQL clones a partitioned table's row triggers
    (UPDATE, DELETE) onto each partition, not its statement-level ones: without this, ``TRUNCATE`` of one month's
    partition would empty it past the parent's guard. Idempotent; returns how many triggers it (re)created."""
    guards = truncate_guards(cursor, parent)
    for trigger, function in guards:
        name = f"{partition}_{trigger.removeprefix(parent + '_')}"[:63]
        cursor.execute(f"DROP TRIGGER IF EXISTS {qn(name)} ON {qn(partition)}")
        cursor.execute(
            f"CREATE TRIGGER {qn(name)} BEFORE TRUNCATE ON {qn(partition)} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {qn(function)}()"
        )
    return len(guards)


def ensure_month_partitions(now: dt.datetime, *, using: str = "default") -> dict[str, int]:
    """Create, for every partitioned table, the partitions of ``now``'s month and of the
    ``PARTITION_MONTHS_AHEAD`` next months that do not exist yet. Returns how many were created per table
    (nothing on SQLite)."""
    connection = connections[using]
    ahead = int(getattr(settings, "PARTITION_MONTHS_AHEAD", 3))
    first = month_start(now)
    created = {}
    for part in partitioned_tables(connection):
        made = 0
        for n in range(ahead + 1):
            made += create_month_partition(connection, part, add_months(first, n))
        created[part.table] = made
    return created


def _copy_into(cursor, qn, source: str, target: str) -> int:
    cursor.execute(f"INSERT INTO {qn(target)} OVERRIDING SYSTEM VALUE SELECT * FROM {qn(source)}")
    moved = cursor.rowcount
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [target])
    sequence = cursor.fetchone()[0]
    if sequence:
        cursor.execute(
            f"SELECT setval(%s, COALESCE((SELECT max(id) FROM {qn(target)}), 0) + 1, false)", [sequence]
        )
    return moved


def _replace(cursor, qn, table: str, new: str) -> None:
    """Drop ``table`` and give ``new`` its name and its primary key's name."""
    cursor.execute(f"DROP TABLE {qn(table)} CASCADE")
    cursor.execute(f"ALTER TABLE {qn(new)} RENAME TO {qn(table)}")
    cursor.execute(f"ALTER TABLE {qn(table)} RENAME CONSTRAINT {qn(new + '_pkey')} TO {qn(table + '_pkey')}")


def indexes_and_foreign_keys(connection, table: str) -> list[str]:
    """The statements that make the table's indexes (but its primary key) and its foreign keys again, once a
    new table has taken its name: a unique index becomes a plain one (a partitioned table cannot hold a
    unique index without its partition key; the caller keeps uniqueness another way)."""
    statements = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY 1",
            [table],
        )
        for _name, definition in cursor.fetchall():
            statements.append(definition.replace("CREATE UNIQUE INDEX", "CREATE INDEX", 1))
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
            [table],
        )
        qn = connection.ops.quote_name
        for name, definition in cursor.fetchall():
            statements.append(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
    return statements


def partition_table(connection, part: Partitioning, *, primary_key: tuple[str, ...], now: dt.datetime) -> int:
    """Turn the plain table ``part.table`` into a table partitioned by month of ``part.key``, keeping its rows
    and ids (a migration's step; PostgreSQL only). The new table takes the old one's columns, defaults,
    identity and CHECK constraints and the primary key ``primary_key`` (which must include the key column); it
    gets a month partition from the month of its oldest row to ``now``'s month and ``PARTITION_MONTHS_AHEAD``
    after, and a DEFAULT partition. Indexes, unique constraints, foreign keys and triggers are the caller's.
    Returns the number of rows moved."""
    qn = connection.ops.quote_name
    table, new = part.table, f"{part.table}_new"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {qn(new)} (LIKE {qn(table)} INCLUDING DEFAULTS INCLUDING IDENTITY "
            f"INCLUDING CONSTRAINTS INCLUDING COMMENTS, PRIMARY KEY ({', '.join(map(qn, primary_key))})) "
            f"PARTITION BY RANGE ({qn(part.key)})"
        )
        cursor.execute(f"CREATE TABLE {qn(default_partition_name(table))} PARTITION OF {qn(new)} DEFAULT")
        cursor.execute(f"SELECT min({qn(part.key)}) FROM {qn(table)}")
        oldest = cursor.fetchone()[0]
    ahead = int(getattr(settings, "PARTITION_MONTHS_AHEAD", 3))
    last = add_months(month_start(now), ahead)
    month = min(month_start(oldest), month_start(now)) if oldest is not None else month_start(now)
    while month <= last:
        create_month_partition(connection, Partitioning(table, part.key), month, parent=new)
        month = add_months(month, 1)
    with connection.cursor() as cursor:
        moved = _copy_into(cursor, qn, table, new)
        _replace(cursor, qn, table, new)
    return moved


def unpartition_table(connection, part: Partitioning, *, primary_key: tuple[str, ...]) -> int:
    """The reverse of ``partition_table``: a plain table with the same columns and rows (those still in the
    database: archived months are in their files). Indexes and constraints are the caller's."""
    qn = connection.ops.quote_name
    table, new = part.table, f"{part.table}_new"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {qn(new)} (LIKE {qn(table)} INCLUDING DEFAULTS INCLUDING IDENTITY "
            f"INCLUDING CONSTRAINTS INCLUDING COMMENTS, PRIMARY KEY ({', '.join(map(qn, primary_key))}))"
        )
        moved = _copy_into(cursor, qn, table, new)
        _replace(cursor, qn, table, new)
    return moved
