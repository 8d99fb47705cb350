"""Delivery backends, each against a local server that speaks its provider's protocol."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from werkzeug import Response

from notifications.channels import (
    EmailBackend,
    FcmPushBackend,
    JsonSmsGatewayBackend,
    OutboxBackend,
    TwilioSmsBackend,
    get_backend,
)
from notifications.models import OutboxMessage
from notifications.sending import OutgoingMessage, ProviderError, SendResult, send_all


def sms(key: str | None = None, **kwargs) -> OutgoingMessage:
    kwargs.setdefault("channel", "sms")
    kwargs.setdefault("destination", "+8613800138000")
    kwargs.setdefault("subject", "")
    kwargs.setdefault("body", "您的还款 500.00 CNY 将于 2026-12-01 到期。")
    return OutgoingMessage(idempotency_key=key or str(uuid.uuid4()), **kwargs)


@pytest.fixture
def sms_gateway(httpserver, settings):
    settings.SMS_GATEWAY_URL = httpserver.url_for("/api/sms")
    settings.SMS_GATEWAY_TOKEN = "gw-token"
    settings.SMS_SENDER_ID = "LENDER"
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    return httpserver


@pytest.fixture
def twilio(httpserver, settings):
    settings.TWILIO_BASE_URL = httpserver.url_for("/")
    settings.TWILIO_ACCOUNT_SID = "AC0123456789"
    settings.TWILIO_AUTH_TOKEN = "twilio-secret"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    return httpserver


@pytest.fixture
def fcm(httpserver, settings):
    settings.FCM_BASE_URL = httpserver.url_for("/")
    settings.FCM_PROJECT_ID = "lender-app"
    settings.FCM_ACCESS_TOKEN = "ya29.test-access-token"
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    return httpserver


# --- backend selection and the outbox -------------------------------------------------------------------


def test_get_backend_builds_the_class_named_in_settings(settings):
    settings.NOTIFICATION_BACKENDS = {
        "sms": "notifications.channels.OutboxBackend",
        "email": "notifications.channels.EmailBackend",
    }
    assert isinstance(get_backend("sms"), OutboxBackend)
    assert isinstance(get_backend("email"), EmailBackend)
    with pytest.raises(ImproperlyConfigured, match="push"):
        get_backend("push")


def test_a_backend_missing_its_settings_fails_loudly(settings):
    settings.NOTIFICATION_BACKENDS = {"sms": "notifications.channels.JsonSmsGatewayBackend"}
    settings.SMS_GATEWAY_URL = ""
    with pytest.raises(ImproperlyConfigured, match="SMS_GATEWAY_URL"):
        get_backend("sms")


@pytest.mark.django_db
def test_the_outbox_records_the_message_once_per_idempotency_key():
    key = str(uuid.uuid4())
    first = OutboxBackend().send(sms(key, body="first"))
    again = OutboxBackend().send(sms(key, body="first"))
    other = OutboxBackend().send(sms(body="another"))

    assert again.provider_message_id == first.provider_message_id
    assert other.provider_message_id != first.provider_message_id
    assert OutboxMessage.objects.count() == 2
    row = OutboxMessage.objects.get(idempotency_key=key)
    assert (row.channel, row.destination, row.body) == ("sms", "+8613800138000", "first")


@pytest.mark.django_db
def test_the_outbox_accepts_keys_that_are_not_uuids():
    first = OutboxBackend().send(sms("autodebit-12-20261201"))
    again = OutboxBackend().send(sms("autodebit-12-20261201"))
    assert first == again
    assert OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_the_outbox_sends_a_batch_in_one_query_and_two_when_a_key_was_sent_before(
    django_assert_num_queries,
):
    # Django probes SQLite's JSON support once per connection, on first use: not a query of the batch.
    assert connection.features.supports_json_field
    fresh = [sms(body=f"fresh {i}") for i in range(3)]
    with django_assert_num_queries(1):
        sent = OutboxBackend().send_many(fresh)
    stored = dict(OutboxMessage.objects.values_list("body", "provider_message_id"))
    assert [o.provider_message_id for o in sent] == [stored[f"fresh {i}"] for i in range(3)]
    OutboxMessage.objects.all().delete()

    known = OutboxBackend().send(sms("autodebit-12-20261201", body="first"))
    batch = [sms("autodebit-12-20261201", body="again")] + [sms(body=f"message {i}") for i in range(40)]
    batch.append(sms(batch[-1].idempotency_key, body="the same key twice in one batch"))

    with django_assert_num_queries(2):
        outcomes = OutboxBackend().send_many(batch)

    assert outcomes[0] == known
    assert outcomes[-1] == outcomes[-2]
    assert len({o.provider_message_id for o in outcomes}) == 41
    assert OutboxMessage.objects.count() == 41
    assert OutboxMessage.objects.get(idempotency_key=known_key_uuid()).body == "first"
    by_key = dict(OutboxMessage.objects.values_list("body", "provider_message_id"))
    assert outcomes[5].provider_message_id == by_key["message 4"]
    assert outcomes[-1].provider_message_id == by_key["message 39"]


def known_key_uuid():
    from notifications.channels import key_as_uuid

    return key_as_uuid("autodebit-12-20261201")


class HalfBrokenBackend:
    """A backend without send_many: one message fails at the provider, one breaks the backend itself."""

    def send(self, message: OutgoingMessage) -> SendResult:
        if message.body == "bad number":
            raise ProviderError("invalid number", retryable=False, status_code=400)
        if message.body == "bug":
            raise KeyError("oops")
        return SendResult(provider_message_id=f"id-{message.idempotency_key}")


def test_send_all_falls_back_to_one_send_per_message_and_keeps_each_outcome():
    batch = [sms("a"), sms("b", body="bad number"), sms("c", body="bug"), sms("d")]

    outcomes = send_all(HalfBrokenBackend(), batch)

    assert outcomes[0] == SendResult("id-a") and outcomes[3] == SendResult("id-d")
    assert isinstance(outcomes[1], ProviderError) and outcomes[1].retryable is False
    assert isinstance(outcomes[2], ProviderError) and outcomes[2].retryable is True
    assert "KeyError" in str(outcomes[2])


def test_a_send_many_that_raises_fails_every_message_of_the_batch_retryably():
    class Down:
        def send_many(self, messages):
            raise ConnectionError("provider unreachable")

    outcomes = send_all(Down(), [sms("a"), sms("b")])

    assert [type(o) for o in outcomes] == [ProviderError, ProviderError]
    assert all(o.retryable and "ConnectionError" in str(o) for o in outcomes)


# --- JSON SMS gateway -------------------------------------------------------------------------------------


def test_the_json_gateway_posts_the_message_with_bearer_auth_and_idempotency_key(sms_gateway):
    key = str(uuid.uuid4())
    sms_gateway.expect_oneshot_request(
        "/api/sms",
        method="POST",
        headers={"Authorization": "Bearer gw-token", "Idempotency-Key": key},
        json={
            "to": "+8613800138000",
            "from": "LENDER",
            "text": "您的还款 500.00 CNY 将于 2026-12-01 到期。",
            "reference": key,
        },
    ).respond_with_json({"message_id": "gw-42", "status": "queued"}, status=202)

    result = JsonSmsGatewayBackend().send(sms(key))

    assert result.provider_message_id == "gw-42"
    sms_gateway.check_assertions()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (401, False), (404, False)],
)
def test_the_json_gateway_tells_retryable_from_permanent_errors(sms_gateway, status, retryable):
    sms_gateway.expect_request("/api/sms", method="POST").respond_with_json({"error": "nope"}, status=status)

    with pytest.raises(ProviderError) as excinfo:
        JsonSmsGatewayBackend().send(sms())

    assert excinfo.value.retryable is retryable
    assert excinfo.value.status_code == status
    assert str(status) in str(excinfo.value)


def test_a_gateway_that_does_not_answer_in_time_is_a_retryable_error(settings):
    # A socket that listens but never answers: the kernel accepts the connection, the reply never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        settings.SMS_GATEWAY_URL = f"http://127.0.0.1:{silent.getsockname()[1]}/api/sms"
        settings.PROVIDER_TIMEOUT_SECONDS = 0.2
        with pytest.raises(ProviderError, match="timed out") as excinfo:
            JsonSmsGatewayBackend().send(sms())
    assert excinfo.value.retryable is True


def test_a_gateway_that_refuses_connections_is_a_retryable_error(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.SMS_GATEWAY_URL = f"http://127.0.0.1:{port}/api/sms"
    with pytest.raises(ProviderError) as excinfo:
        JsonSmsGatewayBackend().send(sms())
    assert excinfo.value.retryable is True


def test_an_answer_without_a_message_id_is_a_permanent_error(sms_gateway):
    sms_gateway.expect_request("/api/sms", method="POST").respond_with_json({"status": "queued"})
    with pytest.raises(ProviderError, match="no message id") as excinfo:
        JsonSmsGatewayBackend().send(sms())
    assert excinfo.value.retryable is False


# --- Twilio-compatible API --------------------------------------------------------------------------------


def test_twilio_gets_a_form_post_with_basic_auth_and_its_idempotency_header(twilio, settings):
    settings.PUBLIC_BASE_URL = ""  # no status callback asked for (tests/test_twilio.py covers it)
    key = str(uuid.uuid4())
    seen = {}

    def handler(request):
        seen["form"] = request.form.to_dict()
        seen["content_type"] = request.headers["Content-Type"]
        seen["auth"] = request.headers["Authorization"]
        seen["idempotency"] = request.headers.get("I-Twilio-Idempotency-Token")
        return Response(
            json.dumps({"sid": "SM" + "a" * 32, "status": "queued"}),
            status=201,
            content_type="application/json",
        )

    twilio.expect_oneshot_request(
        "/2010-04-01/Accounts/AC0123456789/Messages.json", method="POST"
    ).respond_with_handler(handler)

    result = TwilioSmsBackend().send(sms(key, body="Repay 500.00 CNY by 2026-12-01"))

    twilio.check_assertions()
    assert result.provider_message_id == "SM" + "a" * 32
    assert seen["form"] == {
        "To": "+8613800138000",
        "From": "+15005550006",
        "Body": "Repay 500.00 CNY by 2026-12-01",
    }
    assert seen["content_type"].startswith("application/x-www-form-urlencoded")
    assert seen["auth"] == "Basic " + base64.b64encode(b"AC0123456789:twilio-secret").decode()
    assert seen["idempotency"] == key


def test_twilio_rejecting_a_number_is_permanent_and_its_rate_limit_is_retryable(twilio):
    path = "/2010-04-01/Accounts/AC0123456789/Messages.json"
    twilio.expect_oneshot_request(path).respond_with_json(
        {"code": 21211, "message": "Invalid 'To' Phone Number"}, status=400
    )
    twilio.expect_oneshot_request(path).respond_with_json(
        {"code": 20429, "message": "Too Many Requests"}, status=429
    )

    with pytest.raises(ProviderError, match="Invalid 'To' Phone Number") as permanent:
        TwilioSmsBackend().send(sms())
    with pytest.raises(ProviderError) as throttled:
        TwilioSmsBackend().send(sms())

    assert permanent.value.retryable is False
    assert throttled.value.retryable is True


# --- FCM HTTP v1 ------------------------------------------------------------------------------------------


def test_push_goes_to_fcm_v1_in_its_message_shape(fcm):
    key = str(uuid.uuid4())
    fcm.expect_oneshot_request(
        "/v1/projects/lender-app/messages:send",
        method="POST",
        headers={"Authorization": "Bearer ya29.test-access-token"},
        json={
            "message": {
                "token": "device-token-1",
                "notification": {"title": "Repayment due", "body": "500.00 CNY due on 2026-12-01"},
                "data": {"idempotency_key": key},
            }
        },
    ).respond_with_json({"name": "projects/lender-app/messages/0:1500415314455276%31bd1c9631bd1c96"})

    result = FcmPushBackend().send(
        OutgoingMessage(
            channel="push",
            destination="device-token-1",
            subject="Repayment due",
            body="500.00 CNY due on 2026-12-01",
            idempotency_key=key,
        )
    )

    fcm.check_assertions()
    assert result.provider_message_id == "projects/lender-app/messages/0:1500415314455276%31bd1c9631bd1c96"


def test_an_unregistered_push_token_is_permanent_and_an_unavailable_fcm_is_retryable(fcm):
    path = "/v1/projects/lender-app/messages:send"
    fcm.expect_oneshot_request(path).respond_with_json(
        {"error": {"code": 404, "status": "NOT_FOUND"}}, status=404
    )
    fcm.expect_oneshot_request(path).respond_with_json(
        {"error": {"code": 503, "status": "UNAVAILABLE"}}, status=503
    )
    message = OutgoingMessage(channel="push", destination="dead", subject="t", body="b", idempotency_key="k")

    with pytest.raises(ProviderError) as gone:
        FcmPushBackend().send(message)
    with pytest.raises(ProviderError) as unavailable:
        FcmPushBackend().send(message)

    assert gone.value.retryable is False
    assert unavailable.value.retryable is True


# --- Email over SMTP --------------------------------------------------------------------------------------


class RecordingSmtpHandler:
    def __init__(self):
        self.envelopes = []
        self.refuse_rcpt = ""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    handler = RecordingSmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "reminders@lender.example"
    yield handler
    controller.stop()


def email(key: str, **kwargs) -> OutgoingMessage:
    kwargs.setdefault("destination", "wang.fang@example.com")
    kwargs.setdefault("subject", "还款提醒")
    kwargs.setdefault("body", "王芳，您好：500.00 CNY 将于 2026-12-01 到期。")
    return OutgoingMessage(channel="email", idempotency_key=key, language="zh-hans", **kwargs)


def test_email_is_sent_over_smtp_with_a_message_id_derived_from_the_key(smtp_server):
    key = str(uuid.uuid4())

    first = EmailBackend().send(email(key))
    again = EmailBackend().send(email(key))

    assert first.provider_message_id == again.provider_message_id == f"{key}@lender.example"
    assert len(smtp_server.envelopes) == 2
    envelope = smtp_server.envelopes[0]
    assert envelope.mail_from == "reminders@lender.example"
    assert envelope.rcpt_tos == ["wang.fang@example.com"]
    parsed = message_from_bytes(envelope.original_content)
    assert parsed["Message-ID"] == f"<{key}@lender.example>"
    assert parsed["Content-Language"] == "zh-hans"
    assert "500.00 CNY" in parsed.get_payload(decode=True).decode("utf-8")
    assert message_from_bytes(smtp_server.envelopes[1].original_content)["Message-ID"] == parsed["Message-ID"]


@pytest.mark.parametrize(
    ("reply", "retryable"), [("550 5.1.1 No such user", False), ("451 4.3.0 Try again later", True)]
)
def test_a_refused_recipient_is_a_provider_error_permanent_or_not_as_smtp_says(smtp_server, reply, retryable):
    smtp_server.refuse_rcpt = reply

    with pytest.raises(ProviderError) as excinfo:
        EmailBackend().send(email(str(uuid.uuid4())))

    assert excinfo.value.retryable is retryable
    assert smtp_server.envelopes == []


def test_an_smtp_server_that_is_down_is_a_retryable_error(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    with pytest.raises(ProviderError) as excinfo:
        EmailBackend().send(email(str(uuid.uuid4())))
    assert excinfo.value.retryable is True
