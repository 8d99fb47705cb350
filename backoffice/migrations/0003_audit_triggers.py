"""The database itself refuses UPDATE and DELETE on the audit trail; the chain head row exists from here on."""

from django.db import migrations


def install(apps, schema_editor):
    from core.audit_triggers import install_audit_triggers

    connection = schema_editor.connection
    if connection.vendor not in ("sqlite", "postgresql"):
        raise RuntimeError(f"The audit trail needs append-only triggers; none written for {connection.vendor}.")
    install_audit_triggers(connection)


def remove(apps, schema_editor):
    from core.audit_triggers import remove_audit_triggers

    remove_audit_triggers(schema_editor.connection)


def create_chain_head(apps, schema_editor):
    # Created here, once, so concurrent first writers never race to insert it.
    AuditEvent = apps.get_model("backoffice", "AuditEvent")
    AuditChainHead = apps.get_model("backoffice", "AuditChainHead")
    db = schema_editor.connection.alias
    last = AuditEvent.objects.using(db).order_by("-seq").values_list("seq", "hash").first()
    seq, digest = last or (0, "0" * 64)
    AuditChainHead.objects.using(db).get_or_create(id=1, defaults={"seq": seq, "hash": digest})


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0002_roles")]

    operations = [
        migrations.RunPython(create_chain_head, migrations.RunPython.noop),
        migrations.RunPython(install, remove),
    ]
