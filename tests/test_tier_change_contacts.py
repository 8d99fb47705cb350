"""A new credit score that moves a customer to another tier, end to end: the score file is imported, the next run
applies it, pending contacts of the old tier are cancelled (``tier_changed``) and the new tier's rules and ladder
take over."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from core.models import AuditEvent
from debt_collection.models import CaseStepRun
from notifications.models import NotificationLog, OutboxMessage

from .factories import make_tier
from .factories_collections import (
    day,
    high_risk_tier,
    low_risk_tier,
    make_collector,
    make_overdue_loan,
    open_case,
    open_tasks,
    overdue_templates,
)
from .factories_reminders import SHANGHAI, local, logs_of, make_debtor, make_rule, make_template

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status
DUE = dt.date(2026, 12, 1)


def run_jobs(moment: dt.datetime, capture) -> str:
    """``run_jobs --now`` with the loan book's on-commit signals delivered, as a real commit would."""
    out = StringIO()
    with capture(execute=True):
        call_command("run_jobs", now=moment.isoformat(), force=True, stdout=out)
    return out.getvalue()


def import_scores(tmp_path, rows: list[tuple[str, int, dt.datetime]]) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(
        "customer_ref,score,scored_at\n"
        + "".join(f"{ref},{score},{at.isoformat()}\n" for ref, score, at in rows)
    )
    call_command(
        "import",
        "loans.resources.CreditScoreResource",
        str(path),
        format="CSV",
        interactive=False,
        stdout=StringIO(),
    )


def test_an_imported_score_that_moves_the_tier_cancels_the_old_tiers_contacts_and_plans_the_new_ones(
    tmp_path, django_capture_on_commit_callbacks
):
    low, high = make_tier(), make_tier()
    make_rule(low, -3, "sms", send_time=dt.time(10, 0))
    make_rule(high, -3, "push", send_time=dt.time(9, 0))
    make_rule(high, -3, "email", send_time=dt.time(11, 0))
    for channel in ("sms", "push", "email"):
        make_template("pre_due", channel, "zh-hans")
    customer, _ = make_debtor(low, loans=2, due_date=DUE)
    run_jobs(local(SHANGHAI, 2026, 11, 28, 0, 30), django_capture_on_commit_callbacks)
    [old] = logs_of(customer)
    assert (old.channel, old.status, old.tier_id) == ("sms", Status.PLANNED, low.id)

    import_scores(tmp_path, [(customer.ref, high.min_score, local(SHANGHAI, 2026, 11, 28, 7))])
    output = run_jobs(local(SHANGHAI, 2026, 11, 28, 8), django_capture_on_commit_callbacks)

    assert "tiers_changed=1" in output
    old.refresh_from_db()
    assert (old.status, old.reason) == (Status.CANCELLED, "tier_changed")
    new = {log.channel: log for log in logs_of(customer) if log.status == Status.PLANNED}
    assert set(new) == {"push", "email"} and {log.tier_id for log in new.values()} == {high.id}
    assert all(log.installments.count() == 2 for log in new.values())  # still one message for both loans
    cancelled = AuditEvent.objects.get(action="notifications.contact.cancelled", object_id=str(old.id))
    assert cancelled.after["reason"] == "tier_changed" and cancelled.after["customer_id"] == customer.id
    assert (cancelled.after["old_tier_id"], cancelled.after["new_tier_id"]) == (low.id, high.id)
    assert AuditEvent.objects.filter(
        action="loans.customer.tier_changed", object_id=str(customer.id)
    ).exists()

    run_jobs(local(SHANGHAI, 2026, 11, 28, 11, 5), django_capture_on_commit_callbacks)
    assert sorted(OutboxMessage.objects.values_list("channel", flat=True)) == ["email", "push"]
    # A later run of the same day changes nothing more.
    state = sorted(NotificationLog.objects.values_list("id", "status"))
    run_jobs(local(SHANGHAI, 2026, 11, 28, 12), django_capture_on_commit_callbacks)
    assert sorted(NotificationLog.objects.values_list("id", "status")) == state


