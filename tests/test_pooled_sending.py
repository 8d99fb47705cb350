"""HTTP providers and email take a batch concurrently, over kept-alive connections, within their rate limit."""

from __future__ import annotations

import datetime as dt
import random
import socket
import time
import uuid

import pytest
from aiosmtpd.controller import Controller

from core import throttle
from core.models import AuditEvent
from notifications.channels import EmailBackend, JsonSmsGatewayBackend, OutboxBackend
from notifications.dispatch import claim_lease, dispatch_due
from notifications.models import NotificationLog
from notifications.planning import plan_contacts
from notifications.sending import (
    OutgoingMessage,
    ProviderError,
    SendResult,
    retry_after_seconds,
    send_all,
    start_send_all,
)

from .factories import make_tier
from .factories_reminders import SHANGHAI, local, logs_of, make_debtor, make_rule, make_template, set_policy
from .latency_gateway import LatencyGateway

SEND_AT = local(SHANGHAI, 2026, 11, 28, 10, 5)


def sms(key: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        channel="sms",
        destination="+8613800138000",
        subject="",
        body="您的还款 500.00 CNY 将于 2026-12-01 到期。",
        idempotency_key=key or str(uuid.uuid4()),
    )


@pytest.fixture(autouse=True)
def _buckets_of_this_test(monkeypatch):
    """A provider's hold-off lasts in the process: a test's 429 must not hold the next test off."""
    monkeypatch.setattr(throttle, "_local_buckets", {})


@pytest.fixture
def gateway_settings(settings):
    settings.REDIS_URL = ""
    settings.NOTIFICATION_BACKENDS = {"sms": "notifications.channels.JsonSmsGatewayBackend"}
    settings.SMS_GATEWAY_TOKEN = ""
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    settings.SMS_GATEWAY_CONCURRENCY = 4
    settings.SMS_GATEWAY_RATE_PER_SECOND = 0
    settings.PROVIDER_MAX_THROTTLE_WAIT_SECONDS = 30
    return settings


def start_gateway(settings, **kwargs) -> LatencyGateway:
    gateway = LatencyGateway(**kwargs).start()
    settings.SMS_GATEWAY_URL = gateway.url
    return gateway


@pytest.fixture
def slow_gateway(gateway_settings):
    gateway = start_gateway(gateway_settings, latency=0.5)
    yield gateway
    gateway.stop()


def test_a_batch_goes_out_concurrently_up_to_the_providers_concurrency(slow_gateway):
    batch = [sms() for _ in range(8)]

    outcomes = JsonSmsGatewayBackend().send_many(batch)

    assert [o.provider_message_id for o in outcomes] == [
        slow_gateway.delivered[m.idempotency_key]["message_id"] for m in batch
    ]
    assert slow_gateway.max_in_flight == 4


def test_connections_are_kept_alive_across_messages_and_batches(slow_gateway):
    JsonSmsGatewayBackend().send_many([sms() for _ in range(8)])
    JsonSmsGatewayBackend().send_many([sms() for _ in range(8)])

    assert slow_gateway.posts == 16
    assert len(slow_gateway.connections) <= 4  # one per request in flight, not one per message


def test_a_batch_to_an_http_provider_is_sent_while_the_caller_goes_on(slow_gateway):
    batch = [sms() for _ in range(4)]

    sending = start_send_all(JsonSmsGatewayBackend(), batch)
    assert not sending.done()  # the gateway takes half a second; the dispatcher prepares its next batch

    assert [o.provider_message_id for o in sending.result(timeout=30)] == [
        slow_gateway.delivered[m.idempotency_key]["message_id"] for m in batch
    ]


@pytest.mark.django_db
def test_a_batch_to_the_outbox_is_written_at_once_on_the_callers_connection():
    sending = start_send_all(OutboxBackend(), [sms()])

    assert sending.done() and isinstance(sending.result()[0], SendResult)


def test_the_rate_limit_spreads_a_batch_over_time(gateway_settings):
    gateway_settings.SMS_GATEWAY_RATE_PER_SECOND = 4  # a burst of 4, then one every quarter second
    gateway_settings.SMS_GATEWAY_CONCURRENCY = 8
    gateway = start_gateway(gateway_settings, latency=0)
    try:
        outcomes = JsonSmsGatewayBackend().send_many([sms() for _ in range(8)])
    finally:
        gateway.stop()

    assert all(isinstance(o, SendResult) for o in outcomes)
    times = sorted(gateway.post_times)
    assert (
        times[-1] - times[0] >= 0.9
    )  # the last 4 waited for tokens: 1 s at 4 a second (less a little slack)


def test_a_429_holds_every_sender_off_for_its_retry_after_and_the_message_goes_out_in_the_batch(
    gateway_settings,
):
    gateway_settings.SMS_GATEWAY_CONCURRENCY = 1
    throttled = sms()
    gateway = start_gateway(
        gateway_settings,
        latency=0,
        script=lambda key, tries: (
            (429, {"Retry-After": "1"}, {"error": "slow down"})
            if key == throttled.idempotency_key and tries == 1
            else None
        ),
    )
    batch = [sms(), throttled, sms()]
    try:
        outcomes = JsonSmsGatewayBackend().send_many(batch)
    finally:
        gateway.stop()

    assert all(isinstance(o, SendResult) for o in outcomes)
    assert gateway.tries[throttled.idempotency_key] == 2
    refused_at, retried_at, next_at = gateway.post_times[1:]
    assert retried_at - refused_at >= 0.95  # nobody posted before the Retry-After was over
    assert next_at > retried_at


