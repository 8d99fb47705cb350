"""The pending contacts' partial index in the dispatcher's claim order, ``(scheduled_for, id)``: by the due moment
alone, PostgreSQL either sorted every pending contact due for each batch it claimed (all of a day's 100,000 at
1,000,000 loans, 30-50 ms a batch) or walked the changelist's index (``-scheduled_for, -id``) backwards through every
contact ever sent to find the first pending ones (0.4 s a batch after a few days). On PostgreSQL the partitioned
log's index takes its partitions' with it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('loans', '0008_policy_versions_and_tests'),
        ('notifications', '0010_log_customer_and_pattern_indexes_dropped'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='notificationlog',
            name='notif_pending_due_idx',
        ),
        migrations.AddIndex(
            model_name='notificationlog',
            index=models.Index(condition=models.Q(('status__in', ['planned', 'deferred'])), fields=['scheduled_for', 'id'], name='notif_pending_due_idx'),
        ),
    ]
