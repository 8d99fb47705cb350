"""Factories and helpers for the audit trail and export tests."""

from __future__ import annotations

from django.db import connection

from backoffice.audit import Event, log_events


def make_events(n: int, *, action: str = "tests.thing.changed", actor: str = "job:tests") -> list:
    return log_events(
        Event(
            action=action,
            actor=actor,
            object_type="tests.Thing",
            object_id=str(i),
            before={"v": i},
            after={"v": i + 1},
        )
        for i in range(n)
    )


def tamper(sql: str, params=()) -> None:
    """Change the audit table behind the application's back: lift the triggers, run ``sql``, put them back."""
    from backoffice.audit import install_audit_triggers, remove_audit_triggers

    remove_audit_triggers(connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    install_audit_triggers(connection)
