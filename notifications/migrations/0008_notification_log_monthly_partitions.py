"""PostgreSQL: the notification log becomes a table partitioned by month of ``created_at`` (when a contact was
planned: it never changes, so a row never moves between partitions), every contact moved with its id, its
indexes and its foreign keys. SQLite keeps its plain table; the model is the same on both.

A partitioned table cannot hold a unique index without its partition key, and "nothing is planned or sent
twice" rests on two: ``dedupe_key`` (planning twice adds nothing) and ``idempotency_key`` (the provider
recognises a re-send). They move to a small unpartitioned table, ``notifications_notificationlog_keys``, kept by
triggers: a contact inserted takes its keys there first (a taken key is a unique violation, or, under
``INSERT ... ON CONFLICT DO NOTHING`` as the planner inserts, the row is skipped, exactly as before), a key
changed (a contact cancelled for a new tier) follows, a contact deleted frees its keys, a TRUNCATE (the test
runner's flush) empties them. An archived month keeps its keys: its contacts are never planned again.

The instalments' link to their contact (``notifications_notificationitem.notification_id``) loses its foreign
key constraint: PostgreSQL cannot reference a partitioned table by ``id`` alone. Items are written by the
planner in the transaction of their contact, and contacts are never deleted but by archiving, which takes
their items with them.
"""

from django.db import migrations
from django.utils import timezone

from core.partitions import Partitioning, indexes_and_foreign_keys, partition_table, unpartition_table

LOG = Partitioning("notifications_notificationlog", "created_at")
KEYS = "notifications_notificationlog_keys"

KEY_TABLE = (
    f"CREATE TABLE {KEYS} (dedupe_key varchar(200) PRIMARY KEY, idempotency_key uuid NOT NULL UNIQUE)",
    f"INSERT INTO {KEYS} (dedupe_key, idempotency_key) SELECT dedupe_key, idempotency_key FROM {LOG.table}",
    f"""CREATE FUNCTION {KEYS}_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {KEYS} (dedupe_key, idempotency_key) VALUES (NEW.dedupe_key, NEW.idempotency_key)
                ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                IF current_query() ~* 'ON\\s+CONFLICT\\s+DO\\s+NOTHING' THEN
                    RETURN NULL;
                END IF;
                RAISE EXCEPTION 'duplicate key value violates unique constraint "{KEYS}": the contact''s dedupe_key (%) or idempotency_key (%) is taken', NEW.dedupe_key, NEW.idempotency_key
                    USING ERRCODE = 'unique_violation';
            END IF;
        ELSIF NEW.dedupe_key IS DISTINCT FROM OLD.dedupe_key OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key THEN
            UPDATE {KEYS} SET dedupe_key = NEW.dedupe_key, idempotency_key = NEW.idempotency_key
                WHERE dedupe_key = OLD.dedupe_key;
        END IF;
        RETURN NEW;
    END $$""",
    f"""CREATE FUNCTION {KEYS}_release() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            TRUNCATE {KEYS};
        ELSE
            DELETE FROM {KEYS} WHERE dedupe_key = OLD.dedupe_key;
        END IF;
        RETURN NULL;
    END $$""",
    f"CREATE TRIGGER {KEYS}_claim BEFORE INSERT OR UPDATE OF dedupe_key, idempotency_key ON {LOG.table} "
    f"FOR EACH ROW EXECUTE FUNCTION {KEYS}_claim()",
    f"CREATE TRIGGER {KEYS}_release AFTER DELETE ON {LOG.table} FOR EACH ROW EXECUTE FUNCTION {KEYS}_release()",
    f"CREATE TRIGGER {KEYS}_truncate AFTER TRUNCATE ON {LOG.table} FOR EACH STATEMENT EXECUTE FUNCTION {KEYS}_release()",
)
DROP_KEY_TABLE = (
    f"DROP TABLE IF EXISTS {KEYS}",
    f"DROP FUNCTION IF EXISTS {KEYS}_claim() CASCADE",
    f"DROP FUNCTION IF EXISTS {KEYS}_release() CASCADE",
)
PLAIN_KEYS = (
    f"ALTER TABLE {LOG.table} ADD CONSTRAINT {LOG.table}_dedupe_key_key UNIQUE (dedupe_key)",
    f"ALTER TABLE {LOG.table} ADD CONSTRAINT {LOG.table}_idempotency_key_key UNIQUE (idempotency_key)",
    "ALTER TABLE notifications_notificationitem ADD CONSTRAINT notifications_notifi_notification_id_2ddb3306_fk_notificat "
    f"FOREIGN KEY (notification_id) REFERENCES {LOG.table} (id) DEFERRABLE INITIALLY DEFERRED",
)


def partition_log(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    again = indexes_and_foreign_keys(connection, LOG.table)
    partition_table(connection, LOG, primary_key=("id", "created_at"), now=timezone.now())
    with connection.cursor() as cursor:
        for sql in (*again, *KEY_TABLE):
            cursor.execute(sql)


def unpartition_log(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    again = [
        sql
        for sql in indexes_and_foreign_keys(connection, LOG.table)
        if not sql.startswith(("CREATE INDEX notifications_notificationlog_dedupe_key_key ", "CREATE INDEX notifications_notificationlog_idempotency_key_key "))
    ]
    with connection.cursor() as cursor:
        for sql in DROP_KEY_TABLE:
            cursor.execute(sql)
    unpartition_table(connection, LOG, primary_key=("id",))
    with connection.cursor() as cursor:
        for sql in (*again, *PLAIN_KEYS):
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0007_field_labels_in_every_language"),
        ("core", "0004_audit_monthly_partitions"),
    ]

    operations = [migrations.RunPython(partition_log, unpartition_log)]
