from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from backoffice import tasks
from backoffice.schedules import SCHEDULES, register_schedules
from core.models import AuditEvent
from notifications.models import NotificationLog, OutboxMessage

from .factories import make_tier
from .factories_reminders import LOS_ANGELES, SHANGHAI, local, make_debtor, make_rule, make_template

pytestmark = pytest.mark.django_db


def run_jobs(*args) -> str:
    """``run_jobs`` as of a fixed moment, whatever the real date (``--force``: some moments are ahead of it)."""
    out = StringIO()
    call_command("run_jobs", *args, *(("--force",) if "--now" in args else ()), stdout=out)
    return out.getvalue()


def book():
    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(10, 0))
    make_template("pre_due", "sms", "zh-hans")
    shanghai, _ = make_debtor(tier, loans=2, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    los_angeles, _ = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=LOS_ANGELES)
    return shanghai, los_angeles


def state():
    return (
        sorted(NotificationLog.objects.values_list("id", "status", "reason", "scheduled_for", "attempts")),
        OutboxMessage.objects.count(),
        AuditEvent.objects.count(),
    )


def test_run_jobs_plans_and_sends_as_of_the_given_moment_and_prints_a_summary():
    shanghai, los_angeles = book()

    output = run_jobs("--now", "2026-11-28T10:30:00+08:00")

    assert "pipeline as of 2026-11-28T02:30:00+00:00" in output
    assert "plan: already_planned=0, customers=1, planned=1" in output
    assert "dispatch: claimed=1, sent=1" in output
    assert NotificationLog.objects.get(customer=shanghai).status == NotificationLog.Status.SENT
    # In Los Angeles it is still the 27th (18:30): its -3 day has not come yet.
    assert not NotificationLog.objects.filter(customer=los_angeles).exists()


def test_running_it_twice_for_the_same_moment_changes_nothing_more():
    book()
    run_jobs("--now", "2026-11-28T10:30:00+08:00")
    before = state()

    output = run_jobs("--now", "2026-11-28T10:30:00+08:00")

    assert state() == before
    assert "plan: already_planned=1, customers=0, planned=0" in output
    assert "dispatch: nothing to do" in output


def test_later_runs_pick_up_each_time_zones_own_day():
    shanghai, los_angeles = book()
    run_jobs("--now", local(SHANGHAI, 2026, 11, 28, 10, 30).isoformat())

    run_jobs("--now", local(LOS_ANGELES, 2026, 11, 28, 10, 30).isoformat())

    assert NotificationLog.objects.get(customer=los_angeles).status == NotificationLog.Status.SENT
    assert NotificationLog.objects.filter(customer=shanghai).count() == 1
    assert OutboxMessage.objects.count() == 2


def test_a_moment_without_an_offset_is_read_in_the_project_time_zone():
    book()

    output = run_jobs("--now", "2026-11-28T10:30:00")

    assert "pipeline as of 2026-11-28T02:30:00+00:00" in output


def test_a_malformed_moment_is_refused():
    with pytest.raises(CommandError, match="not an ISO-8601"):
        run_jobs("--now", "next tuesday")


def test_the_schedules_are_registered_on_migrate_once_by_name():
    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)

    names = [spec["name"] for spec in SCHEDULES]
    assert sorted(Schedule.objects.filter(name__in=names).values_list("name", flat=True)) == sorted(names)
    pipeline = Schedule.objects.get(name="daily-pipeline")
    assert (pipeline.func, pipeline.schedule_type, pipeline.minutes) == (
        "backoffice.tasks.run_daily_pipeline",
        "I",
        15,
    )
    assert Schedule.objects.get(name="dispatch-due").func == "backoffice.tasks.dispatch_due"


def test_the_schedules_are_listed_in_the_admin(admin_client):
    from django.urls import reverse

    register_schedules()

    page = admin_client.get(reverse("admin:django_q_schedule_changelist")).content.decode()

    assert all(spec["name"] in page for spec in SCHEDULES)


def test_registering_repairs_an_edited_schedule_without_duplicating_it():
    register_schedules()
    Schedule.objects.filter(name="dispatch-due").update(func="backoffice.tasks.gone", minutes=60)

    assert register_schedules() == 0

    schedule = Schedule.objects.get(name="dispatch-due")
    assert (schedule.func, schedule.minutes) == ("backoffice.tasks.dispatch_due", 1)


def test_the_daily_task_fans_planning_and_dispatch_out_in_chunks_of_customers(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # each enqueued chunk runs at once, in this process
    shanghai, los_angeles = book()
    moment = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)

    summary = tasks.fan_out_daily_run(moment, live=False, chunk=1)

    assert set(summary) == {
        "apply_scores",
        "autodebit",
        "policy_versions",
        "collections_before",
        "chunks",
        "collections_after",
        "anchor_audit",
    }
    assert summary["chunks"] == {"enqueued": los_angeles.id - shanghai.id + 1}
    assert NotificationLog.objects.get(customer=shanghai).status == NotificationLog.Status.SENT
    assert not NotificationLog.objects.filter(customer=los_angeles).exists()
    assert tasks.dispatch_due() == {}


