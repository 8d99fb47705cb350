"""A tier's policy is versioned: saving a change makes the next version (who, when, why) instead of overwriting,
and contacts, cases and call tasks name the version they were decided under."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from backoffice import roles
from backoffice.jobs import run_pipeline
from core.models import AuditEvent
from debt_collection.models import EscalationStep
from loans.models import PolicyVersion
from loans.policy_changes import REASON_FIELD, policy_change
from notifications.models import NotificationLog, ReminderRule
from notifications.planning import plan_contacts
from notifications.resources import ReminderRuleResource
from tests.test_configuration_audit import form_data, rule_formset

from .factories import make_tier, make_user
from .factories_reminders import SHANGHAI, local, make_debtor, make_rule

pytestmark = pytest.mark.django_db


def versions(tier) -> list[PolicyVersion]:
    return list(PolicyVersion.objects.filter(tier=tier).order_by("number"))


def test_it_records_the_next_version_when_a_tier_a_rule_or_a_step_is_saved():
    tier = make_tier(grace_period_days=3)
    make_rule(tier, -3)
    EscalationStep.objects.create(tier=tier, min_dpd=5, stage="early", action="sms", kind="overdue")
    tier.grace_period_days = 4
    tier.save()

    found = versions(tier)
    assert [v.number for v in found] == [1, 2, 3, 4]
    assert found[-1].grace_period_days == 4 and found[0].grace_period_days == 3
    assert found[-1].rules == [[-3, "sms", "pre_due", "10:00"]]
    assert [(s["min_dpd"], s["action"]) for s in found[-1].ladder] == [(5, "sms")]
    assert found[1].ladder == [] and found[1].created_by == "system"
    # An earlier version is never rewritten by a later change.
    assert found[0].rules == [] and found[2].grace_period_days == 3


def test_a_save_that_changes_nothing_makes_no_version():
    tier = make_tier()
    make_rule(tier, -3)
    tier.save()
    ReminderRule.objects.get(tier=tier).save()

    assert [v.number for v in versions(tier)] == [1, 2]


def test_a_change_in_one_block_is_one_version_naming_who_and_why():
    tier = make_tier()
    ops = make_user("ops", group=roles.OPERATIONS)
    with policy_change(ops, "fewer reminders for prime customers"):
        make_rule(tier, -7)
        make_rule(tier, -1)
        tier.max_contacts_per_week = 2
        tier.save()

    latest = versions(tier)[-1]
    assert latest.number == 2 and latest.created_by == "ops"
    assert latest.reason == "fewer reminders for prime customers"
    assert latest.max_contacts_per_week == 2 and len(latest.rules) == 2
    event = AuditEvent.objects.get(action="strategy.policy_version.created", object_id=str(latest.pk))
    assert event.actor == "ops" and event.after["number"] == 2
    assert event.after["previous_version_id"] == versions(tier)[0].pk


def test_a_tier_saved_in_the_admin_with_a_rule_inline_is_one_version_with_the_reason_typed(client):
    tier = make_tier(code="ADV", min_score=300, max_score=399)
    make_rule(tier, -3)
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("admin:loans_credittier_change", args=[tier.pk])
    page = client.get(url)
    assert REASON_FIELD in page.content.decode()
    data = form_data(page)
    prefix = rule_formset(page).prefix
    n = int(data[f"{prefix}-TOTAL_FORMS"])
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": n + 1,
            f"{prefix}-{n}-offset_days": -1,
            f"{prefix}-{n}-channel": "email",
            f"{prefix}-{n}-kind": "pre_due",
            f"{prefix}-{n}-send_time": "09:30",
            f"{prefix}-{n}-is_active": "on",
            "max_contacts_per_week": 2,
            REASON_FIELD: "a day-before email, one contact less a week",
        }
    )

    response = client.post(url, data)

    assert response.status_code == 302
    found = versions(tier)
    assert [v.number for v in found] == [1, 2, 3]
    assert found[-1].created_by == "ops" and found[-1].reason == "a day-before email, one contact less a week"
    assert found[-1].max_contacts_per_week == 2
    assert sorted(r[0] for r in found[-1].rules) == [-3, -1]


def test_an_imported_rules_file_is_a_new_version_of_each_tier_it_changed(tmp_path):
    import tablib

    tier = make_tier(code="IMP", min_score=400, max_score=499)
    other = make_tier(code="OTH", min_score=500, max_score=599)
    dataset = tablib.Dataset(headers=["tier_code", "offset_days", "channel", "kind", "send_time"])
    dataset.append(["IMP", "-2", "sms", "pre_due", "09:00"])
    dataset.append(["IMP", "0", "sms", "due_today", "09:00"])

    result = ReminderRuleResource().import_data(dataset, dry_run=False, user="ops", file_name="rules.csv")

    assert not result.has_errors() and not result.has_validation_errors()
    latest = versions(tier)[-1]
    assert latest.number == 2 and latest.created_by == "ops" and latest.reason == "import of rules.csv"
    assert sorted(r[0] for r in latest.rules) == [-2, 0]
    assert [v.number for v in versions(other)] == [1]


def test_a_dry_run_import_makes_no_version():
    import tablib

    tier = make_tier(code="DRY", min_score=600, max_score=699)
    dataset = tablib.Dataset(headers=["tier_code", "offset_days", "channel", "kind", "send_time"])
    dataset.append(["DRY", "-2", "sms", "pre_due", "09:00"])

    ReminderRuleResource().import_data(dataset, dry_run=True, user="ops", file_name="rules.csv")

    assert [v.number for v in versions(tier)] == [1]


def test_a_policy_written_without_signals_gets_its_version_before_the_day_is_planned():
    tier = make_tier()
    make_rule(tier, -3)
    ReminderRule.objects.filter(tier=tier).update(send_time=dt.time(11, 0))  # a bulk write: no save signal

    run_pipeline(local(SHANGHAI, 2026, 11, 20, 1))

    latest = versions(tier)[-1]
    assert latest.number == 3 and latest.rules == [[-3, "sms", "pre_due", "11:00"]]
    assert latest.created_by == "job:policy_versions"


def test_a_planned_contact_names_the_version_it_was_decided_under():
    tier = make_tier()
    make_rule(tier, -3)
    customer, _installments = make_debtor(tier, due_date=dt.date(2026, 12, 1))

    plan_contacts(local(SHANGHAI, 2026, 11, 28, 1))

    log = NotificationLog.objects.get(customer=customer)
    assert log.policy_version == versions(tier)[-1]
    event = AuditEvent.objects.get(action="notifications.contact.planned", object_id=str(log.pk))
    assert event.after["policy_version_id"] == log.policy_version_id
