"""The audit trail, its chain head and verifications, and the export and import jobs now belong to ``core``
(``core.0001_initial``); their tables stay where they are, so this forgets them in the state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("backoffice", "0008_audit_verifications"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="exportjob", name="user"),
                migrations.RemoveField(model_name="importjob", name="confirmed_from"),
                migrations.RemoveField(model_name="importjob", name="user"),
                migrations.RemoveField(model_name="auditverification", name="user"),
                migrations.DeleteModel(name="AuditChainHead"),
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="AuditVerification"),
                migrations.DeleteModel(name="ExportJob"),
                migrations.DeleteModel(name="ImportJob"),
            ],
            database_operations=[],
        ),
    ]
