"""The daily collections job walks overdue loans up their tier's ladder, day by day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from backoffice.jobs import run_pipeline
from core.audit import Event  # noqa: F401  (the trail is checked through AuditEvent)
from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.models import AgencyPlacement, CallTask, CaseStepRun, CollectionCase, LegalReferral
from loans.models import Loan
from notifications.models import NotificationLog

from .factories import make_score, make_tier
from .factories_collections import (
    DUE,
    count_queries,
    day,
    high_risk_tier,
    low_risk_tier,
    make_agency,
    make_collector,
    make_ladder,
    make_overdue_loan,
    open_case,
    open_tasks,
    overdue_templates,
    pay,
)

pytestmark = pytest.mark.django_db


def ladder_contacts(loan) -> list[tuple[str, str, str]]:
    return list(
        NotificationLog.objects.filter(customer=loan.customer, dedupe_key__startswith="case:")
        .order_by("id")
        .values_list("channel", "kind", "status")
    )


def walk(loans, days, *, pipeline=True, hour=10):
    """Run the daily pipeline for each day and record each loan's (stage, open tasks, contacts) per day."""
    seen = {loan.pk: {} for loan in loans}
    for n in days:
        now = day(n, hour)
        if pipeline:
            run_pipeline(now)
        else:
            advance_collections(now)
        for loan in loans:
            case = CollectionCase.objects.filter(loan=loan).order_by("-id").first()
            seen[loan.pk][n] = (
                case.stage if case else None,
                case.status if case else None,
                len(open_tasks(loan)),
                len(ladder_contacts(loan)),
            )
    return seen


def test_low_and_high_risk_loans_walk_their_ladders_from_due_date_to_legal():
    overdue_templates()
    low, high = low_risk_tier(), high_risk_tier()
    make_agency("AG1")
    collector = make_collector("chen")
    low_loan, high_loan = make_overdue_loan(low), make_overdue_loan(high)

    seen = walk([low_loan, high_loan], range(0, 92))
    low_days, high_days = seen[low_loan.pk], seen[high_loan.pk]

    # Inside the grace period no case opens (low risk: 5 days, high risk: 2 days).
    assert all(low_days[n][0] is None for n in range(0, 6))
    assert all(high_days[n][0] is None for n in range(0, 3))
    # The day after grace the case opens at the highest step reached: one SMS, not a burst.
    assert low_days[6] == ("early", "open", 0, 1)
    assert high_days[3] == ("call", "open", 1, 1)  # high risk reaches the phone at once
    assert low_days[7] == ("early", "open", 0, 1)
    assert low_days[8] == ("firm", "open", 0, 3)  # firm SMS and email
    assert low_days[14][2] == 0 and low_days[15] == ("call", "open", 1, 3)
    assert high_days[7] == ("firm", "open", 1, 2)
    assert high_days[30][0] == "agency" and low_days[59][0] == "call" and low_days[60][0] == "agency"
    assert high_days[60] == ("legal", "open", 0, 2)  # legal cancels the open call
    assert low_days[90] == ("legal", "open", 0, 3)

    for loan in (low_loan, high_loan):
        case = open_case(loan)
        assert case.is_frozen
        assert LegalReferral.objects.filter(case=case).exists()
        assert not AgencyPlacement.objects.filter(cases=case, recalled_at__isnull=True).exists()
        assert AgencyPlacement.objects.filter(cases=case, recall_reason="legal").count() == 1
        # Each step ran exactly once.
        assert CaseStepRun.objects.filter(case=case).count() == case.tier.escalation_steps.count()
    assert (
        CollectionCase.objects.select_related("loan__customer").get(loan=high_loan).days_past_due(day(91))
        == 91
    )
    assert CallTask.objects.filter(case__loan=high_loan).get().assigned_to == collector
    # Every ladder message went through the engine's log and was sent (or held back with a reason).
    statuses = [status for _c, _k, status in ladder_contacts(low_loan)]
    assert "sent" in statuses and set(statuses) <= {"sent", "suppressed"}
    actions = set(
        AuditEvent.objects.filter(action__startswith="collections.").values_list("action", flat=True)
    )
    assert {
        "collections.case.opened",
        "collections.step.performed",
        "collections.case.stage_changed",
        "collections.call.scheduled",
        "collections.case.placed",
        "collections.case.referred_to_legal",
        "collections.placement.recalled",
    } <= actions


