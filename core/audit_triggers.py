"""Append-only: the database itself refuses UPDATE and DELETE on the audit table (triggers on SQLite and
PostgreSQL, installed by ``backoffice.0003_audit_triggers``; the table keeps its name), and TRUNCATE on
PostgreSQL, of the whole trail and of each month's partition (``core.0007``)."""

from __future__ import annotations

from .models import AuditEvent
from .partitions import copy_truncate_guards, is_partitioned, month_partitions, truncate_guards

TRIGGER_NAMES = (
    "backoffice_auditevent_no_update",
    "backoffice_auditevent_no_delete",
    "backoffice_auditevent_no_truncate",
)
PG_FUNCTION = "backoffice_auditevent_append_only"


def _table(connection) -> str:
    return connection.ops.quote_name(AuditEvent._meta.db_table)


def install_audit_triggers(connection) -> None:
    """Create the triggers refusing UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the audit table.

    Idempotent. Raises NotImplementedError on a database vendor without an implementation."""
    table = _table(connection)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name, op in (TRIGGER_NAMES[0], "UPDATE"), (TRIGGER_NAMES[1], "DELETE"):
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {op} refused'); END"
                )
        elif connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            )
            for name, op, level in (
                (TRIGGER_NAMES[0], "UPDATE", "ROW"),
                (TRIGGER_NAMES[1], "DELETE", "ROW"),
                (TRIGGER_NAMES[2], "TRUNCATE", "STATEMENT"),
            ):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH {level} EXECUTE FUNCTION {PG_FUNCTION}()"
                )
            # Each month's partition refuses TRUNCATE too (new ones get it when created: core.partitions).
            for partition in _partitions(connection):
                copy_truncate_guards(cursor, connection.ops.quote_name, AuditEvent._meta.db_table, partition)
        else:
            raise NotImplementedError(f"no append-only triggers for {connection.vendor}")


def remove_audit_triggers(connection) -> None:
    """Drop the append-only triggers (reverse migration, and ``flush`` of a development or test database)."""
    table = _table(connection)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name in TRIGGER_NAMES[:2]:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        elif connection.vendor == "postgresql":
            qn = connection.ops.quote_name
            for partition in _partitions(connection):
                for name, _function in truncate_guards(cursor, partition):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {qn(name)} ON {qn(partition)}")
            for name in TRIGGER_NAMES:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")


def missing_audit_triggers(connection) -> list[str]:
    """The names of the append-only triggers that are not in the database (empty when all are there)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [AuditEvent._meta.db_table],
            )
            expected = TRIGGER_NAMES[:2]
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [AuditEvent._meta.db_table],
            )
            expected = TRIGGER_NAMES
        else:
            return []
        present = {row[0] for row in cursor.fetchall()}
        missing = [name for name in expected if name not in present]
        if connection.vendor == "postgresql":
            missing += [
                f"{partition}: TRUNCATE"
                for partition in _partitions(connection)
                if PG_FUNCTION not in {function for _name, function in truncate_guards(cursor, partition)}
            ]
    return missing


def _partitions(connection) -> list[str]:
    table = AuditEvent._meta.db_table
    return month_partitions(connection, table) if is_partitioned(connection, table) else []
