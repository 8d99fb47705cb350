"""Factories of collections: ladders, overdue debtors, collectors, agencies, and a day-by-day clock."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from debt_collection.models import Agency, CallTask, CollectionCase, EscalationStep
from loans.services import record_payment

from .factories import make_customer, make_installment, make_loan, make_tier, make_user
from .factories_reminders import SHANGHAI, local, make_template

DUE = dt.date(2026, 12, 1)

# Low risk: long grace, the phone only at 15 DPD. High risk: short grace, the phone (with an SMS) at 3 DPD, so its
# case opens at the call step: the early SMS at 1 DPD, inside grace, is passed over (recorded as skipped).
LOW_RISK_LADDER = [
    (1, "early", "sms", "overdue"),
    (8, "firm", "sms", "overdue"),
    (8, "firm", "email", "overdue"),
    (15, "call", "call_task", ""),
    (60, "agency", "agency", ""),
    (90, "legal", "legal", ""),
]
HIGH_RISK_LADDER = [
    (1, "early", "sms", "overdue"),
    (3, "call", "sms", "overdue"),
    (3, "call", "call_task", ""),
    (7, "firm", "sms", "overdue"),
    (30, "agency", "agency", ""),
    (60, "legal", "legal", ""),
]


def make_ladder(tier, steps) -> list[EscalationStep]:
    return [
        EscalationStep.objects.create(tier=tier, min_dpd=d, stage=stage, action=action, kind=kind)
        for d, stage, action, kind in steps
    ]


def low_risk_tier(**kwargs):
    kwargs.setdefault("risk_level", "low")
    kwargs.setdefault("grace_period_days", 5)
    kwargs.setdefault("max_contacts_per_week", 3)
    tier = make_tier(**kwargs)
    make_ladder(tier, LOW_RISK_LADDER)
    return tier


def high_risk_tier(**kwargs):
    kwargs.setdefault("risk_level", "very_high")
    kwargs.setdefault("grace_period_days", 2)
    kwargs.setdefault("max_contacts_per_week", 5)
    tier = make_tier(**kwargs)
    make_ladder(tier, HIGH_RISK_LADDER)
    return tier


def make_overdue_loan(tier, *, due_date=DUE, amount=Decimal("500.00"), installments=1, **customer_kwargs):
    """A customer of ``tier`` with one loan whose instalments fall due monthly from ``due_date``."""
    customer = make_customer(tier=tier, **customer_kwargs)
    loan = make_loan(customer)
    for n in range(installments):
        make_installment(loan, due_date=due_date + dt.timedelta(days=30 * n), amount_due=amount)
    return loan


def overdue_templates():
    for kind in ("overdue", "promise_reminder", "grace"):
        for channel in ("sms", "email", "push"):
            make_template(
                kind=kind,
                channel=channel,
                body="{customer_name}: {amount_due} {currency} is {days_past_due} days late.\n{loans}",
            )


def day(n: int, hour: int = 10, tz: str = SHANGHAI, due: dt.date = DUE) -> dt.datetime:
    """The UTC moment of ``hour`` local time, ``n`` days after the due date."""
    d = due + dt.timedelta(days=n)
    return local(tz, d.year, d.month, d.day, hour)


def make_collector(username: str, **kwargs):
    # Tests log in with force_login: no password to hash keeps them fast.
    kwargs.setdefault("password", None)
    return make_user(username, group="Collector", **kwargs)


def make_agency(code="AG1", *, may_see_personal_data=False, **kwargs) -> Agency:
    kwargs.setdefault("name", f"Agency {code}")
    return Agency.objects.create(code=code, may_see_personal_data=may_see_personal_data, **kwargs)


def open_case(loan) -> CollectionCase | None:
    return CollectionCase.objects.open().filter(loan=loan).first()


def open_tasks(loan) -> list[CallTask]:
    return list(CallTask.objects.filter(case__loan=loan, status=CallTask.Status.OPEN))


def pay(loan, amount, at, ref=None, captured=None):
    """Record a payment; the loan book's signals fire on commit, so run them as a commit would."""
    inst = loan.installments.filter(paid_at__isnull=True).order_by("due_date").first()
    return record_payment(
        loan=loan,
        amount=Decimal(amount),
        received_at=at,
        ref=ref or f"P-{loan.ref}-{at:%m%d%H%M}-{amount}",
        installment=inst,
    )


def count_queries(func, *args, **kwargs) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        result = func(*args, **kwargs)
    return len(ctx.captured_queries), result