def test_legal_freezes_every_automatic_contact_of_the_loan():
    overdue_templates()
    high = high_risk_tier()
    loan = make_overdue_loan(high, installments=4)
    walk([loan], range(58, 61), pipeline=False)
    assert open_case(loan).is_frozen
    # The next instalment's due-day reminder is never planned by the engine: the loan is under legal hold.
    from .factories_reminders import make_rule

    make_rule(high, 0, "sms", kind="due_today")
    run_pipeline(day(90))  # the 4th instalment (due day 90) is due today
    assert not NotificationLog.objects.filter(customer=loan.customer, kind="due_today").exists()
    assert not NotificationLog.objects.filter(
        customer=loan.customer, status="sent", scheduled_for__gte=day(61)
    ).exists()


def test_running_the_job_twice_for_the_same_moment_changes_nothing_more():
    overdue_templates()
    high = high_risk_tier()
    make_agency("AG1")
    make_collector("li")
    loans = [make_overdue_loan(high) for _ in range(3)]
    advance_collections(day(31))
    counts = (
        CollectionCase.objects.count(),
        CaseStepRun.objects.count(),
        CallTask.objects.count(),
        AgencyPlacement.objects.count(),
        NotificationLog.objects.count(),
        AuditEvent.objects.count(),
    )

    again = advance_collections(day(31))

    assert counts == (
        CollectionCase.objects.count(),
        CaseStepRun.objects.count(),
        CallTask.objects.count(),
        AgencyPlacement.objects.count(),
        NotificationLog.objects.count(),
        AuditEvent.objects.count(),
    )
    assert again.get("steps_performed", 0) == 0 and again.get("cases_opened", 0) == 0
    # Reaching many steps at once (the job first ran at 31 DPD) performs the highest step only; the steps it
    # passed are recorded as skipped, never sent as a burst.
    case = open_case(loans[0])
    assert case.stage == "agency" and not open_tasks(loans[0])
    runs = list(CaseStepRun.objects.filter(case=case).values_list("min_dpd", "action", "result", "detail"))
    assert sorted(runs) == [
        (1, "sms", "skipped", "superseded"),
        (3, "call_task", "skipped", "superseded"),
        (3, "sms", "skipped", "superseded"),
        (7, "sms", "skipped", "superseded"),
        (30, "agency", "performed", ""),
    ]
    assert not NotificationLog.objects.filter(customer=loans[0].customer).exists()


def test_query_count_of_the_job_does_not_grow_with_the_number_of_loans():
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(1, "call", "call_task", ""), (4, "agency", "agency", "")])
    make_agency("AG1")
    make_collector("wang")
    make_collector("zhao")
    advance_collections(day(0))  # the contact policy row and the audit chain head exist from here on

    def queries_for(n_loans, due):
        for _ in range(n_loans):
            make_overdue_loan(tier, due_date=due)
        return [count_queries(advance_collections, day(n, due=due)) for n in (3, 4, 5)]

    small = queries_for(4, DUE)
    Loan.objects.update(status="written_off")  # the first loans leave the book
    advance_collections(day(6))
    large = queries_for(12, DUE + dt.timedelta(days=60))

    assert [q for q, _ in small] == [q for q, _ in large]
    opened, placed, steady = (result for _, result in large)
    assert opened["cases_opened"] == 12 and opened["call_tasks_created"] == 12
    assert placed["cases_placed"] == 12
    assert steady.get("steps_performed", 0) == 0


