"""A call task is to be worked within ``CALL_TASK_SERVICE_LEVEL_HOURS`` of falling due: past that the queue says
"overdue by ..." and a team lead can list exactly those tasks."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from debt_collection.advance import advance_collections
from debt_collection.assignment import service_level
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallTask

from .factories import make_tier
from .factories_collections import day, make_collector, make_ladder, make_overdue_loan, open_tasks
from .test_settings import run_manage

pytestmark = pytest.mark.django_db


def tasks(n, collector):
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", "")])
    loans = [make_overdue_loan(tier) for _ in range(n)]
    advance_collections(day(3))
    found = [open_tasks(loan)[0] for loan in loans]
    CallTask.objects.filter(pk__in=[t.pk for t in found]).update(assigned_to=collector)
    return [CallTask.objects.get(pk=t.pk) for t in found]


def page_at(client, user, at, **params) -> tuple[str, list[int]]:
    with time_machine.travel(at, tick=False):
        client.force_login(user)
        response = client.get(reverse("admin:collections_calltask_changelist"), params)
    return response.content.decode(), [t.pk for t in response.context["cl"].result_list]


def test_it_defaults_to_four_hours_and_follows_the_setting(settings):
    assert service_level() == dt.timedelta(hours=4)
    settings.CALL_TASK_SERVICE_LEVEL_HOURS = 2
    assert service_level() == dt.timedelta(hours=2)


@pytest.mark.parametrize("hours", ["0", "-3", "200"])
def test_a_service_level_out_of_range_refuses_to_start(hours):
    result = run_manage("check", CALL_TASK_SERVICE_LEVEL_HOURS=hours)
    assert result.returncode != 0 and "CALL_TASK_SERVICE_LEVEL_HOURS" in result.stderr


def test_a_task_not_worked_within_the_service_level_is_flagged_with_how_late_it_is(client, settings):
    settings.CALL_TASK_SERVICE_LEVEL_HOURS = 4
    collector = make_collector("s1")
    [task] = tasks(1, collector)
    due = task.scheduled_for

    on_time, _ = page_at(client, collector, due + dt.timedelta(hours=3, minutes=59))
    late, _ = page_at(client, collector, due + dt.timedelta(hours=6, minutes=30))

    assert "overdue by" not in on_time
    assert "overdue by 2h 30m" in late


def test_a_worked_task_is_never_overdue_and_the_filter_lists_the_same_tasks_as_the_flag(client, settings):
    settings.CALL_TASK_SERVICE_LEVEL_HOURS = 4
    collector = make_collector("s2")
    lead = make_collector("lead")
    lead.user_permissions.add(Permission.objects.get(codename="view_all_calltasks"))
    late, worked, fresh = tasks(3, collector)
    CallTask.objects.filter(pk=fresh.pk).update(scheduled_for=late.scheduled_for + dt.timedelta(hours=3))
    record_call_outcome(worked, outcome="refused", actor=collector, at=day(3, hour=11))
    now = late.scheduled_for + dt.timedelta(hours=5)

    flagged = {t.pk for t in CallTask.objects.all() if t.overdue_by(now, service_level())}
    filtered = set(CallTask.objects.past_service_level(now, service_level()).values_list("pk", flat=True))
    _, listed = page_at(client, lead, now, sla="overdue")

    assert flagged == filtered == set(listed) == {late.pk}
