"""Email through an ESP with django-anymail: the local server speaks Mailgun's messages API, and Mailgun's
signed tracking webhooks (delivered, permanent failure, complaint, unsubscribe) reach the product through
anymail's tracking signal. Plain SMTP stays the default."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib
import json

import pytest
from werkzeug import Response

from core.models import AuditEvent
from loans.models import Customer
from notifications.channels import EmailBackend
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog, OutboxMessage
from notifications.sending import OutgoingMessage, ProviderError

from .factories import make_customer, make_tier
from .factories_delivery import make_sent_notification
from .factories_reminders import (
    SHANGHAI,
    local,
    logs_of,
    pre_due_debtor,
)

pytestmark = pytest.mark.django_db

SIGNING_KEY = "mailgun-webhook-signing-key-0123"
TRACKING = "/webhooks/anymail/mailgun/tracking/"
MESSAGES = "/v3/lender.example/messages"
WHEN = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)
Status = NotificationLog.Status


@pytest.fixture
def mailgun(httpserver, settings):
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {
        "MAILGUN_API_KEY": "key-test-0123",
        "MAILGUN_API_URL": httpserver.url_for("/v3"),
        "MAILGUN_SENDER_DOMAIN": "lender.example",
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }
    settings.DEFAULT_FROM_EMAIL = "reminders@lender.example"
    return httpserver


def mailgun_accepts(httpserver, seen: list, message_id="<20261128023000.1.abcdef@lender.example>"):
    def handler(request):
        seen.append({"form": request.form.to_dict(), "auth": request.authorization})
        body = {"id": message_id, "message": "Queued. Thank you."}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request(MESSAGES, method="POST").respond_with_handler(handler)


def mailgun_event(client, event: str, message_id: str, recipient: str, *, key=SIGNING_KEY, **extra):
    """POST one event as Mailgun's webhooks do: JSON with a signature block (HMAC-SHA256 of timestamp+token)."""
    timestamp, token = "1795919400", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "timestamp": WHEN.timestamp(),
            "id": "Ase7i2zsRYeDXztHGENqRA",
            "recipient": recipient,
            "message": {"headers": {"message-id": message_id.strip("<>"), "to": recipient}},
            **extra,
        },
    }
    return client.post(TRACKING, data=json.dumps(payload), content_type="application/json")


def email(key="key-1", to="wang.fang@example.com") -> OutgoingMessage:
    return OutgoingMessage("email", to, "还款提醒", "500.00 CNY 将于 2026-12-01 到期。", key, "zh-hans")


def test_plain_smtp_is_the_default_email_backend(monkeypatch):
    # The test run itself mails to memory; the settings module says what a deployment gets without EMAIL_BACKEND.
    monkeypatch.delenv("EMAIL_BACKEND", raising=False)
    module = importlib.reload(importlib.import_module("backoffice.settings"))
    assert module.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend"
    assert module.NOTIFICATION_BACKENDS["email"] == "notifications.channels.OutboxBackend"


def test_an_esp_sends_through_its_api_and_its_message_id_is_the_provider_id(mailgun):
    seen: list = []
    mailgun_accepts(mailgun, seen)

    result = EmailBackend().send(email("7a0c1e2a-9a51-4c56-9d0e-0f3f1d2b7d11"))

    assert result.provider_message_id == "<20261128023000.1.abcdef@lender.example>"
    [request] = seen
    assert request["auth"].username == "api" and request["auth"].password == "key-test-0123"
    assert request["form"]["to"] == "wang.fang@example.com"
    assert request["form"]["subject"] == "还款提醒"
    assert request["form"]["h:Message-Id"] == "<7a0c1e2a-9a51-4c56-9d0e-0f3f1d2b7d11@lender.example>"


def test_an_esp_that_is_down_is_retryable_and_one_that_refuses_the_request_is_not(mailgun):
    mailgun.expect_ordered_request(MESSAGES).respond_with_json({"message": "busy"}, status=503)
    mailgun.expect_ordered_request(MESSAGES).respond_with_json(
        {"message": "'to' parameter is not valid"}, status=400
    )

    with pytest.raises(ProviderError) as down:
        EmailBackend().send(email())
    with pytest.raises(ProviderError) as refused:
        EmailBackend().send(email())

    assert (down.value.retryable, down.value.status_code) == (True, 503)
    assert (refused.value.retryable, refused.value.status_code) == (False, 400)


def test_a_delivered_event_marks_the_contact_delivered(mailgun, client):
    log = make_sent_notification(channel="email", provider_message_id="<m1@lender.example>")

    response = mailgun_event(client, "delivered", "<m1@lender.example>", log.destination)

    assert response.status_code == 200
    log.refresh_from_db()
    assert (log.status, log.delivered_at) == (Status.DELIVERED, WHEN)
    assert AuditEvent.objects.get(action="notifications.contact.delivered").actor == "webhook:anymail:mailgun"