def test_a_full_payment_closes_the_case_and_cancels_everything_pending(django_capture_on_commit_callbacks):
    overdue_templates()
    high = high_risk_tier()
    make_collector("sun")
    loan = make_overdue_loan(high)
    advance_collections(day(3, hour=7))  # before the window opens: the SMS waits
    case = open_case(loan)
    assert case.stage == "call" and len(open_tasks(loan)) == 1
    pending = NotificationLog.objects.filter(customer=loan.customer, status__in=["planned", "deferred"])
    assert pending.exists()

    with django_capture_on_commit_callbacks(execute=True):
        pay(loan, "500.00", day(3, hour=7))

    case.refresh_from_db()
    assert case.status == "closed" and case.close_reason == "paid"
    assert not open_tasks(loan)
    assert CallTask.objects.get(case=case).cancel_reason == "paid"
    assert not pending.exists()
    assert NotificationLog.objects.filter(customer=loan.customer, status="cancelled", reason="paid").exists()
    assert AuditEvent.objects.filter(action="collections.case.closed", object_id=str(case.pk)).exists()
    # Nothing reopens: the next days do nothing for this loan.
    advance_collections(day(4))
    assert not open_case(loan)


def test_a_partial_payment_keeps_the_case_open_at_its_stage(django_capture_on_commit_callbacks):
    overdue_templates()
    high = high_risk_tier()
    loan = make_overdue_loan(high)
    advance_collections(day(8))
    case = open_case(loan)
    assert case.stage == "firm" and case.amount_overdue == Decimal("500.00")

    with django_capture_on_commit_callbacks(execute=True):
        pay(loan, "200.00", day(8, hour=12))

    case.refresh_from_db()
    assert case.status == "open" and case.stage == "firm" and case.amount_overdue == Decimal("300.00")
    # Without an agency the agency step waits; once there is one, the case is placed with what is still owed.
    advance_collections(day(30))
    case.refresh_from_db()
    assert case.stage == "agency" and not CaseStepRun.objects.filter(case=case, min_dpd=30).exists()
    make_agency("AG9")
    advance_collections(day(31))
    placement = AgencyPlacement.objects.get(cases=case)
    assert "300.00" in placement.file and CaseStepRun.objects.filter(case=case, min_dpd=30).count() == 1


def test_a_tier_change_to_high_risk_brings_the_phone_forward():
    overdue_templates()
    low, high = low_risk_tier(), high_risk_tier()
    make_collector("zhou")
    loan = make_overdue_loan(low)
    walk([loan], range(0, 7), pipeline=False)
    case = open_case(loan)
    assert case.stage == "early" and not open_tasks(loan)

    from loans.scores import apply_credit_scores

    make_score(loan.customer, high.min_score, scored_at=day(6, hour=12))
    apply_credit_scores(day(6, hour=13))
    loan.customer.refresh_from_db()
    assert loan.customer.tier == high

    advance_collections(day(6, hour=14))
    case.refresh_from_db()
    assert case.tier == high
    assert len(open_tasks(loan)) == 1  # high risk calls from 3 DPD; low risk would wait until 15
    assert case.stage == "call"
    # At 6 DPD the high ladder's highest step reached is the call (with its SMS): the early SMS is passed over.
    runs = CaseStepRun.objects.filter(case=case, step__tier=high)
    assert sorted(runs.values_list("min_dpd", "action", "result")) == [
        (1, "sms", "skipped"),
        (3, "call_task", "performed"),
        (3, "sms", "performed"),
    ]


