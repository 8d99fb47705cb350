"""The queue greys a task that may not be called now and says why, by the same ``may_call`` a recorded call is
checked by: outside the window in one of the customer's zones, the weekly cap, the call limit, stop calling."""

from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse

from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import CallRefused, record_call_outcome
from debt_collection.calls import queue_gates
from debt_collection.models import CallTask
from loans.models import Customer

from .factories import make_tier
from .factories_collections import day, make_collector, make_ladder, make_overdue_loan, open_tasks

pytestmark = pytest.mark.django_db


def task_of(collector, **customer_kwargs) -> CallTask:
    tier = make_tier(grace_period_days=2, max_contacts_per_week=customer_kwargs.pop("cap", 50))
    make_ladder(tier, [(1, "call", "call_task", "")])
    loan = make_overdue_loan(tier, **customer_kwargs)
    advance_collections(day(3))
    [task] = open_tasks(loan)
    CallTask.objects.filter(pk=task.pk).update(assigned_to=collector)
    return task


def queue_row(client, collector, task, at) -> str:
    with time_machine.travel(at, tick=False):
        client.force_login(collector)
        page = client.get(reverse("admin:collections_calltask_changelist")).content.decode()
    ref = page.index(f"{task.case.loan.ref}<br>")
    start = page.rindex("<tr", 0, ref)
    return page[start : page.index("</tr>", ref)]


def test_a_task_outside_the_window_in_one_of_the_customers_zones_is_greyed_naming_that_zone(client):
    collector = make_collector("z1")
    task = task_of(collector, timezone="Asia/Shanghai", phone="+14155550123")  # may be in Los Angeles too

    row = queue_row(client, collector, task, day(3, hour=14))  # 14:00 in Shanghai, 22:00 in Los Angeles

    assert 'class="bo-call-blocked" data-reason="outside_contact_window"' in row
    assert "Outside the contact window in America/Los_Angeles" in row and "Asia/Shanghai," not in row
    assert "America/Los_Angeles: 22:00" in row  # the customer's local times


def test_a_task_over_the_weekly_cap_or_after_stop_calling_is_greyed_with_its_reason(client):
    collector = make_collector("z2")
    capped = task_of(collector, cap=1)
    record_call_outcome(capped, outcome="no_answer", actor=collector, at=day(3, hour=11))
    [retry] = open_tasks(capped.case.loan)
    stopped = task_of(collector)
    Customer.objects.filter(pk=stopped.case.loan.customer_id).update(opt_out_call=True)

    assert 'data-reason="frequency_cap"' in queue_row(client, collector, retry, day(4, hour=11))
    row = queue_row(client, collector, stopped, day(4, hour=11))
    assert 'data-reason="opted_out"' in row and "Asked us to stop calling" in row


def test_a_task_after_a_conversation_is_greyed_by_the_call_limit_until_the_pause_ends(client):
    collector = make_collector("z3")
    task = task_of(collector)
    record_call_outcome(task, outcome="refused", actor=collector, at=day(3, hour=11))
    again = CallTask.objects.create(
        case=task.case, scheduled_for=day(4), created_at=day(4), assigned_to=collector
    )

    row = queue_row(client, collector, again, day(5, hour=11))

    assert 'data-reason="call_limit"' in row and "spoke about this loan recently; from" in row


def test_the_queue_and_the_recording_of_a_call_give_the_same_answer():
    collector = make_collector("z4")
    task = task_of(collector, timezone="Asia/Shanghai", phone="+14155550123")
    task = CallTask.objects.select_related("case__loan__customer__tier").get(pk=task.pk)
    for hour in (8, 11, 14, 22):
        gate = queue_gates([task], day(3, hour=hour))[task.pk]
        try:
            with time_machine.travel(day(3, hour=hour), tick=False):
                record_call_outcome(task, outcome="no_answer", actor=collector, at=day(3, hour=hour))
        except CallRefused as refused:
            assert not gate.decision.allowed and refused.reason == gate.decision.reason
        else:
            assert gate.decision.allowed
            break
    else:
        pytest.fail("no hour of the day allowed the call")


def test_a_task_that_may_be_called_is_not_greyed(client):
    collector = make_collector("z5")
    task = task_of(collector)

    row = queue_row(client, collector, task, day(3, hour=11))

    assert 'class="bo-call-ok"' in row and "bo-call-blocked" not in row


def test_the_reason_speaks_chinese_to_a_chinese_browser(client):
    collector = make_collector("z6")
    task = task_of(collector, timezone="Asia/Shanghai", phone="+14155550123")

    with time_machine.travel(day(3, hour=14), tick=False):
        client.force_login(collector)
        page = client.get(
            reverse("admin:collections_calltask_changelist"), HTTP_ACCEPT_LANGUAGE="zh-CN"
        ).content.decode()

    assert "在 America/Los_Angeles 不在联系时段内" in page and task.case.loan.ref in page
