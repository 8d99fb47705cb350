"""Demo ladders per tier and a couple of agencies (called by ``manage.py seed_demo``; idempotent)."""

from __future__ import annotations

import datetime as dt
import random

from django.contrib.auth import get_user_model
from django.utils import timezone

from loans.models import CreditTier, Installment

from .models import Agency, CallTask, CollectionCase, EscalationStep, PromiseToPay

# Weeks of worked cases behind the demo book (see ``seed_history``).
HISTORY_DAYS = 56
# An instalment paid this many days or more after its due date had a case opened on it.
CASE_AFTER_DAYS = 5
CALL_OUTCOMES = [
    (CallTask.Outcome.NO_ANSWER, 35),
    (CallTask.Outcome.REACHED, 22),
    (CallTask.Outcome.PROMISE_TO_PAY, 30),
    (CallTask.Outcome.WRONG_NUMBER, 5),
    (CallTask.Outcome.REFUSED, 8),
]

# (min_dpd, stage, action, kind): low-risk A reaches the phone at 15 DPD, very-high-risk D at 3.
LADDERS: dict[str, list[tuple[int, str, str, str]]] = {
    "A": [
        (1, "early", "sms", "overdue"),
        (8, "firm", "sms", "overdue"),
        (8, "firm", "email", "overdue"),
        (15, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "B": [
        (1, "early", "sms", "overdue"),
        (5, "firm", "sms", "overdue"),
        (10, "call", "call_task", ""),
        (45, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "C": [
        (1, "early", "sms", "overdue"),
        (3, "firm", "push", "overdue"),
        (5, "call", "call_task", ""),
        (35, "agency", "agency", ""),
        (75, "legal", "legal", ""),
    ],
    "D": [
        (1, "early", "sms", "overdue"),
        (3, "call", "call_task", ""),
        (7, "firm", "sms", "overdue"),
        (30, "agency", "agency", ""),
        (60, "legal", "legal", ""),
    ],
}

AGENCIES = [
    ("HUAXIN", "华信催收服务有限公司", False),
    ("PEARL", "Pearl River Recoveries", True),
]


def seed(stdout=None, today: dt.date | None = None) -> dict[str, int]:
    """Create the demo ladders (tiers looked up by code; a missing tier is skipped), agencies, and the weeks
    of worked cases behind the book (``seed_history``)."""
    created = 0
    for code, steps in LADDERS.items():
        tier = CreditTier.objects.filter(code=code).first()
        if tier is None:
            continue
        for min_dpd, stage, action, kind in steps:
            _, was_created = EscalationStep.objects.get_or_create(
                tier=tier, min_dpd=min_dpd, action=action, defaults={"stage": stage, "kind": kind}
            )
            created += was_created
    agencies = 0
    for code, name, may_see in AGENCIES:
        _, was_created = Agency.objects.get_or_create(
            code=code, defaults={"name": name, "may_see_personal_data": may_see}
        )
        agencies += was_created
    history = seed_history(today or timezone.localdate())
    if stdout is not None:
        stdout.write(
            f"collections: {created} escalation steps, {agencies} agencies created, "
            f"{history['cases']} past cases with {history['calls']} calls and {history['promises']} promises"
        )
    return {"escalation_steps": created, "agencies": agencies, **history}


def _moment(day: dt.date, hour: int) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, 0)))


def seed_history(today: dt.date) -> dict[str, int]:
    """For each instalment of the last ``HISTORY_DAYS`` days that was paid ``CASE_AFTER_DAYS`` or more days
    late: a case opened after grace and closed by the payment, the calls a collector made on it (their
    outcomes), and the promise given on a call, kept when the payment came by its date and broken otherwise.
    The dashboard's promise-kept and right-party-contact rates read these. Idempotent: a case already there
    for the same loan and opening moment is not made again. A few queries and bulk inserts."""
    collector = get_user_model().objects.filter(username="collector").first()
    rnd = random.Random(11)
    outcomes, weights = zip(*CALL_OUTCOMES, strict=True)
    rows = (
        Installment.objects.filter(
            paid_at__isnull=False, due_date__gte=today - dt.timedelta(days=HISTORY_DAYS), due_date__lt=today
        )
        .order_by("id")
        .values_list("id", "loan_id", "due_date", "paid_at", "amount_due", "loan__customer__tier_id")
    )
    plans = []
    for _id, loan_id, due, paid_at, amount, tier_id in rows:
        paid_on = timezone.localdate(paid_at)
        if (paid_on - due).days < CASE_AFTER_DAYS:
            continue
        plans.append((loan_id, tier_id, due, paid_at, paid_on, amount))
    existing = set(
        CollectionCase.objects.filter(
            loan_id__in=[p[0] for p in plans], close_reason=CollectionCase.CloseReason.PAID
        ).values_list("loan_id", "opened_at")
    )
    cases, calls, promises = [], [], []
    for loan_id, tier_id, due, paid_at, paid_on, amount in plans:
        opened = _moment(due + dt.timedelta(days=4), 8)
        if (loan_id, opened) in existing:
            continue
        case = CollectionCase(
            loan_id=loan_id,
            tier_id=tier_id,
            stage="call",
            status=CollectionCase.Status.CLOSED,
            opened_at=opened,
            closed_at=paid_at,
            close_reason=CollectionCase.CloseReason.PAID,
            oldest_due_date=due,
            amount_overdue=amount,
        )
        cases.append(case)
        call_days = sorted(
            {rnd.randint(5, max(5, (paid_on - due).days - 1)) for _ in range(rnd.randint(1, 3))}
        )
        promised = False
        for offset in call_days:
            call_at = _moment(due + dt.timedelta(days=offset), rnd.randint(9, 19))
            outcome = rnd.choices(outcomes, weights)[0]
            if outcome == CallTask.Outcome.PROMISE_TO_PAY and promised:
                outcome = CallTask.Outcome.REACHED
            task = CallTask(
                case=case,
                assigned_to=collector,
                scheduled_for=call_at,
                created_at=opened,
                status=CallTask.Status.DONE,
                outcome=outcome,
                completed_at=call_at,
                completed_by=collector,
            )
            calls.append(task)
            if outcome == CallTask.Outcome.PROMISE_TO_PAY:
                promised = True
                promised_date = call_at.date() + dt.timedelta(days=rnd.randint(2, 7))
                kept = paid_on <= promised_date
                case.broken_promises += 0 if kept else 1
                promises.append(
                    PromiseToPay(
                        case=case,
                        call_task=task,
                        amount=amount,
                        promised_date=promised_date,
                        status=PromiseToPay.Status.KEPT if kept else PromiseToPay.Status.BROKEN,
                        created_at=call_at,
                        created_by=collector,
                        resolved_at=paid_at if kept else _moment(promised_date + dt.timedelta(days=1), 1),
                    )
                )
    CollectionCase.objects.bulk_create(cases, batch_size=500)
    for task in calls:
        task.case_id = task.case.pk
    CallTask.objects.bulk_create(calls, batch_size=500)
    for promise in promises:
        promise.case_id, promise.call_task_id = promise.case.pk, promise.call_task.pk
    PromiseToPay.objects.bulk_create(promises, batch_size=500)
    return {"cases": len(cases), "calls": len(calls), "promises": len(promises)}
