"""``flush`` that lifts the audit trail's append-only triggers for the time of the flush.

Emptying the whole database is the one sanctioned way rows leave the audit table (development databases, and
the test runner, which flushes after every transactional test). The triggers are put back even when the flush
fails or is cancelled; ``verify_audit`` reports them if they are ever missing.

The anchor file belongs to the trail that was emptied: after a flush that emptied the trail, the file is moved
aside (``<name>.before-flush-<UTC moment>.jsonl``, never deleted), so the new trail starts its own file with its
first anchor instead of failing every anchor step against the old chain's anchors.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

from core.audit_anchor_file import anchor_path
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
            result = super().handle(**options)
        finally:
            if guarded:
                install_audit_triggers(connection)
        if has_table and not AuditEvent.objects.using(options["database"]).exists():
            self._set_anchor_file_aside(options.get("verbosity", 1))
        return result

    def _set_anchor_file_aside(self, verbosity: int) -> None:
        path = anchor_path()
        if path is None or not path.exists() or path.stat().st_size == 0:
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")  # a file name, not a rule's moment
        aside = path.with_name(f"{path.stem}.before-flush-{stamp}{path.suffix}")
        path.rename(aside)
        if verbosity:
            self.stdout.write(f"The audit trail is empty: its old anchor file is kept as {aside.name}.")
