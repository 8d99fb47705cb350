"""Twilio end to end: messages carry a StatusCallback URL, Twilio's signed status callbacks and inbound SMS
(STOP/START, 退订/TD) reach the product. The local server speaks Twilio's Messages API; callbacks are signed
the way Twilio signs them (the official library's algorithm, over the public URL and the form)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug import Response

from core.models import AuditEvent
from loans.models import Customer
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog

from .factories import make_customer, make_tier
from .factories_delivery import make_sent_notification
from .factories_reminders import (
    SHANGHAI,
    local,
    logs_of,
    pre_due_debtor,
)

pytestmark = pytest.mark.django_db

PUBLIC = "https://backoffice.lender.example"
TOKEN = "twilio-auth-token-0123"
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"
MESSAGES = "/2010-04-01/Accounts/AC0123456789/Messages.json"
FORM = "application/x-www-form-urlencoded"
Status = NotificationLog.Status


@pytest.fixture
def twilio(httpserver, settings):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_BASE_URL = httpserver.url_for("/")
    settings.TWILIO_ACCOUNT_SID = "AC0123456789"
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    settings.NOTIFICATION_BACKENDS = {
        "sms": "notifications.channels.TwilioSmsBackend",
        "push": "notifications.channels.OutboxBackend",
        "email": "notifications.channels.OutboxBackend",
    }
    return httpserver


def twilio_post(client, path, form, *, url=None, token=TOKEN, signature=None):
    """POST ``form`` as Twilio does: form-encoded, signed over the URL it was given and the parameters."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(url or PUBLIC + path, form)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return client.post(path, data=urlencode(form), content_type=FORM, headers=headers)


def status_form(sid, status, **extra):
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC0123456789",
        "MessageStatus": status,
        "SmsStatus": status,
        "To": "+8613800138000",
        "From": "+15005550006",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def inbound_form(phone, body):
    return {
        "MessageSid": "SM" + "f" * 32,
        "AccountSid": "AC0123456789",
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def test_each_message_asks_twilio_to_report_to_the_status_callback_url(twilio, client):
    customer, _ = pre_due_debtor("sms,push")
    seen = {}

    def messages_api(request):
        seen.update(request.form.to_dict())
        return Response(
            json.dumps({"sid": "SM" + "1" * 32, "status": "queued"}), 201, content_type="application/json"
        )

    twilio.expect_oneshot_request(MESSAGES, method="POST").respond_with_handler(messages_api)
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 10, 5))

    assert seen["StatusCallback"] == PUBLIC + STATUS_PATH
    [log] = logs_of(customer)
    assert (log.status, log.provider_message_id) == (Status.SENT, "SM" + "1" * 32)

    response = twilio_post(client, STATUS_PATH, status_form(log.provider_message_id, "delivered"))

    assert response.status_code == 204
    log.refresh_from_db()
    assert log.status == Status.DELIVERED and log.delivered_at is not None
    event = AuditEvent.objects.get(action="notifications.contact.delivered")
    assert event.actor == "webhook:twilio_status"


def test_without_a_public_address_no_callback_url_is_sent(twilio, settings):
    from notifications.channels import TwilioSmsBackend
    from notifications.sending import OutgoingMessage

    settings.PUBLIC_BASE_URL = ""
    seen = {}

    def messages_api(request):
        seen.update(request.form.to_dict())
        return Response(json.dumps({"sid": "SM" + "2" * 32}), 201, content_type="application/json")

    twilio.expect_oneshot_request(MESSAGES, method="POST").respond_with_handler(messages_api)
    TwilioSmsBackend().send(OutgoingMessage("sms", "+8613800138000", "", "hi", "key-1"))

    assert "StatusCallback" not in seen


@pytest.mark.parametrize("twilio_status", ["undelivered", "failed"])
def test_an_undelivered_or_failed_message_is_failed_with_twilios_error_code_and_falls_back(
    twilio, client, twilio_status
):
    customer = make_customer(tier=make_tier(channel_order="sms,push"))
    log = make_sent_notification(customer, provider_message_id="SM" + "3" * 32)

    response = twilio_post(
        client, STATUS_PATH, status_form(log.provider_message_id, twilio_status, ErrorCode="30003")
    )

    assert response.status_code == 204
    log.refresh_from_db()
    assert (log.status, log.reason) == (Status.FAILED, "provider_error")
    assert log.last_error == f"Twilio {twilio_status}, error 30003"
    fallback = NotificationLog.objects.get(customer=customer, channel="push")
    assert fallback.status == Status.PLANNED


def test_an_intermediate_status_or_an_unknown_message_changes_nothing(twilio, client):
    log = make_sent_notification(provider_message_id="SM" + "4" * 32)

    assert twilio_post(client, STATUS_PATH, status_form(log.provider_message_id, "sent")).status_code == 204
    assert twilio_post(client, STATUS_PATH, status_form("SM" + "9" * 32, "delivered")).status_code == 204

    log.refresh_from_db()
    assert log.status == Status.SENT
    assert not AuditEvent.objects.filter(action__startswith="notifications.contact.").exists()


