"""Loans under legal referral today (an open case frozen by the referral) carry the loan book's legal hold."""

from django.db import migrations


def hold_referred_loans(apps, schema_editor):
    CollectionCase = apps.get_model("collections", "CollectionCase")
    Loan = apps.get_model("loans", "Loan")
    referred = CollectionCase.objects.filter(status="open", is_frozen=True).values("loan_id")
    Loan.objects.filter(pk__in=referred, legal_hold=False).update(legal_hold=True)


class Migration(migrations.Migration):
    dependencies = [
        ("collections", "0003_call_attempts"),
        ("loans", "0005_loan_legal_hold"),
    ]

    operations = [migrations.RunPython(hold_referred_loans, migrations.RunPython.noop)]
