"""A message that failed or was not delivered falls back to the next channel of the tier, through every gate."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings

from core.models import AuditEvent
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, OutboxMessage
from notifications.receipts import record_delivery_receipt
from notifications.sending import OutgoingMessage, ProviderError, SendResult

from .factories import make_user
from .factories_collections import pay
from .factories_delivery import make_sent_notification
from .factories_reminders import (
    SHANGHAI,
    local,
    logs_of,
    pre_due_debtor,
)

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status
Reason = NotificationLog.Reason
DUE = dt.date(2026, 12, 1)
PLAN_AT = local(SHANGHAI, 2026, 11, 28, 0, 30)
SEND_AT = local(SHANGHAI, 2026, 11, 28, 10, 5)


class RejectingBackend:
    """A provider that refuses every message for good (a number it cannot reach)."""

    def send(self, message: OutgoingMessage) -> SendResult:
        raise ProviderError("21211 invalid 'To' number", retryable=False, status_code=400)


def sent_sms_reminder(*, channel_order="sms,push,email", cap=3, **customer_kwargs):
    """A customer whose pre-due SMS went out at SEND_AT through the outbox."""
    customer, installments = pre_due_debtor(
        channel_order, tier_kwargs={"max_contacts_per_week": cap}, plan_at=PLAN_AT, **customer_kwargs
    )
    dispatch_due(SEND_AT)
    [log] = logs_of(customer)
    assert log.status == Status.SENT
    return customer, installments, log


def test_it_sends_the_next_channel_after_an_undelivered_sms():
    customer, _, sms = sent_sms_reminder()
    failed_at = SEND_AT + dt.timedelta(minutes=2)

    record_delivery_receipt(
        provider_message_id=sms.provider_message_id, status="failed", error="30003 Unreachable", at=failed_at
    )
    dispatch_due(failed_at + dt.timedelta(minutes=1))

    sms_row, push_row = sorted(logs_of(customer), key=lambda log: log.id)
    assert (sms_row.channel, sms_row.status, sms_row.reason) == ("sms", Status.FAILED, Reason.PROVIDER_ERROR)
    assert (push_row.channel, push_row.status, push_row.destination) == (
        "push",
        Status.SENT,
        customer.push_token,
    )
    assert push_row.scheduled_for == failed_at
    assert list(push_row.items.values_list("installment_id", flat=True)) == list(
        sms_row.items.values_list("installment_id", flat=True)
    )
    assert OutboxMessage.objects.filter(channel="push", destination=customer.push_token).count() == 1


def test_the_timeline_shows_the_chain_from_the_failed_message_to_its_fallback(client):
    customer, _, sms = sent_sms_reminder()

    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=SEND_AT)

    push_row = NotificationLog.objects.get(customer=customer, channel="push")
    fell_back = AuditEvent.objects.get(action="notifications.contact.fell_back")
    assert fell_back.object_id == str(sms.id)
    assert fell_back.after["fallback_id"] == push_row.id and fell_back.after["channel"] == "push"
    planned = AuditEvent.objects.get(action="notifications.contact.planned", object_id=str(push_row.id))
    assert planned.after["fallback_of"] == sms.id and planned.after["failed_channel"] == "sms"

    operator = make_user("operator")
    operator.user_permissions.add(Permission.objects.get(codename="view_notificationlog"))
    client.force_login(operator)
    html = client.get(f"/admin/loans/customer/{customer.pk}/timeline/").content.decode()
    sms_html = html.split(f'id="contact-{sms.id}"')[1].split('id="contact-')[0]
    push_html = html.split(f'id="contact-{push_row.id}"')[1].split('id="contact-')[0]
    assert f'href="#contact-{push_row.id}">followed by #{push_row.id} on the next channel' in sms_html
    assert f'href="#contact-{sms.id}">instead of #{sms.id}, which failed' in push_html


def test_a_repeated_failed_receipt_plans_one_fallback():
    customer, _, sms = sent_sms_reminder()

    for _ in range(2):
        record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=SEND_AT)

    assert NotificationLog.objects.filter(customer=customer, channel="push").count() == 1
    assert AuditEvent.objects.filter(action="notifications.contact.fell_back").count() == 1


def test_a_failure_reported_at_night_waits_for_the_contact_window():
    customer, _, sms = sent_sms_reminder()
    night = local(SHANGHAI, 2026, 11, 28, 22, 30)

    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=night)
    dispatch_due(night + dt.timedelta(minutes=1))

    push_row = NotificationLog.objects.get(customer=customer, channel="push")
    assert (push_row.status, push_row.reason) == (Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW)
    assert push_row.scheduled_for == local(SHANGHAI, 2026, 11, 29, 8, 0)
    assert not OutboxMessage.objects.filter(channel="push").exists()


def test_the_fallback_respects_the_weekly_cap():
    customer, _, sms = sent_sms_reminder(cap=1)
    # Another contact reached the customer meanwhile; the failed SMS itself does not count.
    make_sent_notification(customer, channel="email", status=Status.DELIVERED, sent_at=SEND_AT)
    failed_at = SEND_AT + dt.timedelta(minutes=5)

    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=failed_at)
    dispatch_due(failed_at)

    push_row = NotificationLog.objects.get(customer=customer, channel="push")
    assert (push_row.status, push_row.reason) == (Status.SUPPRESSED, Reason.FREQUENCY_CAP)


def test_the_fallback_skips_an_opted_out_channel_and_one_without_destination():
    customer, _, sms = sent_sms_reminder(opt_out_push=True)

    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=SEND_AT)
    dispatch_due(SEND_AT + dt.timedelta(minutes=1))

    fallback = NotificationLog.objects.exclude(id=sms.id).get(customer=customer)
    assert (fallback.channel, fallback.status, fallback.destination) == ("email", Status.SENT, customer.email)


def test_nothing_is_planned_when_no_channel_of_the_tier_is_left():
    customer, _, sms = sent_sms_reminder(channel_order="sms,push", push_token="")

    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=SEND_AT)

    assert [log.id for log in logs_of(customer)] == [sms.id]
    assert not AuditEvent.objects.filter(action="notifications.contact.fell_back").exists()


def test_a_fallback_of_a_paid_reminder_is_cancelled():
    customer, installments, sms = sent_sms_reminder()
    record_delivery_receipt(provider_message_id=sms.provider_message_id, status="failed", at=SEND_AT)

    pay(installments[0].loan, installments[0].amount_due, SEND_AT)
    dispatch_due(SEND_AT + dt.timedelta(minutes=1))

    push_row = NotificationLog.objects.get(customer=customer, channel="push")
    assert (push_row.status, push_row.reason) == (Status.CANCELLED, Reason.PAID)
    assert not OutboxMessage.objects.filter(channel="push").exists()


def test_a_message_the_provider_refuses_falls_back_in_the_same_run():
    customer, _ = pre_due_debtor("sms,email", plan_at=PLAN_AT)

    with override_settings(
        NOTIFICATION_BACKENDS={
            "sms": "tests.test_fallback.RejectingBackend",
            "email": "notifications.channels.OutboxBackend",
        }
    ):
        dispatch_due(SEND_AT)
        dispatch_due(SEND_AT)

    sms_row, email_row = sorted(logs_of(customer), key=lambda log: log.id)
    assert (sms_row.status, sms_row.last_error) == (Status.FAILED, "21211 invalid 'To' number")
    assert (email_row.channel, email_row.status) == ("email", Status.SENT)
    assert OutboxMessage.objects.get().destination == customer.email
