"""PostgreSQL: the audit trail becomes a table partitioned by month of ``at`` (a partition per month, from the
oldest event's month to ``PARTITION_MONTHS_AHEAD`` months ahead, and a DEFAULT partition), every event moved
with its id. SQLite keeps its plain table; the model is the same on both.

A partitioned table's primary key and unique indexes must hold the partition key: the primary key becomes
(id, at) and ``seq`` is indexed with ``at`` (unique together). That ``seq`` is unique on its own is kept by the
one way events are written: under the chain head's row lock, each the head's seq plus one (a second writer
waits for the lock); ``verify_audit`` fails on any repeated or missing seq. ``hash`` was unique because
``seq`` is (it hashes the seq): its own index goes. The append-only triggers are put back on the new table
(PostgreSQL clones the row triggers onto every partition).
"""

from django.db import migrations
from django.utils import timezone

from core.audit_triggers import install_audit_triggers, remove_audit_triggers
from core.partitions import Partitioning, partition_table, unpartition_table

AUDIT = Partitioning("backoffice_auditevent", "at")

PARTITIONED_INDEXES = (
    "CREATE UNIQUE INDEX backoffice_auditevent_seq_at_key ON backoffice_auditevent (seq, at)",
    "CREATE INDEX backoffice_auditevent_at_e35eb225 ON backoffice_auditevent (at)",
    "CREATE INDEX backoffice_auditevent_action_a4795d6f ON backoffice_auditevent (action)",
    "CREATE INDEX backoffice_auditevent_action_a4795d6f_like ON backoffice_auditevent (action varchar_pattern_ops)",
    "CREATE INDEX audit_object_idx ON backoffice_auditevent (object_type, object_id)",
)
PLAIN_INDEXES = (
    "ALTER TABLE backoffice_auditevent ADD CONSTRAINT backoffice_auditevent_seq_key UNIQUE (seq)",
    "ALTER TABLE backoffice_auditevent ADD CONSTRAINT backoffice_auditevent_hash_key UNIQUE (hash)",
    "CREATE INDEX backoffice_auditevent_hash_f3254440_like ON backoffice_auditevent (hash varchar_pattern_ops)",
    *PARTITIONED_INDEXES[1:],
)


def partition_audit_trail(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    remove_audit_triggers(connection)
    partition_table(connection, AUDIT, primary_key=("id", "at"), now=timezone.now())
    with connection.cursor() as cursor:
        for sql in PARTITIONED_INDEXES:
            cursor.execute(sql)
    install_audit_triggers(connection)


def unpartition_audit_trail(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    remove_audit_triggers(connection)
    unpartition_table(connection, AUDIT, primary_key=("id",))
    with connection.cursor() as cursor:
        for sql in PLAIN_INDEXES:
            cursor.execute(sql)
    install_audit_triggers(connection)


class Migration(migrations.Migration):
    dependencies = [("core", "0003_month_archive")]

    operations = [migrations.RunPython(partition_audit_trail, unpartition_audit_trail)]