def test_a_live_chunk_that_a_worker_starts_after_the_window_closed_holds_its_contact_back(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    shanghai, _ = book()
    planned_at = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)  # 10:30 in Shanghai
    # The chunk waited in the queue until 21:05 in Shanghai: the worker's clock, not the stale moment, decides.
    with time_machine.travel(dt.datetime(2026, 11, 28, 13, 5, tzinfo=dt.UTC), tick=False):
        tasks.fan_out_daily_run(planned_at, live=True, chunk=1)

    log = NotificationLog.objects.get(customer=shanghai)
    assert (log.status, log.reason) == (NotificationLog.Status.DEFERRED, "outside_contact_window")


def test_an_as_of_chunk_dispatches_as_of_its_moment_whatever_the_real_clock(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    shanghai, _ = book()
    as_of = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)  # 10:30 in Shanghai
    with time_machine.travel(dt.datetime(2026, 11, 28, 16, 0, tzinfo=dt.UTC), tick=False):  # midnight there
        tasks.fan_out_daily_run(as_of, live=False, chunk=1)

    log = NotificationLog.objects.get(customer=shanghai)
    assert (log.status, log.sent_at) == (NotificationLog.Status.SENT, as_of)


@pytest.mark.parametrize(
    "live, started, expected",
    [
        (True, "2026-11-28T13:05:00+00:00", "2026-11-28T13:05:00+00:00"),
        (
            True,
            "2026-11-28T02:00:00+00:00",
            "2026-11-28T02:30:00+00:00",
        ),  # a worker clock behind: never earlier
        (False, "2026-11-28T13:05:00+00:00", "2026-11-28T02:30:00+00:00"),
    ],
)
def test_it_dispatches_a_chunk_as_of_the_moment_its_entry_point_chose(live, started, expected):
    now = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)
    at = tasks.dispatch_moment(now, live=live, started_at=dt.datetime.fromisoformat(started))
    assert at == dt.datetime.fromisoformat(expected)


def test_collections_in_chunks_of_customers_do_what_the_whole_book_run_does(monkeypatch):
    from django_q.conf import Conf

    from debt_collection.advance import advance_collections
    from debt_collection.models import CallTask, CaseStepRun, CollectionCase

    from .factories_collections import (
        day,
        high_risk_tier,
        low_risk_tier,
        make_collector,
        make_overdue_loan,
        overdue_templates,
    )

    monkeypatch.setattr(Conf, "SYNC", True)
    overdue_templates()
    make_collector("chen")
    low, high = low_risk_tier(), high_risk_tier()
    loans = [make_overdue_loan(low), make_overdue_loan(high), make_overdue_loan(low), make_overdue_loan(high)]

    summary = tasks.fan_out_daily_run(day(16), live=False, chunk=1)

    assert summary["chunks"]["enqueued"] >= len(loans)
    cases = {c.loan_id: c for c in CollectionCase.objects.open()}
    assert set(cases) == {loan.pk for loan in loans}
    # Low risk reaches the phone at 15 days past due: both low-risk loans have their call task.
    assert {cases[loans[0].pk].stage, cases[loans[2].pk].stage} == {"call"}
    assert CallTask.objects.filter(status="open", case__loan__in=[loans[0], loans[2]]).count() == 2
    # The whole-book run of the same moment finds nothing left to do: the chunks covered every loan.
    before = (CollectionCase.objects.count(), CaseStepRun.objects.count(), CallTask.objects.count())
    counts = advance_collections(day(16))
    assert (CollectionCase.objects.count(), CaseStepRun.objects.count(), CallTask.objects.count()) == before
    assert "steps_performed" not in counts and "cases_opened" not in counts


def test_chunks_cover_every_customer_once():
    first, last = book()
    ranges = tasks.customer_id_ranges(1)
    assert ranges[0][0] == first.id and ranges[-1][1] == last.id + 1
    assert all(high == low + 1 for low, high in ranges)
    assert tasks.customer_id_ranges(1000) == [(first.id, last.id + 1)]


