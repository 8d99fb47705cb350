"""A receipt that comes before the send is recorded (a fast provider, a batch still at the gateway) is parked and
applied when the message's send is recorded; one that never finds its message is dropped after a while."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from core.models import AuditEvent
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, ParkedReceipt
from notifications.receipts import record_delivery_receipt, run_parked_receipts
from notifications.sending import OutgoingMessage, SendResult

from .factories_delivery import make_sent_notification
from .factories_reminders import pre_due_debtor
from .test_dispatcher import PLAN_AT, SEND_AT, pre_due_setup

pytestmark = pytest.mark.django_db

Status = NotificationLog.Status


class FastProviderBackend:
    """A provider whose receipt reaches the webhook before the sending call returns to the dispatcher."""

    receipt_status = "delivered"

    def send(self, message: OutgoingMessage) -> SendResult:
        provider_id = f"fast-{message.idempotency_key}"
        record_delivery_receipt(
            provider_message_id=provider_id,
            status=self.receipt_status,
            error="" if self.receipt_status == "delivered" else "handset unreachable",
            at=SEND_AT + dt.timedelta(seconds=2),
            now=SEND_AT + dt.timedelta(seconds=2),
        )
        return SendResult(provider_message_id=provider_id)


class FastFailingProviderBackend(FastProviderBackend):
    receipt_status = "failed"


@override_settings(NOTIFICATION_BACKENDS={"sms": "tests.test_early_receipts.FastProviderBackend"})
def test_a_receipt_that_comes_before_the_send_is_recorded_is_applied_when_it_is():
    customer, _ = pre_due_setup()

    dispatch_due(SEND_AT)

    log = NotificationLog.objects.get(customer=customer)
    assert log.status == Status.DELIVERED
    assert log.delivered_at == SEND_AT + dt.timedelta(seconds=2)
    assert not ParkedReceipt.objects.exists()
    assert AuditEvent.objects.filter(action="notifications.contact.delivered", object_id=str(log.pk)).exists()


@override_settings(NOTIFICATION_BACKENDS={"sms": "tests.test_early_receipts.FastFailingProviderBackend"})
def test_an_early_failed_receipt_fails_the_contact_and_falls_back_to_the_next_channel():
    customer, _ = pre_due_debtor("sms,email", plan_at=PLAN_AT)

    dispatch_due(SEND_AT)

    sms = NotificationLog.objects.get(customer=customer, channel="sms")
    assert (sms.status, sms.reason, sms.last_error) == (
        Status.FAILED,
        "provider_error",
        "handset unreachable",
    )
    email = NotificationLog.objects.get(customer=customer, channel="email")
    assert (email.status, email.scheduled_for) == (Status.PLANNED, SEND_AT + dt.timedelta(seconds=2))


def test_an_unknown_receipt_is_parked_and_reported_unknown():
    assert record_delivery_receipt(provider_message_id="gw-later", status="delivered", now=SEND_AT) is None

    parked = ParkedReceipt.objects.get()
    assert (parked.provider_message_id, parked.status, parked.received_at) == (
        "gw-later",
        "delivered",
        SEND_AT,
    )


def test_the_periodic_pass_applies_parked_receipts_whose_message_is_now_known():
    record_delivery_receipt(provider_message_id="gw-3001", status="delivered", now=SEND_AT)
    log = make_sent_notification(provider_message_id="gw-3001")

    result = run_parked_receipts(now=SEND_AT + dt.timedelta(minutes=10))

    log.refresh_from_db()
    assert log.status == Status.DELIVERED
    assert result == {"applied": 1, "dropped": 0, "waiting": 0}
    assert not ParkedReceipt.objects.exists()


def test_a_parked_receipt_that_never_finds_its_message_is_dropped_after_the_retention(settings):
    settings.PARKED_RECEIPT_RETENTION_HOURS = 48
    record_delivery_receipt(provider_message_id="gw-never", status="delivered", now=SEND_AT)
    record_delivery_receipt(
        provider_message_id="gw-soon", status="delivered", now=SEND_AT + dt.timedelta(hours=47)
    )

    result = run_parked_receipts(now=SEND_AT + dt.timedelta(hours=48, seconds=1))

    assert result == {"applied": 0, "dropped": 1, "waiting": 1}
    assert list(ParkedReceipt.objects.values_list("provider_message_id", flat=True)) == ["gw-soon"]


def test_a_parked_receipt_timed_before_the_send_is_dropped_without_undoing_the_send():
    record_delivery_receipt(
        provider_message_id="gw-3002", status="delivered", at=SEND_AT - dt.timedelta(hours=2), now=SEND_AT
    )
    log = make_sent_notification(provider_message_id="gw-3002")
    log.sent_at = SEND_AT
    log.save(update_fields=["sent_at"])

    result = run_parked_receipts(now=SEND_AT + dt.timedelta(minutes=1))

    log.refresh_from_db()
    assert log.status == Status.SENT
    assert result == {"applied": 0, "dropped": 1, "waiting": 0}
