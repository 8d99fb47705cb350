"""Each month's partition of the audit trail refuses TRUNCATE, as the trail itself does (PostgreSQL does not
clone a partitioned table's statement-level triggers onto its partitions). Nothing to do on SQLite."""

from django.db import migrations


def guard_partitions(apps, schema_editor):
    from core.audit_triggers import install_audit_triggers

    if schema_editor.connection.vendor == "postgresql":
        install_audit_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("core", "0006_export_of_outcomes")]

    operations = [migrations.RunPython(guard_partitions, migrations.RunPython.noop, elidable=False)]
