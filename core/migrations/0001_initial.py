"""The shared models move from the project package (``backoffice``) to ``core`` without touching the database:
their tables keep their names (``backoffice_*``), so this creates them in Django's state only. The state of the
old app forgets them in ``backoffice.0009_move_shared_models_to_core``."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("backoffice", "0008_audit_verifications"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditChainHead',
                    fields=[
                        ('id', models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                        ('seq', models.BigIntegerField(default=0)),
                        ('hash', models.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
                    ],
                    options={
                        'verbose_name': 'audit chain head',
                        'db_table': 'backoffice_auditchainhead',
                        'default_permissions': (),
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.BigIntegerField(unique=True, verbose_name='sequence')),
                        ('at', models.DateTimeField(db_index=True, verbose_name='at')),
                        ('actor', models.CharField(help_text='A user name, or job:<name> for a scheduled job.', max_length=150, verbose_name='actor')),
                        ('action', models.CharField(db_index=True, max_length=100, verbose_name='action')),
                        ('object_type', models.CharField(blank=True, max_length=100, verbose_name='object type')),
                        ('object_id', models.CharField(blank=True, max_length=64, verbose_name='object id')),
                        ('before', models.JSONField(blank=True, null=True, verbose_name='before')),
                        ('after', models.JSONField(blank=True, null=True, verbose_name='after')),
                        ('prev_hash', models.CharField(max_length=64, verbose_name='previous hash')),
                        ('hash', models.CharField(max_length=64, unique=True, verbose_name='hash')),
                    ],
                    options={
                        'verbose_name': 'audit event',
                        'verbose_name_plural': 'audit trail',
                        'db_table': 'backoffice_auditevent',
                        'ordering': ['seq'],
                        'permissions': [('export_auditevent', 'Can export the audit trail')],
                        'indexes': [models.Index(fields=['object_type', 'object_id'], name='audit_object_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='AuditVerification',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('intact', 'Intact'), ('broken', 'Broken'), ('failed', 'Failed')], default='queued', max_length=16, verbose_name='status')),
                        ('events_total', models.PositiveBigIntegerField(default=0, verbose_name='events in the trail')),
                        ('events_checked', models.PositiveBigIntegerField(default=0, verbose_name='events verified')),
                        ('anchors_checked', models.PositiveIntegerField(default=0, verbose_name='anchors matched')),
                        ('broken_seq', models.BigIntegerField(blank=True, null=True, verbose_name='first broken event')),
                        ('problem', models.TextField(blank=True, verbose_name='problem')),
                        ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                        ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='audit_verifications', to=settings.AUTH_USER_MODEL, verbose_name='requested by')),
                    ],
                    options={
                        'verbose_name': 'audit verification',
                        'verbose_name_plural': 'audit verifications',
                        'db_table': 'backoffice_auditverification',
                        'ordering': ['-created_at', '-id'],
                        'default_permissions': (),
                    },
                ),
                migrations.CreateModel(
                    name='ExportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('notifications', 'Notification log'), ('audit', 'Audit trail')], max_length=16, verbose_name='kind')),
                        ('format', models.CharField(choices=[('csv', 'CSV'), ('xlsx', 'XLSX'), ('json', 'JSON')], max_length=8, verbose_name='format')),
                        ('filters', models.JSONField(blank=True, default=dict, verbose_name='filters')),
                        ('is_masked', models.BooleanField(default=True, verbose_name='personal data masked')),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=16, verbose_name='status')),
                        ('rows_done', models.PositiveBigIntegerField(default=0, verbose_name='rows written')),
                        ('total_estimate', models.PositiveBigIntegerField(blank=True, null=True, verbose_name='rows expected')),
                        ('file_path', models.CharField(blank=True, help_text='Relative to EXPORT_ROOT.', max_length=500, verbose_name='file')),
                        ('file_sha256', models.CharField(blank=True, max_length=64, verbose_name='file SHA-256')),
                        ('manifest_sha256', models.CharField(blank=True, max_length=64, verbose_name='manifest SHA-256')),
                        ('error', models.TextField(blank=True, verbose_name='error')),
                        ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                        ('started_at', models.DateTimeField(blank=True, null=True, verbose_name='started at')),
                        ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='export_jobs', to=settings.AUTH_USER_MODEL, verbose_name='requested by')),
                    ],
                    options={
                        'verbose_name': 'export',
                        'verbose_name_plural': 'exports',
                        'db_table': 'backoffice_exportjob',
                        'ordering': ['-created_at', '-id'],
                        'permissions': [('access_all_exports', "Can see and download every user's exports")],
                        'default_permissions': ('view',),
                        'indexes': [models.Index(fields=['user', '-created_at'], name='exportjob_user_created_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='ImportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('resource', models.CharField(help_text='Dotted path of the resource class.', max_length=200, verbose_name='resource')),
                        ('file_name', models.CharField(max_length=255, verbose_name='file name')),
                        ('file_path', models.CharField(help_text='Relative to IMPORT_ROOT.', max_length=500, verbose_name='stored file')),
                        ('file_sha256', models.CharField(max_length=64, verbose_name='file SHA-256')),
                        ('format', models.CharField(max_length=100, verbose_name='format')),
                        ('is_dry_run', models.BooleanField(default=True, verbose_name='dry run')),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=16, verbose_name='status')),
                        ('rows_total', models.PositiveBigIntegerField(blank=True, null=True, verbose_name='rows in the file')),
                        ('rows_done', models.PositiveBigIntegerField(default=0, verbose_name='rows done')),
                        ('rows_new', models.PositiveBigIntegerField(default=0, verbose_name='new')),
                        ('rows_updated', models.PositiveBigIntegerField(default=0, verbose_name='updated')),
                        ('rows_skipped', models.PositiveBigIntegerField(default=0, verbose_name='unchanged')),
                        ('error_count', models.PositiveBigIntegerField(default=0, verbose_name='errors')),
                        ('errors', models.JSONField(blank=True, default=list, help_text='[{line, column, message}], the first ones.', verbose_name='errors by line')),
                        ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                        ('started_at', models.DateTimeField(blank=True, null=True, verbose_name='started at')),
                        ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                        ('confirmed_from', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='confirmation', to='core.importjob', verbose_name='confirms the dry run')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='import_jobs', to=settings.AUTH_USER_MODEL, verbose_name='requested by')),
                    ],
                    options={
                        'verbose_name': 'import',
                        'verbose_name_plural': 'imports',
                        'db_table': 'backoffice_importjob',
                        'ordering': ['-created_at', '-id'],
                        'default_permissions': ('view',),
                        'indexes': [models.Index(fields=['user', '-created_at'], name='importjob_user_created_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
