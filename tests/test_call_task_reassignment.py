"""Only members of the Collector group receive call tasks: from the daily ladder, after a broken promise, and from
a team lead, who hands open tasks to another collector in bulk (audited)."""

from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse

from backoffice.roles import TEAM_LEAD
from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.assignment import collectors, reassign_call_tasks
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.calls import collector_loads
from debt_collection.models import CallTask

from .factories import make_tier, make_user
from .factories_collections import day, make_collector, make_ladder, make_overdue_loan, open_tasks

pytestmark = pytest.mark.django_db


def call_tier():
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", "")])
    return tier


def test_the_ladder_gives_tasks_only_to_members_of_the_collector_group():
    tier = call_tier()
    collector = make_collector("only")
    # Allowed to record outcomes by hand, but not a Collector: gets nothing.
    helper = make_user("helper", password=None)
    helper.user_permissions.add(Permission.objects.get(codename="record_call_outcome"))
    make_collector("gone", is_active=False)
    for _ in range(3):
        make_overdue_loan(tier)

    advance_collections(day(3))

    assert set(collector_loads()) == {collector.pk}
    assert set(CallTask.objects.values_list("assigned_to", flat=True)) == {collector.pk}


def test_a_team_lead_reassigns_selected_tasks_to_a_collector_and_it_is_audited(client):
    tier = call_tier()
    ann, bob = make_collector("ann"), make_collector("bob")
    lead = make_user("lead", group=TEAM_LEAD, password=None)
    loans = [make_overdue_loan(tier) for _ in range(3)]
    advance_collections(day(3))
    CallTask.objects.update(assigned_to=ann)
    moving = [open_tasks(loan)[0].pk for loan in loans[:2]]
    url = reverse("admin:collections_calltask_changelist")
    client.force_login(lead)

    form = client.post(url, {"action": "reassign_action", helpers.ACTION_CHECKBOX_NAME: moving})
    offered = set(form.context["form"].fields["collector"].queryset)
    assert form.status_code == 200 and offered == {ann, bob}
    done = client.post(
        url,
        {
            "action": "reassign_action",
            helpers.ACTION_CHECKBOX_NAME: moving,
            "apply": "1",
            "collector": bob.pk,
        },
        follow=True,
    )

    assert "2 call tasks reassigned to bob." in done.content.decode()
    assert set(CallTask.objects.filter(assigned_to=bob).values_list("pk", flat=True)) == set(moving)
    events = AuditEvent.objects.filter(action="collections.call.reassigned").order_by("object_id")
    assert [e.object_id for e in events] == sorted(str(pk) for pk in moving)
    assert all(
        e.actor == "lead" and e.before["assigned_to_id"] == ann.pk and e.after["assigned_to_id"] == bob.pk
        for e in events
    )


def test_a_task_cannot_be_handed_to_someone_outside_the_collector_group(client):
    tier = call_tier()
    ann = make_collector("ann")
    lead = make_user("lead", group=TEAM_LEAD, password=None)
    outsider = make_user("outsider", password=None)
    make_overdue_loan(tier)
    advance_collections(day(3))
    [task] = CallTask.objects.all()
    client.force_login(lead)

    response = client.post(
        reverse("admin:collections_calltask_changelist"),
        {
            "action": "reassign_action",
            helpers.ACTION_CHECKBOX_NAME: [task.pk],
            "apply": "1",
            "collector": outsider.pk,
        },
    )

    assert response.status_code == 200 and "collector" in response.context["form"].errors
    with pytest.raises(ValidationError):
        reassign_call_tasks([task], outsider, actor=lead, at=day(3))
    with pytest.raises(ValidationError):
        reassign_call_tasks([task], lead, actor=lead, at=day(3))  # a team lead is not a Collector
    task.refresh_from_db()
    assert task.assigned_to == ann
    assert not AuditEvent.objects.filter(action="collections.call.reassigned").exists()
    # The change form offers Collectors only, too.
    page = client.get(reverse("admin:collections_calltask_change", args=[task.pk])).content.decode()
    assert f'value="{ann.pk}"' in page and f'value="{outsider.pk}"' not in page


def test_a_collector_has_no_reassignment_and_cannot_post_it(client):
    tier = call_tier()
    ann, bob = make_collector("ann"), make_collector("bob")
    make_overdue_loan(tier)
    advance_collections(day(3))
    [task] = CallTask.objects.all()
    CallTask.objects.update(assigned_to=ann)
    client.force_login(ann)
    url = reverse("admin:collections_calltask_changelist")

    assert "reassign_action" not in client.get(url).content.decode()
    client.post(
        url,
        {
            "action": "reassign_action",
            helpers.ACTION_CHECKBOX_NAME: [task.pk],
            "apply": "1",
            "collector": bob.pk,
        },
    )

    task.refresh_from_db()
    assert task.assigned_to == ann


def test_done_tasks_stay_with_whoever_worked_them():
    tier = call_tier()
    ann, bob = make_collector("ann"), make_collector("bob")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    [task] = open_tasks(loan)
    CallTask.objects.update(assigned_to=ann)
    record_call_outcome(task, outcome="refused", actor=ann, at=day(3, hour=11))

    assert reassign_call_tasks([task], bob, actor="lead", at=day(3, hour=12)) == 0
    task.refresh_from_db()
    assert task.assigned_to == ann
    assert list(collectors()) == [ann, bob]
