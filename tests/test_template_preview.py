"""The admin's template preview is the message: the dispatcher's rendering, with the same loans and totals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from debt_collection.advance import advance_collections
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog
from notifications.planning import plan_contacts
from notifications.rendering import preview_template

from .factories import make_customer, make_installment, make_loan, make_tier
from .factories_collections import DUE, day, low_risk_tier, make_ladder
from .factories_reminders import make_rule, make_template

pytestmark = pytest.mark.django_db

BODY = "{customer_name}：逾期{days_past_due}天，共{amount_due}{currency}，最早到期{due_date}。\n{loans}"


def debtor_three_instalments_overdue(tier):
    """One loan with three monthly instalments of 4,000, all past due at DUE + 6 days."""
    customer = make_customer(tier=tier, name="王芳")
    loan = make_loan(customer)
    for n in (2, 1, 0):
        make_installment(loan, due_date=DUE - dt.timedelta(days=30 * n), amount_due=Decimal("4000.00"))
    return customer, loan


def sms_ladder_tier():
    """A tier whose ladder's highest step reached at 66 DPD is an SMS (a case performs only the highest step it
    reaches)."""
    tier = make_tier(grace_period_days=5)
    make_ladder(tier, [(1, "early", "sms", "overdue"), (60, "late", "sms", "overdue")])
    return tier


def test_the_preview_of_a_collections_message_names_what_the_dispatcher_sends():
    template = make_template("overdue", "sms", "zh-hans", body=BODY)
    customer, loan = debtor_three_instalments_overdue(sms_ladder_tier())
    now = day(6)
    advance_collections(now)

    before = preview_template(template, customer, now)
    dispatch_due(now)

    [log] = NotificationLog.objects.filter(customer=customer, kind="overdue", channel="sms")
    assert log.status == "sent"
    assert "12000.00" in log.body and log.body.count(loan.ref) == 3
    assert before["body"] == log.body
    assert preview_template(template, customer, now)["body"] == log.body


def test_the_preview_of_a_reminder_names_every_loan_of_the_consolidated_message():
    template = make_template("pre_due", "sms", "zh-hans", body=BODY)
    tier = make_tier()
    make_rule(tier, -3, "sms")
    customer = make_customer(tier=tier)
    for _ in range(2):
        make_installment(make_loan(customer), due_date=DUE, amount_due=Decimal("4000.00"))
    now = day(-3)
    plan_contacts(now)
    dispatch_due(now)

    [log] = NotificationLog.objects.filter(customer=customer, kind="pre_due")
    assert log.status == "sent" and "8000.00" in log.body
    assert preview_template(template, customer, now)["body"] == log.body


def test_the_preview_without_a_message_of_that_kind_names_what_one_would_name_now():
    template = make_template("overdue", "sms", "zh-hans", body=BODY)
    customer, loan = debtor_three_instalments_overdue(low_risk_tier())

    preview = preview_template(template, customer, day(6))

    assert "12000.00" in preview["body"] and preview["body"].count(loan.ref) == 3
    assert f"最早到期{(DUE - dt.timedelta(days=60)).isoformat()}" in preview["body"]


def test_the_admin_preview_at_a_moment_shows_the_message_sent_at_that_moment(admin_client):
    template = make_template("overdue", "sms", "zh-hans", body=BODY)
    customer, _loan = debtor_three_instalments_overdue(sms_ladder_tier())
    now = day(6)
    advance_collections(now)
    dispatch_due(now)
    [log] = NotificationLog.objects.filter(customer=customer, kind="overdue", channel="sms")

    response = admin_client.get(
        reverse("admin:notifications_remindertemplate_preview", args=[template.pk]),
        {"customer": customer.ref, "at": now.isoformat()},
    )

    assert response.status_code == 200
    assert response.context["preview"]["body"] == log.body


def test_the_admin_preview_refuses_a_moment_that_is_not_one(admin_client):
    template = make_template("overdue", "sms", "zh-hans", body=BODY)
    customer, _loan = debtor_three_instalments_overdue(low_risk_tier())

    response = admin_client.get(
        reverse("admin:notifications_remindertemplate_preview", args=[template.pk]),
        {"customer": customer.ref, "at": "yesterday"},
    )

    assert response.status_code == 200
    assert response.context["preview"] is None
    assert "yesterday" in response.content.decode()
