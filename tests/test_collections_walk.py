"""A book of overdue loans walked day by day through the whole pipeline, with what collectors and customers do.

Low-risk tier: grace 5 days; SMS at 1, SMS + email at 8, call at 15, agency at 60, legal at 90 DPD.
High-risk tier: grace 2 days; SMS at 1, call at 3, firm SMS at 7, agency at 30, legal at 60 DPD.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from backoffice.jobs import run_pipeline
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import AgencyPlacement, CallTask, CaseStepRun, CollectionCase, PromiseToPay
from loans.models import Customer
from notifications.models import NotificationLog

from .factories import make_score
from .factories_collections import (
    day,
    high_risk_tier,
    low_risk_tier,
    make_agency,
    make_collector,
    make_overdue_loan,
    open_tasks,
    overdue_templates,
    pay,
)

pytestmark = pytest.mark.django_db


def test_a_book_of_overdue_loans_walks_its_ladders_day_by_day(django_capture_on_commit_callbacks):
    overdue_templates()
    low, high = low_risk_tier(), high_risk_tier()
    make_agency("AG1")
    collectors = [make_collector("chen"), make_collector("li")]
    loans = {
        "low_partial": make_overdue_loan(low),
        "low_to_high": make_overdue_loan(low),
        "high_promise": make_overdue_loan(high),
        "high_paid": make_overdue_loan(high),
        "high_dispute": make_overdue_loan(high),
    }
    stages: dict[str, dict[int, str | None]] = {name: {} for name in loans}
    tasks: dict[str, dict[int, int]] = {name: {} for name in loans}

    def task_of(name):
        return open_tasks(loans[name])[0]

    for n in range(0, 92):
        # What people do before the day's run.
        if n == 40:  # an operator clears the dispute
            customer = Customer.objects.get(pk=loans["high_dispute"].customer_id)
            customer.do_not_contact = False
            customer.save()

        with django_capture_on_commit_callbacks(execute=True):
            run_pipeline(day(n))

        # What collectors and customers do after it.
        with django_capture_on_commit_callbacks(execute=True):
            if n == 3:
                record_call_outcome(
                    task_of("high_promise"),
                    outcome="promise_to_pay",
                    promise_amount=Decimal("500.00"),
                    promise_date=day(9).date(),
                    actor=task_of("high_promise").assigned_to,
                    at=day(3, hour=11),
                )
                record_call_outcome(
                    task_of("high_dispute"), outcome="dispute", actor=collectors[0], at=day(3, hour=11)
                )
            if n == 6:  # a new score, applied by the next run, moves this customer to the high-risk tier
                make_score(loans["low_to_high"].customer, high.min_score, scored_at=day(6, hour=12))
            if n == 10:
                pay(loans["low_partial"], "200.00", day(10, hour=12))
            if n == 20:
                pay(loans["high_paid"], "500.00", day(20, hour=12))

        for name, loan in loans.items():
            case = CollectionCase.objects.filter(loan=loan).order_by("-id").first()
            stages[name][n] = None if case is None else (case.stage if case.status == "open" else "closed")
            tasks[name][n] = len(open_tasks(loan))

    def stage_days(name):
        """The first day of each stage."""
        firsts = {}
        for n, stage in stages[name].items():
            firsts.setdefault(stage, n)
        return firsts

    assert stage_days("low_partial") == {
        None: 0,
        "early": 6,
        "firm": 8,
        "call": 15,
        "agency": 60,
        "legal": 90,
    }
    assert stage_days("high_promise") == {None: 0, "call": 3, "firm": 10, "agency": 30, "legal": 60}
    assert stage_days("high_paid") == {None: 0, "call": 3, "firm": 7, "closed": 20}
    assert stage_days("high_dispute") == {None: 0, "call": 3, "agency": 40, "legal": 60}
    # Moved to high risk on day 7 (DPD 7): the high ladder's highest step reached, the firm SMS, comes at once;
    # the call it passed over is recorded as skipped, not made (never a burst).
    assert stage_days("low_to_high") == {None: 0, "early": 6, "firm": 7, "agency": 30, "legal": 60}

    # Tasks: the promise paused the queue until it broke; the dispute and the payment cancelled theirs.
    assert [tasks["high_promise"][n] for n in (3, 9, 10, 59, 60)] == [0, 0, 1, 1, 0]
    assert [tasks["high_dispute"][n] for n in (3, 39, 40)] == [0, 0, 0]
    assert [tasks["high_paid"][n] for n in (3, 19, 20)] == [1, 1, 0]
    assert tasks["low_partial"][14] == 0 and tasks["low_partial"][15] == 1 and tasks["low_partial"][90] == 0
    assert tasks["low_to_high"][6] == 0 and tasks["low_to_high"][7] == 0
    assert CaseStepRun.objects.filter(
        case__loan=loans["low_to_high"], step__tier=high, action="call_task", result="skipped"
    ).exists()
    promise = PromiseToPay.objects.get()
    assert promise.status == "broken" and promise.case.broken_promises == 1
    assert CallTask.objects.get(case__loan=loans["high_paid"]).cancel_reason == "paid"

    # Contacts: every ladder message went through the engine's log, once per step.
    def ladder_contacts(name):
        return list(
            NotificationLog.objects.filter(customer=loans[name].customer, dedupe_key__startswith="case:")
            .order_by("scheduled_for", "id")
            .values_list("channel", "scheduled_for")
        )

    assert [c for c, _ in ladder_contacts("low_partial")] == ["sms", "sms", "email"]
    assert [at for _, at in ladder_contacts("high_promise")] == [day(3), day(10)]
    assert [at for _, at in ladder_contacts("high_paid")] == [day(3), day(7)]
    # Resumed after the dispute hold at DPD 40: the agency step only, the firm SMS it passed is skipped.
    assert [at for _, at in ladder_contacts("high_dispute")] == [day(3)]
    assert [at for _, at in ladder_contacts("low_to_high")] == [day(6), day(7)]
    reminder = NotificationLog.objects.get(kind="promise_reminder")
    assert reminder.customer_id == loans["high_promise"].customer_id and reminder.scheduled_for == day(8)
    # Nothing automatic reaches a loan after legal, nor a paid one after payment.
    for name in ("low_partial", "high_promise", "high_dispute", "low_to_high"):
        frozen_from = day(stage_days(name)["legal"])
        assert not NotificationLog.objects.filter(
            customer=loans[name].customer,
            scheduled_for__gt=frozen_from,
            status__in=["sent", "planned", "deferred"],
        ).exists()
    assert not NotificationLog.objects.filter(
        customer=loans["high_paid"].customer, sent_at__gt=day(20, hour=12)
    ).exists()
    # Partial payment: still open with what is left.
    assert CollectionCase.objects.get(loan=loans["low_partial"]).amount_overdue == Decimal("300.00")
    # Cases reaching the agency step on the same day go to the agency together, and legal took them back.
    recalled = AgencyPlacement.objects.filter(recall_reason="legal")
    assert sorted(recalled.values_list("cases__loan_id", flat=True)) == sorted(
        loans[name].pk for name in ("low_partial", "high_promise", "high_dispute", "low_to_high")
    )
    assert recalled.get(cases__loan=loans["high_promise"]).cases.count() == 2
