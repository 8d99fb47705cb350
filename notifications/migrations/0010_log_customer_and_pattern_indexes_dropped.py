"""The notification log loses two indexes that no query takes and every contact pays for (each planned row, and
each claimed or sent row, writes an entry in every index of the log):

- the customer's index of its own: ``notif_customer_sent_idx`` and ``notif_customer_timeline_idx`` both start
  with the customer and serve every lookup by customer (the timeline, the weekly counts, the contacts of a list
  of customers);
- on PostgreSQL, the pattern index Django adds beside ``dedupe_key``'s (``varchar_pattern_ops``, for
  ``LIKE 'prefix%'``): the only prefix filter on the key is narrowed by customer first.

Dropped by name rather than by ``AlterField``, which on SQLite would copy the whole table to drop one index; on
PostgreSQL the index of the partitioned table takes its partitions' with it.
"""

from django.db import migrations, models

LOG = "notifications_notificationlog"


def _names(schema_editor) -> tuple[str, str]:
    return (
        schema_editor._create_index_name(LOG, ["customer_id"]),
        schema_editor._create_index_name(LOG, ["dedupe_key"], suffix="_like"),
    )


def drop_indexes(apps, schema_editor):
    customer, pattern = _names(schema_editor)
    schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(customer)}")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(pattern)}")


def create_indexes(apps, schema_editor):
    customer, pattern = _names(schema_editor)
    qn = schema_editor.quote_name
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {qn(customer)} ON {qn(LOG)} ({qn('customer_id')})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {qn(pattern)} ON {qn(LOG)} ({qn('dedupe_key')} varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("loans", "0008_policy_versions_and_tests"),
        ("notifications", "0009_contact_policy_version"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="notificationlog",
                    name="customer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="notifications",
                        to="loans.customer",
                        verbose_name="customer",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
