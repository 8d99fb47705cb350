from __future__ import annotations

import datetime as dt

import pytest

from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog
from notifications.planning import plan_contacts

from .factories import make_tier
from .factories_reminders import SHANGHAI, local, logs_of, make_debtor, make_rule, make_template, set_policy

pytestmark = pytest.mark.django_db

SEND_AT = local(SHANGHAI, 2026, 11, 28, 10, 5)


@pytest.fixture
def gateway(httpserver, settings):
    settings.NOTIFICATION_BACKENDS = {"sms": "notifications.channels.JsonSmsGatewayBackend"}
    settings.SMS_GATEWAY_URL = httpserver.url_for("/sms")
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    return httpserver


def plan_one():
    tier = make_tier(channel_order="sms")  # no other channel to fall back to after a failure
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    customer, _ = make_debtor(tier, due_date=dt.date(2026, 12, 1))
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    return customer


def test_a_gateway_that_fails_once_is_retried_with_the_same_idempotency_key(gateway):
    set_policy(retry_backoff_seconds=60, max_send_attempts=3)
    gateway.expect_ordered_request("/sms", method="POST").respond_with_json({"error": "busy"}, status=503)
    gateway.expect_ordered_request("/sms", method="POST").respond_with_json({"message_id": "gw-42"})
    customer = plan_one()

    dispatch_due(SEND_AT)
    [log] = logs_of(customer)
    assert (log.status, log.reason, log.attempts) == (NotificationLog.Status.DEFERRED, "provider_error", 1)
    assert "503" in log.last_error

    dispatch_due(SEND_AT + dt.timedelta(seconds=60))
    [log] = logs_of(customer)
    assert (log.status, log.provider_message_id, log.attempts) == (NotificationLog.Status.SENT, "gw-42", 2)
    keys = [request.headers["Idempotency-Key"] for request, _response in gateway.log]
    assert keys == [str(log.idempotency_key)] * 2
    assert gateway.log[1][0].json["to"] == customer.phone


def test_a_gateway_that_keeps_failing_ends_in_failed_provider_error(gateway):
    set_policy(retry_backoff_seconds=60, max_send_attempts=2)
    gateway.expect_request("/sms", method="POST").respond_with_json({"error": "down"}, status=500)
    customer = plan_one()

    dispatch_due(SEND_AT)
    dispatch_due(SEND_AT + dt.timedelta(seconds=60))
    dispatch_due(SEND_AT + dt.timedelta(hours=1))

    [log] = logs_of(customer)
    assert (log.status, log.reason, log.attempts) == (NotificationLog.Status.FAILED, "provider_error", 2)
    assert len(gateway.log) == 2