@pytest.mark.parametrize(
    "how",
    ["missing", "another token", "another url", "tampered form"],
)
def test_a_callback_without_twilios_signature_is_refused_and_changes_nothing(twilio, client, how):
    log = make_sent_notification(provider_message_id="SM" + "5" * 32)
    form = status_form(log.provider_message_id, "failed", ErrorCode="30007")
    if how == "missing":
        response = twilio_post(client, STATUS_PATH, form, signature="")
    elif how == "another token":
        response = twilio_post(client, STATUS_PATH, form, token="not-the-token")
    elif how == "another url":
        response = twilio_post(client, STATUS_PATH, form, url="https://attacker.example" + STATUS_PATH)
    else:
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + STATUS_PATH, form)
        response = twilio_post(
            client, STATUS_PATH, {**form, "MessageStatus": "delivered"}, signature=signature
        )

    assert response.status_code == 403
    log.refresh_from_db()
    assert log.status == Status.SENT
    assert not AuditEvent.objects.filter(action__startswith="notifications.").exists()


def test_the_signature_of_twilios_sha256_shared_key_scheme_is_accepted(twilio, client):
    log = make_sent_notification(provider_message_id="SM" + "6" * 32)
    form = status_form(log.provider_message_id, "delivered")
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + STATUS_PATH, form, "HMAC_SHA256")

    response = client.post(
        STATUS_PATH,
        data=urlencode(form),
        content_type=FORM,
        headers={
            "X-Twilio-Signature": signature,
            "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        },
    )

    assert response.status_code == 204
    log.refresh_from_db()
    assert log.status == Status.DELIVERED


def test_a_get_is_not_allowed(twilio, client):
    assert client.get(STATUS_PATH).status_code == 405


# --- inbound SMS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["STOP", " stop ", "Stop.", "UNSUBSCRIBE"])
def test_stop_opts_the_customer_out_of_sms_at_once_and_twilio_answers_it_itself(twilio, client, body):
    customer = make_customer(phone="+8613800138123")

    response = twilio_post(client, INBOUND_PATH, inbound_form("+8613800138123", body))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/xml")
    assert response.content.decode().endswith("<Response />")
    customer.refresh_from_db()
    assert customer.opt_out_sms is True
    event = AuditEvent.objects.get(action="notifications.consent.opted_out")
    assert event.object_id == str(customer.pk)
    assert event.after == {"opt_out_sms": True, "channel": "sms", "source": "sms_reply:twilio"}
    assert event.actor == "webhook:twilio_inbound"


@pytest.mark.parametrize("body", ["退订", "TD", "td"])
def test_a_chinese_opt_out_is_applied_and_confirmed_in_the_customers_language(twilio, client, body):
    customer = make_customer(phone="+8613800138124", language="zh-hans")

    response = twilio_post(client, INBOUND_PATH, inbound_form("+8613800138124", body))

    customer.refresh_from_db()
    assert customer.opt_out_sms is True
    assert "<Message>您已退订短信提醒。回复 START 可恢复。</Message>" in response.content.decode()


def test_start_opts_back_in(twilio, client):
    customer = make_customer(phone="+8613800138125", opt_out_sms=True)

    twilio_post(client, INBOUND_PATH, inbound_form("+8613800138125", "START"))

    customer.refresh_from_db()
    assert customer.opt_out_sms is False
    assert AuditEvent.objects.filter(action="notifications.consent.opted_in").count() == 1


def test_a_repeated_stop_and_an_ordinary_reply_change_nothing_more(twilio, client):
    customer = make_customer(phone="+8613800138126")

    twilio_post(client, INBOUND_PATH, inbound_form("+8613800138126", "STOP"))
    twilio_post(client, INBOUND_PATH, inbound_form("+8613800138126", "STOP"))
    response = twilio_post(
        client, INBOUND_PATH, inbound_form("+8613800138126", "I will pay tomorrow, stop calling")
    )

    assert response.status_code == 200 and response.content.decode().endswith("<Response />")
    assert Customer.objects.get(pk=customer.pk).opt_out_sms is True
    assert AuditEvent.objects.filter(action__startswith="notifications.consent.").count() == 1


def test_an_unknown_number_is_answered_and_changes_nothing(twilio, client):
    customer = make_customer(phone="+8613800138127")

    response = twilio_post(client, INBOUND_PATH, inbound_form("+8613900000000", "STOP"))

    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.opt_out_sms is False


def test_an_unsigned_inbound_sms_is_refused(twilio, client):
    customer = make_customer(phone="+8613800138128")

    response = twilio_post(client, INBOUND_PATH, inbound_form("+8613800138128", "STOP"), token="wrong")

    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.opt_out_sms is False


def test_after_stop_the_next_reminder_goes_by_the_next_channel(twilio, client):
    customer, _ = pre_due_debtor("sms,push", phone="+8613800138129")

    twilio_post(client, INBOUND_PATH, inbound_form("+8613800138129", "STOP"))
    dispatch_due(local(SHANGHAI, 2026, 11, 28, 10, 5))

    [log] = logs_of(customer)
    assert (log.channel, log.status) == ("push", Status.SENT)
    assert not twilio.log  # nothing went to Twilio