def test_run_jobs_enqueue_reports_the_chunks(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    shanghai, _ = book()
    output = run_jobs("--now", "2026-11-28T10:30:00+08:00", "--enqueue", "--chunk-size", "1000")
    assert "(chunks enqueued)" in output and "chunks: enqueued=1" in output
    assert NotificationLog.objects.get(customer=shanghai).status == NotificationLog.Status.SENT


# --- auto-debit through the whole pipeline --------------------------------------------------------------------
def autopay_book():
    from .factories import make_customer, make_installment, make_loan

    tier = make_tier(channel_order="sms,push")
    # The reminder of the day before is set for 22:00, outside the window: it is planned for 08:00 on the due date.
    make_rule(tier, -1, "sms", send_time=dt.time(22, 0))
    make_template("pre_due", "sms", "zh-hans")
    make_template(
        "autodebit_failed", "sms", "zh-hans", body="{customer_name}: auto-debit of {amount_due} failed."
    )
    customer = make_customer(tier=tier, name="赵敏")
    loan = make_loan(customer, autopay=True)
    return customer, make_installment(loan, due_date=dt.date(2026, 12, 1))


def test_a_successful_auto_debit_in_run_jobs_cancels_what_is_pending_with_paid(
    settings, django_capture_on_commit_callbacks
):
    settings.PAYMENT_SIMULATOR_FAILURES = ""
    customer, inst = autopay_book()
    run_jobs("--now", local(SHANGHAI, 2026, 11, 30, 22, 5).isoformat())
    [reminder] = NotificationLog.objects.filter(customer=customer)
    assert (reminder.status, reminder.scheduled_for) == ("planned", local(SHANGHAI, 2026, 12, 1, 8, 0))

    with django_capture_on_commit_callbacks(execute=True):
        output = run_jobs("--now", local(SHANGHAI, 2026, 12, 1, 0, 30).isoformat())

    assert "autodebit: claimed=1, failed=0, succeeded=1" in output
    reminder.refresh_from_db()
    assert (reminder.status, reminder.reason) == (NotificationLog.Status.CANCELLED, "paid")
    assert AuditEvent.objects.filter(
        action="notifications.contact.cancelled", object_id=str(reminder.id), after__reason="paid"
    ).exists()
    run_jobs("--now", local(SHANGHAI, 2026, 12, 1, 8, 30).isoformat())
    assert OutboxMessage.objects.count() == 0
    assert not NotificationLog.objects.filter(customer=customer).exclude(id=reminder.id).exists()


def test_a_declined_auto_debit_in_run_jobs_sends_the_autodebit_failed_notice_once():
    from loans.gateways import simulate_failure
    from loans.models import AutoDebitAttempt

    customer, inst = autopay_book()
    moment = local(SHANGHAI, 2026, 12, 1, 9, 0).isoformat()

    with simulate_failure("insufficient_funds"):
        output = run_jobs("--now", moment)
        before = state()
        run_jobs("--now", moment)

    assert "autodebit: claimed=1, failed=1, succeeded=0" in output
    attempt = AutoDebitAttempt.objects.get(installment=inst)
    assert (attempt.status, attempt.failure_reason) == ("failed", "insufficient_funds")
    notice = NotificationLog.objects.get(customer=customer, kind="autodebit_failed")
    assert (notice.status, notice.channel) == (NotificationLog.Status.SENT, "sms")
    message = OutboxMessage.objects.get()
    assert (
        message.body == "赵敏: auto-debit of 500.00 failed.\n回复TD退订"
        and message.destination == customer.phone
    )
    assert state() == before


@pytest.mark.parametrize(
    "due, send_utc",
    [
        # Daylight time ends on 2026-11-01 in Los Angeles: 09:00 that day is 17:00 UTC (16:00 the day before).
        (dt.date(2026, 11, 2), dt.datetime(2026, 11, 1, 17, 0, tzinfo=dt.UTC)),
        # It starts on 2027-03-14: 09:00 that day is 16:00 UTC (17:00 the day before).
        (dt.date(2027, 3, 15), dt.datetime(2027, 3, 14, 16, 0, tzinfo=dt.UTC)),
    ],
)
def test_run_jobs_sends_at_the_local_hour_on_the_day_los_angeles_changes_clocks(due, send_utc):
    tier = make_tier()
    make_rule(tier, -1, "sms", send_time=dt.time(9, 0))
    make_template("pre_due", "sms", "zh-hans")
    customer, _ = make_debtor(tier, due_date=due, timezone=LOS_ANGELES)
    day_before = due - dt.timedelta(days=1)

    run_jobs(
        "--now", local(LOS_ANGELES, day_before.year, day_before.month, day_before.day, 0, 30).isoformat()
    )
    run_jobs("--now", (send_utc - dt.timedelta(minutes=1)).isoformat())
    assert OutboxMessage.objects.count() == 0
    run_jobs("--now", send_utc.isoformat())

    log = NotificationLog.objects.get(customer=customer)
    assert (log.status, log.sent_at) == (NotificationLog.Status.SENT, send_utc)
    assert log.sent_at.astimezone(customer.zone).hour == 9


def test_it_asks_for_force_before_running_as_of_a_moment_in_the_future():
    book()
    before = state()

    with time_machine.travel(dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC), tick=False):
        with pytest.raises(CommandError, match="--force"):
            call_command("run_jobs", "--now", "2026-11-28T10:30:00+08:00", stdout=StringIO())

    assert state() == before  # refused before any step ran


def test_it_runs_as_of_a_moment_in_the_future_with_force():
    book()

    with time_machine.travel(dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC), tick=False):
        out = StringIO()
        call_command("run_jobs", "--now", "2026-11-28T10:30:00+08:00", "--force", stdout=out)

    assert "dispatch: claimed=1, sent=1" in out.getvalue()


def test_it_runs_as_of_a_past_moment_without_force():
    book()

    with time_machine.travel(dt.datetime(2026, 11, 29, 1, 0, tzinfo=dt.UTC), tick=False):
        out = StringIO()
        call_command("run_jobs", "--now", "2026-11-28T10:30:00+08:00", stdout=out)

    assert "dispatch: claimed=1, sent=1" in out.getvalue()
