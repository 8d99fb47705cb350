"""The audit trail's ``hash`` loses its UNIQUE index (on SQLite; PostgreSQL dropped it with the partitioning,
``core.0004``).

Nothing looks an event up by its hash: ``verify_audit`` walks the chain in ``seq`` order and recomputes each
hash, and an anchor names its event by ``seq``. Two events can never share a hash (each hash covers its own
``seq`` and the previous hash), so the index guarded nothing, while every event paid for an insert at a random
place of it, and an import writes hundreds of thousands of events. SQLite cannot drop the index of a column's
UNIQUE, so the table is rebuilt with its rows (Django's way to alter a column there), and the append-only
triggers, which go with the old table, are put back.
"""

from django.db import migrations, models


def _fields(apps):
    model = apps.get_model("core", "AuditEvent")
    old = model._meta.get_field("hash")
    new = models.CharField(max_length=64, verbose_name="hash")
    new.set_attributes_from_name("hash")
    new.model = model
    return model, old, new


def drop_hash_index(apps, schema_editor):
    from core.audit_triggers import install_audit_triggers

    if schema_editor.connection.vendor != "sqlite":
        return
    model, old, new = _fields(apps)
    schema_editor.alter_field(model, old, new)
    install_audit_triggers(schema_editor.connection)


def restore_hash_index(apps, schema_editor):
    from core.audit_triggers import install_audit_triggers

    if schema_editor.connection.vendor != "sqlite":
        return
    model, old, new = _fields(apps)
    schema_editor.alter_field(model, new, old)
    install_audit_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("core", "0007_audit_partitions_refuse_truncate")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="hash",
                    field=models.CharField(max_length=64, verbose_name="hash"),
                )
            ],
            database_operations=[migrations.RunPython(drop_hash_index, restore_hash_index, elidable=False)],
        )
    ]