def test_a_contact_already_sent_under_the_old_tier_is_not_sent_again(
    tmp_path, django_capture_on_commit_callbacks
):
    low, high = make_tier(), make_tier()
    make_rule(low, -3, "sms")
    make_rule(high, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer, _ = make_debtor(low, due_date=DUE)
    run_jobs(local(SHANGHAI, 2026, 11, 28, 10, 5), django_capture_on_commit_callbacks)
    assert OutboxMessage.objects.count() == 1

    import_scores(tmp_path, [(customer.ref, high.min_score, local(SHANGHAI, 2026, 11, 28, 11))])
    run_jobs(local(SHANGHAI, 2026, 11, 28, 12), django_capture_on_commit_callbacks)

    assert OutboxMessage.objects.count() == 1
    assert [(log.status, log.tier_id) for log in logs_of(customer)] == [(Status.SENT, low.id)]


def test_a_tier_change_moves_an_open_case_to_the_new_ladder_and_cancels_the_old_ladders_pending_message(
    tmp_path, django_capture_on_commit_callbacks
):
    overdue_templates()
    low, high = low_risk_tier(), high_risk_tier()
    make_collector("he")
    loan = make_overdue_loan(low)
    # Day 6, before the window opens: the low tier's case opens and its early SMS waits for 08:00.
    run_jobs(day(6, hour=7), django_capture_on_commit_callbacks)
    case = open_case(loan)
    [early] = NotificationLog.objects.filter(customer=loan.customer, dedupe_key__startswith="case:")
    assert (case.stage, early.status, early.tier_id) == ("early", Status.DEFERRED, low.id)

    import_scores(tmp_path, [(loan.customer.ref, high.min_score, day(6, hour=7))])
    run_jobs(day(6, hour=7) + dt.timedelta(minutes=30), django_capture_on_commit_callbacks)

    early.refresh_from_db()
    assert (early.status, early.reason) == (Status.CANCELLED, "tier_changed")
    case.refresh_from_db()
    assert case.tier == high and case.stage == "call"
    assert len(open_tasks(loan)) == 1  # the high-risk ladder calls from 3 DPD
    high_runs = CaseStepRun.objects.filter(case=case, step__tier=high)
    assert sorted(high_runs.values_list("min_dpd", "action", "result")) == [
        (1, "sms", "skipped"),
        (3, "call_task", "performed"),
        (3, "sms", "performed"),
    ]
    pending = NotificationLog.objects.filter(
        customer=loan.customer, status__in=[Status.PLANNED, Status.DEFERRED]
    )
    assert [log.tier_id for log in pending] == [high.id]  # the high tier's SMS of the call step, once
    assert AuditEvent.objects.filter(action="collections.case.tier_changed", object_id=str(case.pk)).exists()

    run_jobs(day(6, hour=8), django_capture_on_commit_callbacks)
    assert OutboxMessage.objects.filter(destination=loan.customer.phone).count() == 1


def test_moving_to_a_tier_that_calls_later_cancels_the_open_call_until_its_ladder_reaches_the_phone(
    tmp_path, django_capture_on_commit_callbacks
):
    overdue_templates()
    low, high = low_risk_tier(), high_risk_tier()
    make_collector("mu")
    loan = make_overdue_loan(high)
    run_jobs(day(3), django_capture_on_commit_callbacks)
    [task] = open_tasks(loan)

    import_scores(tmp_path, [(loan.customer.ref, low.min_score, day(4, hour=7))])
    run_jobs(day(4), django_capture_on_commit_callbacks)

    task.refresh_from_db()
    assert (task.status, task.cancel_reason) == ("cancelled", "tier_changed")
    assert AuditEvent.objects.filter(action="collections.call.cancelled", object_id=str(task.pk)).exists()
    case = open_case(loan)  # nothing was paid: the case stays open, waiting out the low tier's longer grace
    assert (case.tier, case.stage, case.close_reason) == (low, "call", "")
    assert not open_tasks(loan)
    stages = {}
    for n in range(5, 16):
        run_jobs(day(n), django_capture_on_commit_callbacks)
        case.refresh_from_db()
        stages[n] = case.stage
        assert len(open_tasks(loan)) == (1 if n >= 15 else 0), n  # the low-risk ladder calls from 15 DPD
    assert (stages[5], stages[6], stages[8], stages[15]) == ("call", "early", "firm", "call")
    low_messages = NotificationLog.objects.filter(
        customer=loan.customer, tier=low, dedupe_key__startswith="case:"
    )
    assert min(log.scheduled_for for log in low_messages) == day(6)  # nothing from the ladder inside grace
    # High: the early SMS passed over, the call step's SMS and call; low: up to its call.
    assert CaseStepRun.objects.filter(case=case).count() == 3 + 4
