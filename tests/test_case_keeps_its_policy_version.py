"""An open case keeps the policy version it opened under until it closes: a later change of its tier's ladder
applies to new cases; an operator may move a case onto the current version on purpose (audited)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from backoffice import roles
from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.models import CallTask, CaseStepRun, EscalationStep
from loans.models import PolicyVersion

from .factories import make_tier, make_user
from .factories_collections import (
    day,
    make_collector,
    make_ladder,
    make_overdue_loan,
    open_case,
    overdue_templates,
)

pytestmark = pytest.mark.django_db


def a_tier_with_an_sms_ladder():
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(3, "early", "sms", "overdue")])
    return tier


def test_a_case_opens_under_its_tiers_current_version_and_a_call_task_names_it():
    overdue_templates()
    make_collector("c1")
    tier = make_tier(grace_period_days=2)
    make_ladder(tier, [(3, "call", "call_task", "")])
    loan = make_overdue_loan(tier)

    advance_collections(day(3))

    case = open_case(loan)
    current = PolicyVersion.objects.filter(tier=tier).order_by("-number").first()
    assert case.policy_version == current
    task = CallTask.objects.get(case=case)
    assert task.policy_version == current
    opened = AuditEvent.objects.get(action="collections.case.opened", object_id=str(case.pk))
    scheduled = AuditEvent.objects.get(action="collections.call.scheduled", object_id=str(task.pk))
    assert opened.after["policy_version_id"] == scheduled.after["policy_version_id"] == current.pk


def test_a_ladder_changed_after_a_case_opened_applies_to_new_cases_only():
    overdue_templates()
    tier = a_tier_with_an_sms_ladder()
    old_loan = make_overdue_loan(tier)
    advance_collections(day(3))
    EscalationStep.objects.create(tier=tier, min_dpd=6, stage="firm", action="email", kind="overdue")
    new_loan = make_overdue_loan(tier, due_date=old_loan.installments.get().due_date)

    advance_collections(day(6))

    old_case, new_case = open_case(old_loan), open_case(new_loan)
    assert old_case.policy_version.number < new_case.policy_version.number
    assert old_case.stage == "early"  # its version has no step at 6 days
    assert new_case.stage == "firm"
    assert CaseStepRun.objects.filter(case=new_case, action="email", result="performed").exists()


def test_an_operator_moves_a_case_onto_the_current_version_and_the_trail_says_so(client):
    overdue_templates()
    tier = a_tier_with_an_sms_ladder()
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    EscalationStep.objects.create(tier=tier, min_dpd=6, stage="firm", action="email", kind="overdue")
    case = open_case(loan)
    before = case.policy_version_id
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    response = client.post(
        reverse("admin:collections_collectioncase_changelist"),
        {"action": "migrate_policy_action", "_selected_action": [case.pk]},
    )

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.policy_version.number == PolicyVersion.objects.filter(tier=tier).count()
    event = AuditEvent.objects.get(action="collections.case.policy_migrated", object_id=str(case.pk))
    assert event.actor == "ops" and event.before == {"policy_version_id": before}
    advance_collections(day(6))
    case.refresh_from_db()
    assert case.stage == "firm"


def test_a_compliance_officer_cannot_move_a_case(client):
    tier = a_tier_with_an_sms_ladder()
    loan = make_overdue_loan(tier)
    advance_collections(day(3))
    case = open_case(loan)
    client.force_login(make_user("auditor", group=roles.COMPLIANCE_OFFICER))

    client.post(
        reverse("admin:collections_collectioncase_changelist"),
        {"action": "migrate_policy_action", "_selected_action": [case.pk]},
    )

    assert not AuditEvent.objects.filter(action="collections.case.policy_migrated").exists()
