"""Configuration read from a file (templates, rules, escalation steps) is audited object by object with before
and after, as an edit in the admin is; its export from the admin is recorded like the loan book's."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.urls import reverse

from core.imports.resource import run_import
from core.models import AuditEvent
from debt_collection.models import EscalationStep
from debt_collection.resources import EscalationStepResource
from notifications.models import ReminderRule, ReminderTemplate
from notifications.resources import ReminderRuleResource, ReminderTemplateResource

from .factories import make_tier, make_user
from .factories_reminders import make_rule, make_template

pytestmark = pytest.mark.django_db


def test_a_template_file_audits_each_template_it_created_or_changed_with_before_and_after():
    changed = make_template(kind="pre_due", channel="sms", language="en", body="Old {customer_name}")
    same = make_template(
        kind="pre_due", channel="push", language="en", subject="Hi", body="Same {customer_name}"
    )
    data = (
        "kind,channel,language,subject,body\n"
        "pre_due,sms,en,,New {customer_name}\n"
        "pre_due,push,en,Hi,Same {customer_name}\n"
        "due_today,sms,en,,Today {customer_name}\n"
    )

    _result, errors = run_import(
        ReminderTemplateResource(), data, file_name="templates.csv", user=make_user("ops")
    )

    assert errors == []
    event = AuditEvent.objects.get(action="notifications.remindertemplate.changed")
    assert event.actor == "ops" and event.object_id == str(changed.pk)
    assert event.before["body"] == "Old {customer_name}" and event.after["body"] == "New {customer_name}"
    assert event.after["source"] == "import"
    created = AuditEvent.objects.get(action="notifications.remindertemplate.created")
    assert created.before is None and created.object_id == str(
        ReminderTemplate.objects.get(kind="due_today").pk
    )
    assert not AuditEvent.objects.filter(
        object_type="notifications.ReminderTemplate", object_id=str(same.pk)
    ).exists()
    assert AuditEvent.objects.filter(action="backoffice.import.completed").count() == 1


def test_a_rule_file_audits_each_rule_it_changed_and_a_dry_run_audits_nothing():
    tier = make_tier(code="RLOW", grace_period_days=5)
    rule = make_rule(tier, -3, "sms", send_time=dt.time(9, 30))
    data = "tier_code,offset_days,channel,kind,send_time\nRLOW,-3,sms,pre_due,11:00\n"

    run_import(ReminderRuleResource(), data, file_name="rules.csv", dry_run=True)
    assert not AuditEvent.objects.filter(object_type="notifications.ReminderRule").exists()
    _result, errors = run_import(ReminderRuleResource(), data, file_name="rules.csv")

    assert errors == []
    event = AuditEvent.objects.get(action="notifications.reminderrule.changed")
    assert event.object_id == str(rule.pk) and event.before["tier"] == tier.pk
    assert event.before["send_time"] == "09:30:00" and event.after["send_time"] == "11:00:00"
    assert ReminderRule.objects.get().send_time == dt.time(11, 0)


def test_a_ladder_file_audits_each_step_and_a_failed_file_audits_none():
    tier = make_tier(code="LA")
    bad = "tier_code,min_dpd,stage,action,kind\nLA,15,call,call_task,\nLA,30,x,fax,\n"
    _result, errors = run_import(EscalationStepResource(), bad)
    assert errors and not AuditEvent.objects.filter(object_type="collections.EscalationStep").exists()

    _result, errors = run_import(
        EscalationStepResource(), "tier_code,min_dpd,stage,action,kind\nLA,15,call,call_task,\n"
    )
    assert errors == []
    _result, errors = run_import(
        EscalationStepResource(), "tier_code,min_dpd,stage,action,kind\nLA,15,phone,call_task,\n"
    )

    assert errors == []
    step = EscalationStep.objects.get(tier=tier)
    created = AuditEvent.objects.get(action="collections.escalationstep.created")
    changed = AuditEvent.objects.get(action="collections.escalationstep.changed")
    assert created.object_id == changed.object_id == str(step.pk)
    assert changed.before["stage"] == "call" and changed.after["stage"] == "phone"


def export(client, url: str) -> bytes:
    form = client.get(url).context["form"]
    data = {name: "on" for name, field in form.fields.items() if field.__class__.__name__ == "BooleanField"}
    choices = {label: value for value, label in form.fields["format"].choices}
    data.update({"format": choices["csv"], "resource": "0"})
    response = client.post(url, data)
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    return b"".join(response) if response.streaming else response.content


@pytest.mark.parametrize(
    "url_name, label",
    [
        ("admin:notifications_remindertemplate_export", "notifications.ReminderTemplate"),
        ("admin:notifications_reminderrule_export", "notifications.ReminderRule"),
        ("admin:collections_escalationstep_export", "collections.EscalationStep"),
    ],
)
def test_exporting_templates_rules_or_steps_from_the_admin_is_audited(client, url_name, label):
    tier = make_tier(code="EX")
    make_template(kind="pre_due", channel="sms", language="en")
    make_rule(tier, -3)
    EscalationStep.objects.create(tier=tier, min_dpd=15, stage="call", action="call_task", kind="")
    client.force_login(make_user("boss", is_superuser=True))

    payload = export(client, reverse(url_name))

    event = AuditEvent.objects.get(action="backoffice.export.completed")
    assert event.actor == "boss" and event.object_type == label and event.after["rows"] == 1
    assert event.after["sha256"] == hashlib.sha256(payload).hexdigest()
