"""The collections pages of the admin render for the people who use them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallTask, PromiseToPay
from debt_collection.placements import place_with_agency

from .factories_collections import (
    day,
    high_risk_tier,
    make_agency,
    make_collector,
    make_overdue_loan,
    open_case,
    open_tasks,
)

pytestmark = pytest.mark.django_db


def test_a_collector_can_open_every_collections_page_and_sees_the_phone_to_call(client):
    tier = high_risk_tier()
    collector = make_collector("page")
    loan = make_overdue_loan(tier, phone="+8613812345678")
    advance_collections(day(3))
    case = open_case(loan)
    place_with_agency([case], make_agency("AG1"), actor="ops", at=day(3))
    record_call_outcome(
        open_tasks(loan)[0],
        outcome="promise_to_pay",
        promise_amount=100,
        promise_date=day(5).date(),
        actor=collector,
        at=day(3),
    )
    client.force_login(collector)

    pages = [
        reverse("admin:collections_collectioncase_changelist"),
        reverse("admin:collections_collectioncase_change", args=[case.pk]),
        reverse("admin:collections_calltask_changelist") + "?state=all",
        reverse("admin:collections_calltask_change", args=[CallTask.objects.get().pk]),
        reverse("admin:collections_promisetopay_changelist"),
        reverse("admin:collections_promisetopay_change", args=[PromiseToPay.objects.get().pk]),
        reverse("admin:collections_agencyplacement_changelist"),
        reverse("admin:collections_legalreferral_changelist"),
        reverse("admin:collections_agency_changelist"),
    ]
    for url in pages:
        assert client.get(url).status_code == 200, url
    queue = client.get(reverse("admin:collections_calltask_changelist") + "?state=all").content.decode()
    assert "+8613812345678" in queue  # collectors hold the personal-data permission: they need the number


def test_whoever_may_not_see_personal_data_gets_the_queue_masked(client):
    from django.contrib.auth.models import Permission

    from .factories import make_user

    tier = high_risk_tier()
    make_collector("owner")
    loan = make_overdue_loan(tier, phone="+8613812345678", name="王小明")
    advance_collections(day(3))
    viewer = make_user("auditor", password=None)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_calltask", "view_all_calltasks"])
    )
    client.force_login(viewer)

    page = client.get(reverse("admin:collections_calltask_changelist")).content.decode()

    assert (
        loan.ref in page and "13812345678" not in page and "王小明" not in page and "+86138****5678" in page
    )


def test_a_supervisor_reassigns_a_task_and_the_change_is_audited(client):
    from django.contrib.auth.models import Permission

    from core.models import AuditEvent

    tier = high_risk_tier()
    first = make_collector("first")
    second = make_collector("second")
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    task = open_tasks(loan)[0]
    assert task.assigned_to == first
    supervisor = make_collector("boss")
    supervisor.user_permissions.add(Permission.objects.get(codename="view_all_calltasks"))
    client.force_login(supervisor)

    response = client.post(
        reverse("admin:collections_calltask_change", args=[task.pk]),
        {"assigned_to": second.pk, "_save": "Save"},
    )

    assert response.status_code == 302
    task.refresh_from_db()
    assert task.assigned_to == second and task.status == "open"
    event = AuditEvent.objects.get(action="collections.calltask.changed")
    assert event.before["assigned_to"] == first.pk and event.after["assigned_to"] == second.pk


def test_operations_can_import_escalation_steps_in_the_admin(client):
    from .factories import make_user

    operator = make_user("ops", group="Operations", password=None)
    client.force_login(operator)

    assert client.get(reverse("admin:collections_escalationstep_import")).status_code == 200
    collector = make_collector("nope")
    client.force_login(collector)
    assert client.get(reverse("admin:collections_escalationstep_import")).status_code == 403


def test_cases_are_filtered_by_the_stages_the_ladders_name(client):
    from .factories import make_user
    from .factories_collections import low_risk_tier

    high, low = high_risk_tier(), low_risk_tier()
    at_call, early = make_overdue_loan(high), make_overdue_loan(low)
    advance_collections(day(6))
    client.force_login(make_user("stages", is_superuser=True, password=None))
    url = reverse("admin:collections_collectioncase_changelist")

    response = client.get(url, {"stage": "call"})

    assert [case.loan_id for case in response.context["cl"].result_list] == [at_call.pk]
    stage_filter = next(
        f for f in response.context["cl"].filter_specs if getattr(f, "parameter_name", "") == "stage"
    )
    assert [value for value, _label in stage_filter.lookup_choices] == [
        "agency",
        "call",
        "early",
        "firm",
        "legal",
    ]
    assert open_case(early).stage == "early"
