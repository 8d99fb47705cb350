"""A call is checked when it is made, by the same gates as a message plus the call limits: the collector's form,
the dialer's ``manage.py record_call`` and the queue all ask ``may_call``; a refused call records nothing."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import CallRefused, record_call_outcome
from debt_collection.models import CallAttempt, CallTask, CollectionCase
from loans.models import Customer
from notifications.dispatch import dispatch_due
from notifications.models import ContactPolicy
from notifications.notices import plan_notice

from .factories import make_installment, make_loan, make_tier
from .factories_collections import DUE, day, make_collector, make_ladder, make_overdue_loan, open_tasks
from .factories_reminders import make_template

pytestmark = pytest.mark.django_db


def call_tier(**kwargs):
    kwargs.setdefault("max_contacts_per_week", 50)
    tier = make_tier(grace_period_days=2, **kwargs)
    make_ladder(tier, [(1, "call", "call_task", "")])
    return tier


def with_task(**customer_kwargs):
    loan = make_overdue_loan(call_tier(), **customer_kwargs)
    advance_collections(day(3))
    return loan


def second_loan(loan):
    other = make_loan(loan.customer)
    make_installment(other, due_date=DUE, amount_due=Decimal("300.00"))
    advance_collections(day(3, hour=10))
    return other


def nothing_recorded(task):
    task.refresh_from_db()
    return (
        task.status == "open"
        and not CallAttempt.objects.filter(task=task).exists()
        and not AuditEvent.objects.filter(action="collections.call.recorded", object_id=str(task.pk)).exists()
    )


def refusal(task, collector, at, outcome="no_answer", **kwargs) -> CallRefused:
    with pytest.raises(CallRefused) as caught:
        record_call_outcome(task, outcome=outcome, actor=collector, at=at, **kwargs)
    return caught.value


def test_a_call_at_22_30_local_is_refused_and_nothing_is_recorded():
    collector = make_collector("c1")
    loan = with_task()
    [task] = open_tasks(loan)

    refused = refusal(task, collector, day(3, hour=22) + dt.timedelta(minutes=30))

    assert refused.reason == "outside_contact_window"
    assert refused.inputs["zones"] == ["Asia/Shanghai"] and refused.inputs["window"] == "08:00-21:00"
    assert nothing_recorded(task)


def test_a_call_two_days_after_a_conversation_is_refused():
    collector = make_collector("c2")
    loan = with_task()
    record_call_outcome(open_tasks(loan)[0], outcome="refused", actor=collector, at=day(3, hour=11))
    task = CallTask.objects.create(case=open_tasks_case(loan), scheduled_for=day(5), created_at=day(3))

    refused = refusal(task, collector, day(5, hour=11))

    assert (refused.reason, refused.inputs["limit"]) == ("call_limit", "conversation")
    assert nothing_recorded(task)
    # The conversation's day is the first of the 7: on the 8th day the call may be made.
    record_call_outcome(task, outcome="no_answer", actor=collector, at=day(10, hour=8))


def open_tasks_case(loan):
    return CollectionCase.objects.get(loan=loan, status="open")


def test_stop_calling_takes_effect_the_moment_it_is_recorded():
    collector = make_collector("c3")
    loan = with_task()
    other = second_loan(loan)
    assert open_tasks(other)

    record_call_outcome(open_tasks(loan)[0], outcome="stop_calling", actor=collector, at=day(3, hour=11))

    customer = Customer.objects.get(pk=loan.customer_id)
    assert customer.opt_out_call
    assert not open_tasks(loan) and not open_tasks(other)  # every open call of the customer is cancelled
    assert CallTask.objects.filter(case__loan=other, cancel_reason="opted_out").exists()
    event = AuditEvent.objects.get(action="collections.customer.calls_stopped", object_id=str(customer.pk))
    assert event.before == {"opt_out_call": False} and event.after["opt_out_call"] is True
    # A call right after is refused, however it is recorded.
    task = CallTask.objects.create(case=open_tasks_case(other), scheduled_for=day(3), created_at=day(3))
    assert refusal(task, collector, day(3, hour=11, tz="Asia/Shanghai") + dt.timedelta(minutes=5)).reason == (
        "opted_out"
    )


def test_a_queue_worked_late_never_puts_8_calls_in_7_days_on_one_debt():
    collector = make_collector("c4")
    loan = with_task()
    case = open_tasks_case(loan)
    # Tasks scheduled over two weeks, all worked in the same 7 days: the calls made count, not the schedule.
    tasks = [
        CallTask.objects.create(case=case, scheduled_for=day(3 - n), created_at=day(-10)) for n in range(8)
    ]
    made = [day(3 + n // 2, hour=9 + 4 * (n % 2)) for n in range(7)]  # two a day over 4 days
    for task, moment in zip(tasks, made):
        record_call_outcome(task, outcome="no_answer", actor=collector, at=moment)

    refused = refusal(tasks[7], collector, day(8, hour=10))

    assert (refused.reason, refused.inputs["limit"]) == ("call_limit", "calls_per_debt_in_7_days")
    assert CallAttempt.objects.filter(customer=loan.customer).count() == 7
    record_call_outcome(tasks[7], outcome="no_answer", actor=collector, at=day(10, hour=10))


def test_a_conversation_covering_two_loans_blocks_calls_about_each():
    collector = make_collector("c5")
    loan = with_task()
    other = second_loan(loan)

    record_call_outcome(
        open_tasks(loan)[0], outcome="reached", actor=collector, at=day(3, hour=11), covers=[other.ref]
    )

    [task] = open_tasks(other)
    refused = refusal(task, collector, day(4, hour=11))
    assert (refused.reason, refused.inputs["loan_id"]) == ("call_limit", other.pk)
    attempt = CallAttempt.objects.get(customer=loan.customer)
    assert (
        set(attempt.loans.values_list("ref", flat=True)) == {loan.ref, other.ref} and attempt.is_conversation
    )
    assert AuditEvent.objects.get(action="collections.call.recorded").after["covered_loan_refs"] == [
        other.ref
    ]


def test_covering_a_loan_that_is_not_the_customers_is_refused():
    collector = make_collector("c6")
    loan = with_task()
    stranger = make_overdue_loan(call_tier())
    with pytest.raises(ValidationError) as caught:
        record_call_outcome(
            open_tasks(loan)[0], outcome="reached", actor=collector, at=day(3, hour=11), covers=[stranger.ref]
        )
    assert "covers" in caught.value.message_dict
    assert nothing_recorded(open_tasks(loan)[0])


def test_a_person_gets_at_most_3_call_attempts_a_day_across_loans():
    collector = make_collector("c7")
    loan = with_task()
    other = second_loan(loan)
    record_call_outcome(open_tasks(loan)[0], outcome="no_answer", actor=collector, at=day(3, hour=9))
    record_call_outcome(open_tasks(other)[0], outcome="no_answer", actor=collector, at=day(3, hour=12))
    record_call_outcome(open_tasks(loan)[0], outcome="no_answer", actor=collector, at=day(3, hour=15))

    refused = refusal(open_tasks(other)[0], collector, day(3, hour=18))

    assert (refused.reason, refused.inputs["limit"]) == ("call_limit", "attempts_per_day")
    # The retry scheduled after the third attempt is due tomorrow, when the window opens.
    assert open_tasks(loan)[0].scheduled_for == day(4, hour=8)


def test_the_daily_limit_is_set_on_the_contact_policy():
    ContactPolicy.objects.update_or_create(id=1, defaults={"max_call_attempts_per_day": 1})
    collector = make_collector("c8")
    loan = with_task()
    record_call_outcome(open_tasks(loan)[0], outcome="no_answer", actor=collector, at=day(3, hour=9))
    task = CallTask.objects.create(case=open_tasks_case(loan), scheduled_for=day(3), created_at=day(3))
    assert refusal(task, collector, day(3, hour=12)).inputs["limit"] == "attempts_per_day"


def test_call_attempts_count_in_the_weekly_contact_cap():
    make_template("overdue", "sms", "zh-hans")
    collector = make_collector("c9")
    loan = with_task()
    tier = loan.customer.tier
    tier.max_contacts_per_week = 2
    tier.save()
    record_call_outcome(open_tasks(loan)[0], outcome="no_answer", actor=collector, at=day(3, hour=9))
    record_call_outcome(open_tasks(loan)[0], outcome="no_answer", actor=collector, at=day(3, hour=13))

    # A message after two calls is over the cap of 2...
    customer = Customer.objects.get(pk=loan.customer_id)
    [log] = plan_notice(
        customer=customer,
        kind="overdue",
        installments=list(loan.installments.all()),
        now=day(3, hour=14),
        dedupe_key="cap-test",
        channels=["sms"],
    )
    dispatch_due(day(3, hour=14))
    log.refresh_from_db()
    assert (log.status, log.reason) == ("suppressed", "frequency_cap")
    # ... and so is a third call.
    refused = refusal(open_tasks(loan)[0], collector, day(3, hour=17))
    assert (refused.reason, refused.inputs["contacts_in_last_7_days"]) == ("frequency_cap", 2)


def test_a_voicemail_leaves_the_configured_limited_content_message_and_counts_as_an_attempt():
    ContactPolicy.objects.update_or_create(
        id=1, defaults={"business_name": "Lotus Services", "callback_number": "400-800-1234"}
    )
    collector = make_collector("c10", first_name="Li", last_name="Na")
    loan = with_task()

    record_call_outcome(open_tasks(loan)[0], outcome="voicemail", actor=collector, at=day(3, hour=11))

    attempt = CallAttempt.objects.get(customer=loan.customer)
    assert attempt.outcome == "voicemail" and not attempt.is_conversation
    assert attempt.voicemail_message == (
        "Hello, this is Li Na from Lotus Services. Please call me back at 400-800-1234. Thank you."
    )
    assert loan.ref not in attempt.voicemail_message and "500" not in attempt.voicemail_message
    event = AuditEvent.objects.get(action="collections.call.recorded")
    assert event.after["voicemail_message"] == attempt.voicemail_message
    assert open_tasks(loan)[0].scheduled_for > day(3, hour=11)  # another attempt is scheduled, not a pause


@pytest.mark.parametrize(
    "text, field_error",
    [
        ("Call {agent_name} at {callback_number} about your overdue loan.", "overdue"),
        ("You owe {amount_due}. Call {callback_number}.", "{amount_due}"),
        ("This is {agent_name}, please call back.", "{callback_number}"),
        ("您好，我是{agent_name}，关于您的逾期还款，请回电{callback_number}。", "逾期"),
    ],
)
def test_the_voicemail_text_may_say_nothing_about_the_debt(text, field_error):
    policy = ContactPolicy(voicemail_text=text)
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    assert field_error in " ".join(caught.value.message_dict["voicemail_text"])


def test_the_queue_shows_the_customers_local_time_and_whether_they_may_be_called_now(client):
    collector = make_collector("c11")
    loan = with_task(timezone="Asia/Shanghai", phone="+14155550123")  # may be in Los Angeles too
    url = reverse("admin:collections_calltask_changelist")

    with time_machine.travel(day(3, hour=14), tick=False):  # 22:00 in Los Angeles
        client.force_login(collector)  # the session is dated by the pinned clock
        page = client.get(url).content.decode()
    assert "Outside the contact window" in page and "America/Los_Angeles: 22:00" in page

    with time_machine.travel(day(4, hour=9), tick=False):  # 17:00 in Los Angeles
        client.force_login(collector)  # the session is dated by the pinned clock
        page = client.get(url).content.decode()
    assert "Outside the contact window" not in page and ">yes<" in page

    record_call_outcome(open_tasks(loan)[0], outcome="refused", actor=collector, at=day(4, hour=9))
    CallTask.objects.create(
        case=open_tasks_case(loan), scheduled_for=day(4), created_at=day(4), assigned_to=collector
    )
    with time_machine.travel(day(5, hour=9), tick=False):
        client.force_login(collector)  # the session is dated by the pinned clock
        page = client.get(url).content.decode()
    assert "Call limit reached" in page


def test_the_collectors_form_refuses_a_call_that_may_not_be_made(client):
    collector = make_collector("c12")
    loan = with_task()
    [task] = open_tasks(loan)

    with time_machine.travel(day(3, hour=22, tz="Asia/Shanghai"), tick=False):
        client.force_login(collector)  # the session is dated by the pinned clock
        response = client.post(
            reverse("admin:collections_calltask_record", args=[task.pk]), {"outcome": "no_answer"}
        )

    assert response.status_code == 200
    assert "Outside the contact window" in " ".join(response.context["form"].non_field_errors())
    assert nothing_recorded(task)


def record_call(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("record_call", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_record_call_records_an_attempt_like_the_form():
    make_collector("dialer")
    loan = with_task()
    other = second_loan(loan)

    code, out, _err = record_call(
        loan.ref,
        "--outcome",
        "promise_to_pay",
        "--at",
        day(3, hour=11).isoformat(),
        "--covers",
        other.ref,
        "--promise-amount",
        "500.00",
        "--promise-date",
        day(6).date().isoformat(),
        "--actor",
        "dialer",
    )

    assert code == 0 and "recorded: promise_to_pay" in out
    attempt = CallAttempt.objects.get()
    assert attempt.made_by == "dialer" and attempt.made_at == day(3, hour=11)
    assert open_tasks_case(loan).paused_until == day(6).date()


def test_record_call_refuses_with_exit_2_and_the_reason_code_and_records_nothing():
    loan = with_task()
    [task] = open_tasks(loan)

    code, _out, err = record_call(loan.ref, "--outcome", "no_answer", "--at", "2026-12-04T22:30:00+08:00")

    assert code == 2 and err.startswith("refused: outside_contact_window")
    assert nothing_recorded(task)


def test_record_call_names_a_bad_outcome_and_a_loan_without_a_call():
    loan = with_task()
    with pytest.raises(CommandError, match="invalid choice"):
        record_call(loan.ref, "--outcome", "hung_up", "--at", day(3, hour=11).isoformat())
    with pytest.raises(CommandError, match="no open call task"):
        call_command("record_call", "NOPE", "--outcome", "reached", "--at", day(3, hour=11).isoformat())
