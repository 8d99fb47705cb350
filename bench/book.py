"""Generate a realistic loan book fast (bulk inserts), for the benchmarks only.

Every loan repays monthly on a cycle day; four instalments are materialised around the run's day (two past, the
current one, the next), so on any day about 1/28 of the book falls due, some are in grace, some overdue (a few deep
overdue), most past ones are paid. Tiers A-D with their rules, templates and ladders are created like the demo.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

TIERS = [
    # code, name, min, max, risk, grace, cap, channel order
    ("A", "Prime", 750, 1000, "low", 7, 2, "push,sms,email"),
    ("B", "Standard", 650, 749, "medium", 5, 3, "sms,push,email"),
    ("C", "Watch", 550, 649, "high", 3, 4, "sms,push,email"),
    ("D", "High risk", 0, 549, "very_high", 3, 6, "sms,email,push"),
]
RULES = {
    "A": [(-3, "push", "pre_due"), (0, "sms", "due_today")],
    "B": [(-3, "sms", "pre_due"), (0, "sms", "due_today"), (2, "sms", "grace")],
    "C": [(-7, "sms", "pre_due"), (-3, "sms", "pre_due"), (0, "sms", "due_today"), (1, "sms", "grace")],
    "D": [
        (-7, "sms", "pre_due"),
        (-3, "sms", "pre_due"),
        (-1, "push", "pre_due"),
        (0, "sms", "due_today"),
        (1, "sms", "grace"),
    ],
}
STEPS = {
    "A": [
        (8, "early", "sms", "overdue"),
        (15, "firm", "email", "overdue"),
        (30, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "B": [
        (6, "early", "sms", "overdue"),
        (12, "firm", "sms", "overdue"),
        (20, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "C": [
        (4, "early", "sms", "overdue"),
        (8, "call", "call_task", ""),
        (45, "agency", "agency", ""),
        (75, "legal", "legal", ""),
    ],
    "D": [
        (4, "early", "sms", "overdue"),
        (5, "call", "call_task", ""),
        (30, "agency", "agency", ""),
        (60, "legal", "legal", ""),
    ],
}
ZONES = ["Asia/Shanghai"] * 18 + ["Asia/Hong_Kong", "America/Los_Angeles"]


def add_months(day: dt.date, months: int, cycle_day: int) -> dt.date:
    month_index = day.year * 12 + (day.month - 1) + months
    return dt.date(month_index // 12, month_index % 12 + 1, cycle_day)


def configure() -> None:
    """Tiers, rules, templates, steps: idempotent."""
    from django.apps import apps

    from loans.models import CreditTier
    from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate

    tiers = {}
    for code, name, lo, hi, risk, grace, cap, order in TIERS:
        tiers[code], _ = CreditTier.objects.update_or_create(
            code=code,
            defaults=dict(
                name=name,
                min_score=lo,
                max_score=hi,
                risk_level=risk,
                grace_period_days=grace,
                max_contacts_per_week=cap,
                channel_order=order,
            ),
        )
    for code, rules in RULES.items():
        for offset, channel, kind in rules:
            ReminderRule.objects.get_or_create(
                tier=tiers[code],
                offset_days=offset,
                channel=channel,
                kind=kind,
                defaults={"send_time": dt.time(10, 0)},
            )
    for kind in ("pre_due", "due_today", "grace", "overdue", "autodebit_failed", "promise_reminder"):
        for channel in ("sms", "email", "push"):
            for language, body in (
                (
                    "zh-hans",
                    "{customer_name}您好,您的借款{loan_ref}应还{amount_due}{currency},到期日{due_date}。{loans}",
                ),
                (
                    "en",
                    "Dear {customer_name}, {amount_due} {currency} for loan {loan_ref} is due on {due_date}. {loans}",
                ),
            ):
                ReminderTemplate.objects.get_or_create(
                    kind=kind,
                    channel=channel,
                    language=language,
                    defaults={"subject": "Repayment reminder", "body": body},
                )
    ContactPolicy.get()
    if apps.is_installed("debt_collection") and hasattr(apps.get_app_config("collections").module, "models"):
        try:
            step_model = apps.get_model("collections", "EscalationStep")
        except LookupError:
            return
        for code, steps in STEPS.items():
            for min_dpd, stage, action, kind in steps:
                step_model.objects.get_or_create(
                    tier=tiers[code], min_dpd=min_dpd, action=action, defaults={"stage": stage, "kind": kind}
                )


def book_size() -> int:
    from loans.models import Loan

    return Loan.objects.count()


def wipe() -> None:
    """Empty the book and everything that hangs off it (benchmark database only)."""
    from django.apps import apps
    from django.db import connection

    tables = []
    for label in (
        "notifications.NotificationItem",
        "notifications.NotificationLog",
        "notifications.OutboxMessage",
        "loans.AutoDebitAttempt",
        "loans.PaymentAllocation",
        "loans.Payment",
        "loans.Installment",
        "loans.Loan",
        "loans.CreditScore",
        "loans.Customer",
    ):
        tables.append(apps.get_model(label)._meta.db_table)
    if apps.is_installed("debt_collection"):
        for model in apps.get_app_config("collections").get_models():
            if model.__name__ != "EscalationStep" and model.__name__ != "Agency":
                tables.insert(0, model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')


def generate(
    n_loans: int, today: dt.date, *, seed: int = 7, batch: int = 5000, installments: bool = True
) -> dict:
    """Create ``n_loans`` loans (about 9 in 10 customers have one, the rest two) with four instalments each
    (none with ``installments=False``: a benchmark that imports them)."""
    from django.db import transaction

    from loans.models import CreditTier, Customer, Installment, Loan

    make_installments = installments
    rng = random.Random(seed)
    tiers = list(CreditTier.objects.all())
    counts = {"customers": 0, "loans": 0, "installments": 0}
    now = dt.datetime.now(dt.timezone.utc)
    loan_no = 0
    cust_no = 0
    while loan_no < n_loans:
        with transaction.atomic():
            customers = []
            loans_per_customer = []
            while loan_no + sum(loans_per_customer) < n_loans and len(customers) < batch:
                cust_no += 1
                tier = rng.choice(tiers)
                score = rng.randint(tier.min_score, tier.max_score)
                customers.append(
                    Customer(
                        ref=f"BC{cust_no:08d}",
                        name=f"Customer {cust_no}",
                        phone=f"+86139{cust_no:08d}",
                        email=f"c{cust_no}@example.com",
                        push_token=f"tok{cust_no}",
                        language="zh-hans" if rng.random() < 0.8 else "en",
                        timezone=rng.choice(ZONES),
                        credit_score=score,
                        tier=tier,
                        opt_out_sms=rng.random() < 0.03,
                        created_at=now,
                        updated_at=now,
                    )
                )
                loans_per_customer.append(2 if rng.random() < 0.1 else 1)
            Customer.objects.bulk_create(customers, batch_size=batch)
            loans = []
            for customer, n in zip(customers, loans_per_customer):
                for _ in range(n):
                    if loan_no >= n_loans:
                        break
                    loan_no += 1
                    loans.append(
                        Loan(
                            ref=f"BL{loan_no:09d}",
                            customer=customer,
                            principal=Decimal(rng.choice([1200, 3000, 6000, 12000])),
                            currency="CNY",
                            disbursed_on=today - dt.timedelta(days=rng.randint(100, 700)),
                            autopay=rng.random() < 0.3,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            Loan.objects.bulk_create(loans, batch_size=batch)
            installments = []
            for loan in loans:
                cycle = rng.randint(1, 28)
                amount = (loan.principal / 12).quantize(Decimal("0.01"))
                deep = rng.random() < 0.02
                for i, months in enumerate((-2, -1, 0, 1), start=1):
                    due = add_months(today, months, cycle)
                    past = due < today
                    paid = past and (rng.random() < 0.93) and not (deep and i == 1)
                    installments.append(
                        Installment(
                            loan=loan,
                            seq=i,
                            due_date=due if not (deep and i == 1) else due - dt.timedelta(days=60),
                            amount_due=amount,
                            amount_paid=amount if paid else Decimal("0"),
                            paid_at=now if paid else None,
                        )
                    )
            if make_installments:
                Installment.objects.bulk_create(installments, batch_size=batch)
            counts["customers"] += len(customers)
            counts["loans"] += len(loans)
            counts["installments"] += len(installments) if make_installments else 0
    return counts
