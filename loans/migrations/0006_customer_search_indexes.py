"""Trigram indexes for finding customers by part of a phone number, a name or an email (loans.customer_search).

PostgreSQL only (``pg_trgm``, GIN): SQLite, the embedded mode for small books, scans. The indexes are not in the
model's Meta because SQLite could not create them; the expressions match what the ORM's ``contains`` and
``icontains`` lookups emit, so the planner uses them for ``LIKE '%...%'``.
"""

from django.db import migrations

INDEXES = {
    "loans_customer_phone_trgm": 'USING gin ("phone" gin_trgm_ops)',
    "loans_customer_name_trgm": 'USING gin (UPPER("name"::text) gin_trgm_ops)',
    "loans_customer_email_trgm": 'USING gin (UPPER("email"::text) gin_trgm_ops)',
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, using in INDEXES.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "loans_customer" {using}')


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("loans", "0005_loan_legal_hold")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