def test_a_customer_on_do_not_contact_does_not_move_up_the_ladder():
    high = high_risk_tier()
    loan = make_overdue_loan(high, do_not_contact=True, do_not_contact_reason="bereavement")
    result = advance_collections(day(10))
    case = open_case(loan)
    assert case is not None and case.stage == "" and not CaseStepRun.objects.filter(case=case).exists()
    assert result["cases_on_hold"] == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_job_at_once_open_one_case_and_one_call_per_loan():
    import threading

    from django.db import connection

    tier = make_tier(grace_period_days=2)
    # Both steps share their min_dpd: a case reaching them at once performs both.
    make_ladder(tier, [(3, "call", "call_task", ""), (3, "agency", "agency", "")])
    make_agency("AG1")
    make_collector("wei")
    loans = [make_overdue_loan(tier) for _ in range(20)]
    advance_collections(day(0))
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            advance_collections(day(4))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    for loan in loans:
        assert CollectionCase.objects.filter(loan=loan).count() == 1
        assert CallTask.objects.filter(case__loan=loan).count() == 1
        assert AgencyPlacement.objects.filter(cases__loan=loan).count() == 1
    assert CaseStepRun.objects.count() == 40


def test_run_jobs_includes_the_collections_step_and_a_second_run_changes_nothing():
    from io import StringIO

    from django.core.management import call_command

    overdue_templates()
    high = high_risk_tier()
    make_collector("ren")
    loan = make_overdue_loan(high)
    moment = day(3).isoformat()

    first, second = StringIO(), StringIO()
    call_command("run_jobs", now=moment, force=True, stdout=first)
    rows = (
        CollectionCase.objects.count(),
        CallTask.objects.count(),
        NotificationLog.objects.count(),
        AuditEvent.objects.count(),
    )
    call_command("run_jobs", now=moment, force=True, stdout=second)

    assert "collections" in first.getvalue() and "cases_opened" in first.getvalue()
    assert "cases_opened" not in second.getvalue()
    assert rows == (
        CollectionCase.objects.count(),
        CallTask.objects.count(),
        NotificationLog.objects.count(),
        AuditEvent.objects.count(),
    )
    assert open_case(loan).stage == "call"


def test_query_count_of_the_job_does_not_grow_with_the_number_of_loans_for_messages_and_legal():
    overdue_templates()
    tier = make_tier(grace_period_days=2)
    make_ladder(
        tier,
        [(1, "early", "sms", "overdue"), (4, "firm", "email", "overdue"), (5, "legal", "legal", "")],
    )
    advance_collections(day(0))

    def queries_for(n_loans, due):
        for _ in range(n_loans):
            make_overdue_loan(tier, due_date=due)
        return [count_queries(advance_collections, day(n, due=due)) for n in (3, 4, 5, 6)]

    small = queries_for(3, DUE)
    Loan.objects.update(status="written_off")
    advance_collections(day(7))
    large = queries_for(15, DUE + dt.timedelta(days=60))

    assert [q for q, _ in small] == [q for q, _ in large]
    opened, firm, legal, steady = (result for _, result in large)
    assert opened["cases_opened"] == 15 and opened["messages_planned"] == 15
    assert firm["messages_planned"] == 15
    assert legal["cases_referred_to_legal"] == 15
    assert steady.get("steps_performed", 0) == 0
    assert NotificationLog.objects.filter(dedupe_key__startswith="case:").count() == 2 * 18


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_a_customer_a_day_ahead_of_or_behind_utc_is_past_due_on_their_own_calendar(zone):
    """The job only reads instalments due before the UTC date plus one; UTC+14 and UTC-11 are the edges."""
    tier = make_tier(grace_period_days=0)
    make_ladder(tier, [(1, "early", "call_task", "")])
    loan = make_overdue_loan(tier, timezone=zone)
    # 00:30 local on the day after the due date: one day past due there, and still the due date (or before) in UTC.
    now = day(1, hour=0, tz=zone)
    advance_collections(now)
    case = open_case(loan)
    assert case is not None and case.days_past_due(now) == 1
    # 23:30 local on the due date itself: not yet past due there, whatever the UTC date already is.
    other = make_overdue_loan(tier, due_date=DUE + dt.timedelta(days=1), timezone=zone)
    advance_collections(day(0, hour=23, tz=zone, due=DUE + dt.timedelta(days=1)))
    assert open_case(other) is None