def test_a_retry_after_longer_than_the_batch_may_wait_comes_back_throttled(gateway_settings):
    gateway_settings.PROVIDER_MAX_THROTTLE_WAIT_SECONDS = 0.5
    gateway = start_gateway(
        gateway_settings, latency=0, script=lambda key, tries: (429, {"Retry-After": "120"}, {})
    )
    try:
        [outcome] = JsonSmsGatewayBackend().send_many([sms()])
    finally:
        gateway.stop()

    assert isinstance(outcome, ProviderError)
    assert (outcome.status_code, outcome.retryable, outcome.retry_after) == (429, True, 120.0)


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 1.0
    assert retry_after_seconds("soon") == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now


def plan_debtors(n: int) -> list:
    tier = make_tier(channel_order="sms")
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customers = [make_debtor(tier, due_date=dt.date(2026, 12, 1))[0] for _ in range(n)]
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    return customers


@pytest.mark.django_db
def test_a_throttled_contact_is_deferred_by_its_retry_after_without_spending_an_attempt(gateway_settings):
    gateway_settings.PROVIDER_MAX_THROTTLE_WAIT_SECONDS = 0.5
    set_policy(max_send_attempts=1)  # any counted failure would fail it for good
    [customer] = plan_debtors(1)
    answers = {"status": 429}
    gateway = start_gateway(
        gateway_settings,
        latency=0,
        script=lambda key, tries: (429, {"Retry-After": "2"}, {}) if answers["status"] == 429 else None,
    )
    try:
        dispatch_due(SEND_AT)
        [log] = logs_of(customer)
        assert (log.status, log.reason, log.attempts) == (
            NotificationLog.Status.DEFERRED,
            "provider_error",
            0,
        )
        assert log.scheduled_for == SEND_AT + dt.timedelta(seconds=2)
        assert "429" in log.last_error

        answers["status"] = 200
        dispatch_due(SEND_AT + dt.timedelta(seconds=2))
    finally:
        gateway.stop()
    [log] = logs_of(customer)
    assert (log.status, log.attempts) == (NotificationLog.Status.SENT, 1)


@pytest.mark.django_db
def test_outcomes_of_a_concurrent_batch_are_recorded_in_the_batchs_order(gateway_settings):
    """Answers come back in any order, batches overlap; the log and the audit trail follow the claimed order."""
    gateway_settings.SMS_GATEWAY_CONCURRENCY = 6
    customers = plan_debtors(12)
    shuffle = random.Random(7)
    delays = {}

    def jitter(key, tries):
        time.sleep(delays.setdefault(key, shuffle.uniform(0, 0.2)))
        return (400, {}, {"error": "bad number"}) if uuid.UUID(key).int % 4 == 0 else None

    gateway = start_gateway(gateway_settings, latency=0, script=jitter)
    try:
        # Three batches: each is recorded once the next one was claimed, prepared and handed to the gateway.
        totals = dispatch_due(SEND_AT, batch_size=5)
    finally:
        gateway.stop()

    assert gateway.max_in_flight <= 6  # two batches at the gateway at once still share its concurrency

    logs = list(NotificationLog.objects.order_by("scheduled_for", "id"))
    assert len(logs) == len(customers)
    assert totals["sent"] + totals.get("failed", 0) == len(customers)
    events = AuditEvent.objects.filter(
        action__in=["notifications.contact.sent", "notifications.contact.failed"]
    ).order_by("seq")
    assert [e.object_id for e in events] == [str(log.id) for log in logs]
    for log in logs:
        if log.status == NotificationLog.Status.SENT:
            assert log.provider_message_id == gateway.delivered[str(log.idempotency_key)]["message_id"]


def test_the_claim_lease_covers_a_batch_sent_concurrently_within_the_rate(gateway_settings):
    gateway_settings.DISPATCH_CLAIM_LEASE_SECONDS = 1
    gateway_settings.PROVIDER_TIMEOUT_SECONDS = 2
    gateway_settings.SMS_GATEWAY_CONCURRENCY = 10
    gateway_settings.SMS_GATEWAY_RATE_PER_SECOND = 50
    gateway_settings.PROVIDER_MAX_THROTTLE_WAIT_SECONDS = 30

    # 50 rounds of 10 requests timing out (3 s each), 500 messages at 50 a second, one longest 429 wait.
    assert claim_lease(500) == dt.timedelta(seconds=50 * 3 + 10 + 30)

    gateway_settings.NOTIFICATION_BACKENDS = {
        "sms": "notifications.channels.JsonSmsGatewayBackend",
        "email": "notifications.channels.OutboxBackend",  # one message after another
    }
    assert claim_lease(500) == dt.timedelta(seconds=500 * 3)


# --- email -------------------------------------------------------------------------------------------------


class SessionCountingHandler:
    def __init__(self) -> None:
        self.peers: set = set()
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.peers.add(session.peer)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sessions(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = SessionCountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.REDIS_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = False, "", ""
    settings.EMAIL_CONCURRENCY, settings.EMAIL_RATE_PER_SECOND = 2, 0
    yield handler
    controller.stop()


def test_an_email_batch_shares_a_few_smtp_sessions(smtp_sessions):
    batch = [
        OutgoingMessage(
            channel="email",
            destination=f"customer{i}@example.com",
            subject="还款提醒",
            body="500.00 CNY 将于 2026-12-01 到期。",
            idempotency_key=str(uuid.uuid4()),
        )
        for i in range(6)
    ]

    outcomes = send_all(EmailBackend(), batch)

    assert all(isinstance(o, SendResult) for o in outcomes)
    assert [o.provider_message_id.partition("@")[0] for o in outcomes] == [m.idempotency_key for m in batch]
    assert len(smtp_sessions.envelopes) == 6
    assert len(smtp_sessions.peers) <= 2  # one session per sending thread, not one per message