def test_a_hard_bounce_fails_the_contact_forgets_the_address_and_falls_back(mailgun, client):
    customer = make_customer(tier=make_tier(channel_order="email,sms"), email="nobody@example.com")
    log = make_sent_notification(customer, channel="email", provider_message_id="<m2@lender.example>")

    response = mailgun_event(
        client,
        "failed",
        "<m2@lender.example>",
        "nobody@example.com",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist."}},
    )

    assert response.status_code == 200
    log.refresh_from_db()
    assert (log.status, log.reason) == (Status.FAILED, "provider_error")
    assert log.last_error == "Mailgun bounced: 5.1.1 The email account does not exist."
    assert Customer.objects.get(pk=customer.pk).email == ""
    forgotten = AuditEvent.objects.get(action="notifications.destination.forgotten")
    assert forgotten.before == {"email": "nobody@example.com"}
    fallback = NotificationLog.objects.get(customer=customer, channel="sms")
    assert fallback.status == Status.PLANNED


def test_a_bounce_reported_after_delivery_still_fails_the_contact(mailgun, client):
    customer = make_customer(tier=make_tier(channel_order="email,sms"), email="gone@example.com")
    log = make_sent_notification(
        customer, channel="email", status=Status.DELIVERED, provider_message_id="<m3@lender.example>"
    )

    mailgun_event(client, "failed", "<m3@lender.example>", "GONE@example.com", severity="permanent")

    log.refresh_from_db()
    assert log.status == Status.FAILED
    assert Customer.objects.get(pk=customer.pk).email == ""


def test_a_temporary_failure_changes_nothing(mailgun, client):
    customer = make_customer(email="full@example.com")
    log = make_sent_notification(customer, channel="email", provider_message_id="<m4@lender.example>")

    mailgun_event(client, "failed", "<m4@lender.example>", "full@example.com", severity="temporary")

    log.refresh_from_db()
    assert log.status == Status.SENT
    assert Customer.objects.get(pk=customer.pk).email == "full@example.com"
    assert not AuditEvent.objects.filter(action__startswith="notifications.").exists()


def test_a_complaint_opts_the_customer_out_of_email_and_falls_back(mailgun, client):
    customer = make_customer(tier=make_tier(channel_order="email,push"), email="annoyed@example.com")
    log = make_sent_notification(
        customer, channel="email", status=Status.DELIVERED, provider_message_id="<m5@lender.example>"
    )

    mailgun_event(client, "complained", "<m5@lender.example>", "annoyed@example.com")

    customer.refresh_from_db()
    assert customer.opt_out_email is True
    assert customer.email == "annoyed@example.com"  # the address works; the customer does not want it used
    consent = AuditEvent.objects.get(action="notifications.consent.opted_out")
    assert consent.after["source"] == "email_complaint:mailgun"
    log.refresh_from_db()
    assert (log.status, log.reason) == (Status.FAILED, "provider_error")
    assert NotificationLog.objects.get(customer=customer, channel="push").status == Status.PLANNED


def test_an_unsubscribe_at_the_esp_opts_the_customer_out_of_email(mailgun, client):
    customer = make_customer(email="bye@example.com")
    log = make_sent_notification(customer, channel="email", provider_message_id="<m6@lender.example>")

    mailgun_event(client, "unsubscribed", "<m6@lender.example>", "bye@example.com")

    assert Customer.objects.get(pk=customer.pk).opt_out_email is True
    log.refresh_from_db()
    assert log.status == Status.SENT


def test_a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(mailgun, client):
    customer = make_customer(email="victim@example.com")
    log = make_sent_notification(customer, channel="email", provider_message_id="<m7@lender.example>")

    response = mailgun_event(client, "complained", "<m7@lender.example>", "victim@example.com", key="forged")

    assert response.status_code == 400
    customer.refresh_from_db()
    log.refresh_from_db()
    assert (customer.opt_out_email, customer.email, log.status) == (False, "victim@example.com", Status.SENT)
    assert not AuditEvent.objects.filter(action__startswith="notifications.").exists()


def test_a_reminder_emailed_through_the_esp_bounces_and_goes_out_by_sms(mailgun, client, settings):
    settings.NOTIFICATION_BACKENDS = {
        "email": "notifications.channels.EmailBackend",
        "sms": "notifications.channels.OutboxBackend",
    }
    mailgun_accepts(mailgun, [], message_id="<reminder-1@lender.example>")
    customer, _ = pre_due_debtor("email,sms")
    send_at = local(SHANGHAI, 2026, 11, 28, 10, 5)
    dispatch_due(send_at)
    [emailed] = logs_of(customer)
    assert (emailed.status, emailed.provider_message_id) == (Status.SENT, "<reminder-1@lender.example>")

    mailgun_event(client, "failed", "<reminder-1@lender.example>", customer.email, severity="permanent")
    dispatch_due(WHEN + dt.timedelta(minutes=1))  # the bounce came at WHEN: the fallback is due then

    emailed.refresh_from_db()
    assert emailed.status == Status.FAILED
    sms = NotificationLog.objects.get(customer=customer, channel="sms")
    assert (sms.status, sms.destination) == (Status.SENT, customer.phone)
    assert OutboxMessage.objects.get().channel == "sms"


def test_an_event_timed_a_little_before_our_record_of_the_send_is_applied_not_refused(mailgun, client):
    # The ESP's clock and ours differ: its "delivered" may carry a time before the sent_at we recorded.
    log = make_sent_notification(
        channel="email", provider_message_id="<m8@lender.example>", sent_at=WHEN + dt.timedelta(seconds=30)
    )

    response = mailgun_event(client, "delivered", "<m8@lender.example>", log.destination)

    assert response.status_code == 200
    log.refresh_from_db()
    assert log.status == Status.DELIVERED and log.delivered_at >= log.sent_at
