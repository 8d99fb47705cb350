"""The collectors' queue: tasks by load, each collector's own tasks by priority, outcomes in one form, call limits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallAttempt, CallTask, CaseStepRun, CollectionCase, PromiseToPay
from loans.models import Customer
from notifications.models import NotificationLog

from .factories import make_tier, make_user
from .factories_collections import (
    day,
    high_risk_tier,
    make_collector,
    make_ladder,
    make_overdue_loan,
    open_case,
    open_tasks,
    overdue_templates,
)
from .factories_reminders import SHANGHAI, local

pytestmark = pytest.mark.django_db


def call_tier(**kwargs):
    tier = make_tier(grace_period_days=kwargs.pop("grace_period_days", 2), **kwargs)
    make_ladder(tier, [(1, "call", "call_task", ""), (5, "call2", "call_task", "")])
    return tier


def queue_of(client, user, **params):
    client.force_login(user)
    response = client.get(reverse("admin:collections_calltask_changelist"), params)
    assert response.status_code == 200
    return [task.pk for task in response.context["cl"].result_list]


def test_tasks_go_to_the_collector_with_the_fewest_open_tasks():
    tier = call_tier()
    busy, idle = make_collector("busy"), make_collector("idle")
    make_user("operator", password=None)  # staff without the collector's permission gets nothing
    first = make_overdue_loan(tier)
    advance_collections(day(3))
    CallTask.objects.filter(case__loan=first).update(assigned_to=busy)
    for _ in range(3):
        make_overdue_loan(tier)

    advance_collections(day(3, hour=11))

    assert CallTask.objects.filter(assigned_to=busy, status="open").count() == 2
    assert CallTask.objects.filter(assigned_to=idle, status="open").count() == 2
    assert not CallTask.objects.filter(assigned_to__isnull=True).exists()


def test_a_collector_sees_only_their_open_tasks_broken_promises_and_big_amounts_first(client):
    tier = call_tier()
    me, other = make_collector("me"), make_collector("other")
    small = make_overdue_loan(tier, amount=Decimal("100.00"))
    big = make_overdue_loan(tier, amount=Decimal("900.00"))
    promised = make_overdue_loan(tier, amount=Decimal("50.00"))
    older = make_overdue_loan(tier, amount=Decimal("100.00"), due_date=day(-5).date())
    theirs = make_overdue_loan(tier, amount=Decimal("5000.00"))
    advance_collections(day(3))
    CallTask.objects.filter(status="open").update(assigned_to=me)
    CallTask.objects.filter(case__loan=theirs).update(assigned_to=other)
    CollectionCase.objects.filter(loan=promised).update(broken_promises=1)
    advance_collections(day(3, hour=12))  # the queue order is kept current

    mine = queue_of(client, me)

    expected = [open_tasks(loan)[0].pk for loan in (promised, big, older, small)]
    assert mine == expected  # broken promise, then amount (900), then DPD at equal amounts (8 > 3)
    assert queue_of(client, other) == [open_tasks(theirs)[0].pk]
    # Done tasks leave the queue.
    record_call_outcome(open_tasks(big)[0], outcome="refused", actor=me, at=day(3, hour=13))
    assert open_tasks(big) == [] and len(queue_of(client, me)) == 3


def test_a_supervisor_with_the_view_all_permission_sees_every_task(client):
    tier = call_tier()
    a, b = make_collector("a"), make_collector("b")
    for _ in range(2):
        make_overdue_loan(tier)
    advance_collections(day(3))
    supervisor = make_collector("supervisor")
    supervisor.user_permissions.add(Permission.objects.get(codename="view_all_calltasks"))

    assert len(queue_of(client, supervisor)) == 2
    assert len(queue_of(client, a)) + len(queue_of(client, b)) == 2


def test_recording_a_promise_to_pay_is_one_form_and_pauses_the_ladder(client):
    tier = call_tier()
    collector = make_collector("xu")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    task = open_tasks(loan)[0]
    url = reverse("admin:collections_calltask_record", args=[task.pk])
    promised_on = day(6).date()

    with time_machine.travel(day(3, hour=11), tick=False):  # the call is made (and checked) now
        client.force_login(collector)  # the session is dated by the pinned clock
        page = client.get(url)
        assert page.status_code == 200 and b"promise_amount" in page.content
        response = client.post(
            url,
            {
                "outcome": "promise_to_pay",
                "note": "pays on Friday",
                "promise_amount": "500.00",
                "promise_date": promised_on,
            },
        )

    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == "done" and task.outcome == "promise_to_pay" and task.completed_by == collector
    promise = PromiseToPay.objects.get(case=task.case)
    assert (
        promise.amount == Decimal("500.00")
        and promise.promised_date == promised_on
        and promise.status == "pending"
    )
    case = open_case(loan)
    assert case.paused_until == promised_on and case.last_conversation_at is not None
    event = AuditEvent.objects.get(action="collections.call.recorded", object_id=str(task.pk))
    assert event.after["outcome"] == "promise_to_pay" and event.actor == "xu"
    # Paused: the second call step (5 DPD) waits.
    advance_collections(day(5))
    assert not CaseStepRun.objects.filter(case=case, min_dpd=5).exists()


def test_a_promise_without_amount_or_date_is_refused_in_the_form(client):
    tier = call_tier()
    collector = make_collector("he")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    task = open_tasks(loan)[0]

    with time_machine.travel(day(3, hour=11), tick=False):
        client.force_login(collector)  # the session is dated by the pinned clock
        response = client.post(
            reverse("admin:collections_calltask_record", args=[task.pk]), {"outcome": "promise_to_pay"}
        )

    assert response.status_code == 200
    assert (
        response.context["form"].errors["promise_amount"] and response.context["form"].errors["promise_date"]
    )
    task.refresh_from_db()
    assert task.status == "open" and not PromiseToPay.objects.exists()


def test_a_collector_cannot_record_another_collectors_task(client):
    tier = call_tier()
    make_collector("owner")
    intruder = make_collector("intruder")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    task = open_tasks(loan)[0]
    CallTask.objects.filter(pk=task.pk).update(assigned_to=None)
    client.force_login(intruder)

    response = client.post(
        reverse("admin:collections_calltask_record", args=[task.pk]), {"outcome": "reached"}
    )

    assert response.status_code == 404
    task.refresh_from_db()
    assert task.status == "open"


def test_a_dispute_puts_the_customer_on_do_not_contact_until_an_operator_clears_it():
    overdue_templates()
    tier = high_risk_tier()
    collector = make_collector("gao")
    loan = make_overdue_loan(tier, installments=2)
    advance_collections(day(3, hour=7))  # the SMS waits for the window
    pending = NotificationLog.objects.filter(customer=loan.customer, status__in=["planned", "deferred"])
    assert pending.exists()

    record_call_outcome(
        open_tasks(loan)[0], outcome="dispute", note="says it was repaid", actor=collector, at=day(3, hour=9)
    )

    customer = Customer.objects.get(pk=loan.customer_id)
    assert customer.do_not_contact and customer.do_not_contact_reason == "dispute"
    assert not pending.exists()
    assert NotificationLog.objects.filter(
        customer=customer, status="cancelled", reason="do_not_contact"
    ).exists()
    assert AuditEvent.objects.filter(
        action="collections.customer.disputed", object_id=str(customer.pk)
    ).exists()
    advance_collections(day(10))
    case = open_case(loan)
    assert case.stage == "call" and not open_tasks(loan)

    customer.do_not_contact = False  # the operator clears the dispute
    customer.save()
    advance_collections(day(11))
    case.refresh_from_db()
    assert case.stage == "firm"


def test_a_call_is_never_scheduled_outside_the_contact_window():
    tier = call_tier()
    make_collector("night")
    loan = make_overdue_loan(tier)

    advance_collections(day(3, hour=23))

    task = open_tasks(loan)[0]
    assert task.scheduled_for == local(SHANGHAI, 2026, 12, 5, 8)


def test_no_call_is_scheduled_within_7_days_after_a_conversation():
    tier = call_tier()
    collector = make_collector("lin")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    record_call_outcome(open_tasks(loan)[0], outcome="reached", actor=collector, at=day(3, hour=11))

    advance_collections(day(5))

    # The day of the conversation is the first of the 7: the next call is due when the 8th day's window opens.
    task = open_tasks(loan)[0]
    assert task.scheduled_for == day(10, hour=8)


def test_no_answer_retries_keep_to_3_attempts_a_day_and_7_calls_in_7_days():
    tier = call_tier(max_contacts_per_week=50)
    collector = make_collector("luo")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    made = []
    for _ in range(9):
        task = open_tasks(loan)[0]
        record_call_outcome(task, outcome="no_answer", actor=collector, at=task.scheduled_for)
        made.append(task.scheduled_for)

    local_days = [t.astimezone(dt.timezone(dt.timedelta(hours=8))).date() for t in made]
    assert max(local_days.count(d) for d in local_days) == 3  # never a 4th attempt on one day
    for i, first in enumerate(local_days):
        assert sum(1 for d in local_days[i:] if (d - first).days < 7) <= 7
    assert made[1] - made[0] < dt.timedelta(days=1)  # retries are hours apart while the limits allow
    assert CallAttempt.objects.filter(customer=loan.customer).count() == 9


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"do_not_contact": True, "do_not_contact_reason": "bereavement"}, "do_not_contact"),
        ({"opt_out_call": True}, "opted_out"),
    ],
)
def test_a_customer_who_may_no_longer_be_called_leaves_the_queue(change, reason):
    tier = call_tier()
    make_collector("yu")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    [task] = open_tasks(loan)
    Customer.objects.filter(pk=loan.customer_id).update(**change)

    advance_collections(day(3, hour=11))

    task.refresh_from_db()
    assert (task.status, task.cancel_reason) == ("cancelled", reason)
    assert (
        AuditEvent.objects.get(action="collections.call.cancelled", object_id=str(task.pk)).after["reason"]
        == reason
    )
    advance_collections(day(6))  # the next call step is not taken either
    assert not open_tasks(loan)
