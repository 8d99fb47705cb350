"""An instalment's loan and an allocation's payment lose their own index: the unique (loan, seq) and (payment,
instalment) indexes begin with them and serve every search by them, and each row written paid for one more index
entry (an import's instalments, a payments file's allocations and its updates of what each instalment was paid).

Only the indexes are dropped: Django's own ``AlterField`` would also drop and re-add the foreign key on PostgreSQL
(checking every row again) and rebuild both tables on SQLite."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = (
    ("loans_installment_loan_id_275b9d1c", "loans_installment", "loan_id"),
    ("loans_paymentallocation_payment_id_a43ae1bf", "loans_paymentallocation", "payment_id"),
)


class Migration(migrations.Migration):
    dependencies = [("loans", "0009_instalments_ordered_by_loan_id")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="installment",
                    name="loan",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="installments",
                        to="loans.loan",
                        verbose_name="loan",
                    ),
                ),
                migrations.AlterField(
                    model_name="paymentallocation",
                    name="payment",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="allocations",
                        to="loans.payment",
                        verbose_name="payment",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"', f'CREATE INDEX "{name}" ON "{table}" ("{column}")'
                )
                for name, table, column in INDEXES
            ],
        )
    ]
