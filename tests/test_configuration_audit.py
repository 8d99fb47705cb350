"""Configuration changed in the admin is written to the audit trail with before and after, inline rows too."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from backoffice import roles
from core.models import AuditEvent
from notifications.models import ContactPolicy, ReminderRule
from tests.factories import make_tier, make_user

pytestmark = pytest.mark.django_db


def form_data(page) -> dict:
    """What the browser would post back unchanged: the main form's values and every inline's rows."""
    data = {}
    form = page.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or value is False:
            continue
        data[name] = (
            "on" if value is True else (value.strftime("%H:%M") if isinstance(value, dt.time) else value)
        )
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for form in formset.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                if name == "id" and form.instance.pk:
                    value = form.instance.pk
                if value is None or value is False:
                    continue
                data[form.add_prefix(name)] = "on" if value is True else value
    return data


def rule_formset(page):
    return next(i.formset for i in page.context["inline_admin_formsets"] if i.formset.model is ReminderRule)


def test_a_rule_added_inline_on_a_tier_is_audited_with_its_values(client):
    tier = make_tier(code="INL", min_score=100, max_score=199)
    ReminderRule.objects.create(tier=tier, offset_days=-3, channel="sms", kind="pre_due")
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("admin:loans_credittier_change", args=[tier.pk])
    page = client.get(url)
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
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context and [f.errors for f in rule_formset(response).forms]
    rule = ReminderRule.objects.get(tier=tier, offset_days=-1)
    event = AuditEvent.objects.get(action="notifications.reminderrule.created")
    assert event.actor == "ops" and event.object_id == str(rule.pk) and event.before is None
    assert (
        event.after["tier"] == tier.pk
        and event.after["channel"] == "email"
        and event.after["send_time"] == "09:30:00"
    )
    # The unchanged rule and the unchanged tier write nothing.
    assert not AuditEvent.objects.filter(
        action__in=["notifications.reminderrule.changed", "loans.credittier.changed"]
    ).exists()


def test_a_rule_changed_and_one_deleted_inline_are_audited_with_before_and_after(client):
    tier = make_tier(code="INC", min_score=200, max_score=299)
    kept = ReminderRule.objects.create(tier=tier, offset_days=-7, channel="sms", kind="pre_due")
    gone = ReminderRule.objects.create(tier=tier, offset_days=-1, channel="sms", kind="pre_due")
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("admin:loans_credittier_change", args=[tier.pk])
    page = client.get(url)
    data = form_data(page)
    formset = rule_formset(page)
    for form in formset.forms:
        if form.instance.pk == kept.pk:
            data[form.add_prefix("offset_days")] = -5
        if form.instance.pk == gone.pk:
            data[form.add_prefix("DELETE")] = "on"
    assert client.post(url, data).status_code == 302
    changed = AuditEvent.objects.get(action="notifications.reminderrule.changed", object_id=str(kept.pk))
    assert changed.before["offset_days"] == -7 and changed.after["offset_days"] == -5
    deleted = AuditEvent.objects.get(action="notifications.reminderrule.deleted", object_id=str(gone.pk))
    assert deleted.before["offset_days"] == -1 and deleted.after is None


def test_a_contact_policy_change_is_audited_with_before_and_after(client):
    policy = ContactPolicy.get()
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("admin:notifications_contactpolicy_change", args=[policy.pk])
    data = form_data(client.get(url))
    data.update({"window_start": "09:00", "window_end": "20:00"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="notifications.contactpolicy.changed")
    assert event.actor == "ops"
    assert (event.before["window_start"], event.before["window_end"]) == ("08:00:00", "21:00:00")
    assert (event.after["window_start"], event.after["window_end"]) == ("09:00:00", "20:00:00")


def test_a_compliance_officer_cannot_change_the_contact_policy(client):
    policy = ContactPolicy.get()
    client.force_login(make_user("officer", group=roles.COMPLIANCE_OFFICER))
    url = reverse("admin:notifications_contactpolicy_change", args=[policy.pk])
    assert client.post(url, {"window_start": "00:00", "window_end": "23:59"}).status_code == 403
    policy.refresh_from_db()
    assert policy.window_start == dt.time(8, 0)
    assert not AuditEvent.objects.filter(action="notifications.contactpolicy.changed").exists()


def test_a_do_not_contact_flag_set_on_a_customer_page_is_audited_with_before_and_after(client):
    from loans.models import Customer
    from tests.factories import make_customer

    customer = make_customer(ref="DNC1")
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    url = reverse("admin:loans_customer_change", args=[customer.pk])
    data = form_data(client.get(url))
    data.update({"do_not_contact": "on", "do_not_contact_reason": "dispute"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert Customer.objects.get(pk=customer.pk).do_not_contact
    event = AuditEvent.objects.get(action="loans.customer.changed")
    assert event.actor == "ops" and event.object_id == str(customer.pk)
    assert (event.before["do_not_contact"], event.before["do_not_contact_reason"]) == (False, "")
    assert (event.after["do_not_contact"], event.after["do_not_contact_reason"]) == (True, "dispute")


def test_an_administrator_changing_a_schedule_is_audited(client):
    from django_q.models import Schedule

    schedule = Schedule.objects.create(
        name="audit-me", func="math.floor", schedule_type=Schedule.DAILY, repeats=-1
    )
    client.force_login(make_user("root", group=roles.ADMINISTRATOR))
    url = reverse("admin:django_q_schedule_change", args=[schedule.pk])
    data = form_data(client.get(url))
    data["next_run_0"], data["next_run_1"] = "2026-12-01", "02:00:00"
    data["repeats"] = 5
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="django_q.schedule.changed")
    assert event.actor == "root" and event.before["repeats"] == -1 and event.after["repeats"] == 5
