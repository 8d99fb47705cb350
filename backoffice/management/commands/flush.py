"""``flush`` that lifts the audit trail's append-only triggers for the time of the flush.

Emptying the whole database is the one sanctioned way rows leave the audit table (development databases, and
the test runner, which flushes after every transactional test). The triggers are put back even when the flush
fails or is cancelled; ``verify_audit`` reports them if they are ever missing.
"""

from __future__ import annotations

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

from core.audit_triggers import install_audit_triggers, missing_audit_triggers, remove_audit_triggers
from core.models import AuditEvent


class Command(FlushCommand):
    def handle(self, **options):
        connection = connections[options["database"]]
        has_table = AuditEvent._meta.db_table in connection.introspection.table_names()
        guarded = (
            has_table
            and connection.vendor in ("sqlite", "postgresql")
            and not missing_audit_triggers(connection)
        )
        if guarded:
            remove_audit_triggers(connection)
        try:
            return super().handle(**options)
        finally:
            if guarded:
                install_audit_triggers(connection)
