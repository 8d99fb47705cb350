"""Two read-only views the outcomes job joins (``FirstContact``, ``CurrentAssignment``): an instalment's first
contact and a customer's latest arm per tier, each one row per key, in SQL both databases speak."""

from django.db import migrations, models

# Written without GROUP BY (an anti-join: no earlier contact, no later assignment) so that both databases can
# join them row by row through their indexes or as a whole by hashing, as the query needs.
FIRST_CONTACT = """
CREATE VIEW strategy_first_contact AS
SELECT item.installment_id AS installment_id, item.notification_id AS notification_id,
       log.policy_version_id AS policy_version_id
FROM notifications_notificationitem item
JOIN notifications_notificationlog log ON log.id = item.notification_id
WHERE NOT EXISTS (
    SELECT 1 FROM notifications_notificationitem earlier
    WHERE earlier.installment_id = item.installment_id AND earlier.notification_id < item.notification_id
)
"""

CURRENT_ASSIGNMENT = """
CREATE VIEW strategy_current_assignment AS
SELECT a.id AS id, a.customer_id AS customer_id, a.tier_id AS tier_id, a.arm AS arm,
       a.policy_version_id AS policy_version_id
FROM loans_policyassignment a
WHERE NOT EXISTS (
    SELECT 1 FROM loans_policyassignment later
    WHERE later.customer_id = a.customer_id AND later.tier_id = a.tier_id AND later.id > a.id
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("strategy", "0002_outcome_cure_by_instalment"),
        ("loans", "0008_policy_versions_and_tests"),
        ("notifications", "0009_contact_policy_version"),
    ]

    operations = [
        migrations.RunSQL(FIRST_CONTACT, "DROP VIEW strategy_first_contact"),
        migrations.RunSQL(CURRENT_ASSIGNMENT, "DROP VIEW strategy_current_assignment"),
        migrations.CreateModel(
            name="FirstContact",
            fields=[
                (
                    "installment",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="outcome_first_contact",
                        serialize=False,
                        to="loans.installment",
                    ),
                ),
                ("notification_id", models.BigIntegerField()),
                (
                    "policy_version",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="loans.policyversion",
                    ),
                ),
            ],
            options={"db_table": "strategy_first_contact", "managed": False},
        ),
        migrations.CreateModel(
            name="CurrentAssignment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "arm",
                    models.CharField(
                        choices=[("champion", "Champion"), ("challenger", "Challenger"), ("holdout", "Holdout (no pre-due reminders)")],
                        max_length=16,
                    ),
                ),
                (
                    "customer",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="outcome_arms",
                        to="loans.customer",
                    ),
                ),
                (
                    "policy_version",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="loans.policyversion",
                    ),
                ),
                (
                    "tier",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="loans.credittier",
                    ),
                ),
            ],
            options={"db_table": "strategy_current_assignment", "managed": False},
        ),
    ]
