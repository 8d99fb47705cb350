"""The delivery-receipt webhook: HMAC-signed receipts move sent contacts to delivered or failed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest

from core.models import AuditEvent
from notifications.models import NotificationLog
from notifications.receipts import record_delivery_receipt

from .factories_delivery import make_sent_notification

URL = "/webhooks/delivery-receipts/"
SECRET = "whsec-test-0123456789"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.DELIVERY_WEBHOOK_SECRET = SECRET


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, payload, *, signature: str | None = None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {} if signature == "" else {"X-Signature": signature if signature is not None else sign(body)}
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def test_a_signed_delivered_receipt_moves_sent_to_delivered(client):
    log = make_sent_notification(provider_message_id="gw-1001")

    response = post(
        client, {"provider_message_id": "gw-1001", "status": "delivered", "timestamp": "2026-11-28T01:00:05Z"}
    )

    assert response.status_code == 200
    assert response.json() == {"received": 1, "unknown": []}
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.DELIVERED
    assert log.delivered_at == dt.datetime(2026, 11, 28, 1, 0, 5, tzinfo=dt.timezone.utc)
    event = AuditEvent.objects.get(action="notifications.contact.delivered")
    assert event.object_id == str(log.pk)
    assert event.before["status"] == "sent"
    assert event.after["provider_message_id"] == "gw-1001"


def test_a_failed_receipt_marks_the_contact_failed_with_provider_error(client):
    log = make_sent_notification(provider_message_id="gw-1002")

    response = post(
        client, {"provider_message_id": "gw-1002", "status": "failed", "error": "30003 Unreachable handset"}
    )

    assert response.status_code == 200
    log.refresh_from_db()
    assert (log.status, log.reason, log.last_error) == (
        "failed",
        "provider_error",
        "30003 Unreachable handset",
    )
    assert log.delivered_at is None
    event = AuditEvent.objects.get(action="notifications.contact.failed")
    assert event.after["reason"] == "provider_error"
    assert event.after["error"] == "30003 Unreachable handset"


def test_a_list_of_receipts_is_applied_and_a_sha256_prefixed_signature_is_accepted(client):
    a = make_sent_notification(provider_message_id="gw-2001")
    b = make_sent_notification(provider_message_id="gw-2002")
    body = json.dumps(
        [
            {"provider_message_id": "gw-2001", "status": "delivered"},
            {"provider_message_id": "gw-2002", "status": "failed", "error": "blocked"},
            {"provider_message_id": "gw-unknown", "status": "delivered"},
        ]
    ).encode()

    response = post(client, None, raw=body, signature="sha256=" + sign(body))

    assert response.status_code == 200
    assert response.json() == {"received": 3, "unknown": ["gw-unknown"]}
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == ("delivered", "failed")


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "0" * 64,
        "sha256=" + "f" * 64,
        "not-hex-at-all",
    ],
)
def test_a_bad_or_missing_signature_is_refused_and_changes_nothing(client, signature):
    log = make_sent_notification(provider_message_id="gw-3001")

    response = post(client, {"provider_message_id": "gw-3001", "status": "delivered"}, signature=signature)

    assert response.status_code == 403
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.SENT
    assert not AuditEvent.objects.filter(action__startswith="notifications.contact.").exists()


def test_a_signature_made_with_another_secret_or_over_another_body_is_refused(client):
    log = make_sent_notification(provider_message_id="gw-3002")
    body = json.dumps({"provider_message_id": "gw-3002", "status": "failed"}).encode()
    tampered = json.dumps({"provider_message_id": "gw-3002", "status": "delivered"}).encode()

    assert post(client, None, raw=body, signature=sign(body, "another-secret")).status_code == 403
    assert post(client, None, raw=tampered, signature=sign(body)).status_code == 403
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.SENT


def test_without_a_configured_secret_every_receipt_is_refused(client, settings):
    settings.DELIVERY_WEBHOOK_SECRET = ""
    log = make_sent_notification(provider_message_id="gw-3003")
    body = json.dumps({"provider_message_id": "gw-3003", "status": "delivered"}).encode()

    response = post(client, None, raw=body, signature=sign(body, ""))

    assert response.status_code == 403
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.SENT


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"status": "delivered"}',
        b'{"provider_message_id": "gw-4001", "status": "read"}',
        b'{"provider_message_id": "gw-4001", "status": "delivered", "timestamp": "yesterday"}',
        b'[{"provider_message_id": "gw-4001", "status": "delivered"}, 42]',
    ],
)
def test_a_signed_but_malformed_body_is_a_bad_request_and_changes_nothing(client, raw):
    log = make_sent_notification(provider_message_id="gw-4001")

    response = post(client, None, raw=raw)

    assert response.status_code == 400
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.SENT


def test_a_repeated_receipt_changes_nothing_more(client):
    log = make_sent_notification(provider_message_id="gw-5001")
    payload = {
        "provider_message_id": "gw-5001",
        "status": "delivered",
        "timestamp": "2026-11-28T01:00:05+00:00",
    }

    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    # A late failure receipt for a delivered message does not rewrite history either.
    assert post(client, {"provider_message_id": "gw-5001", "status": "failed"}).status_code == 200

    log.refresh_from_db()
    assert log.status == NotificationLog.Status.DELIVERED
    assert AuditEvent.objects.filter(action__startswith="notifications.contact.").count() == 1


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


def test_a_receipt_for_a_contact_not_sent_leaves_it_alone():
    log = make_sent_notification(provider_message_id="", status=NotificationLog.Status.PLANNED, sent_at=None)

    assert record_delivery_receipt(provider_message_id="", status="delivered") is None
    assert record_delivery_receipt(provider_message_id="missing", status="delivered") is None
    log.refresh_from_db()
    assert log.status == NotificationLog.Status.PLANNED
    with pytest.raises(ValueError, match="read"):
        record_delivery_receipt(provider_message_id="x", status="read")


# --- Bounds: bad input is a 400 with its reason, and nothing of the request is applied --------------------


def assert_refused(response, reason: str, *logs) -> None:
    assert response.status_code == 400, response.content
    assert reason in response.json()["error"]
    for log in logs:
        log.refresh_from_db()
        assert log.status == NotificationLog.Status.SENT
    assert not AuditEvent.objects.filter(action__startswith="notifications.contact.").exists()


@pytest.mark.parametrize(
    "timestamp, reason",
    [
        ("1e300", "out of range"),
        ("-1e20", "out of range"),
        ("-1", "out of range"),
        ("Infinity", "not a JSON number"),
        ("-Infinity", "not a JSON number"),
        ("NaN", "not a JSON number"),
        ('"9999-12-31T00:00:00Z"', "out of range"),
        ('"0001-01-01T00:00:00Z"', "out of range"),
        ('"' + "2026-11-28T01:00:05Z" * 10 + '"', "ISO-8601"),
    ],
)
def test_a_timestamp_out_of_range_or_not_a_number_is_a_bad_request(client, timestamp, reason):
    log = make_sent_notification(provider_message_id="gw-6001")
    raw = (
        b'{"provider_message_id": "gw-6001", "status": "delivered", "timestamp": ' + timestamp.encode() + b"}"
    )

    assert_refused(post(client, None, raw=raw), reason, log)


def test_a_delivery_before_the_message_was_sent_is_a_bad_request_and_nothing_of_the_list_is_applied(client):
    first = make_sent_notification(provider_message_id="gw-6101")
    second = make_sent_notification(provider_message_id="gw-6102")  # sent 2026-11-28T01:00:00Z
    payload = [
        {"provider_message_id": "gw-6101", "status": "delivered", "timestamp": "2026-11-28T01:00:05Z"},
        {"provider_message_id": "gw-6102", "status": "delivered", "timestamp": "2026-11-28T00:59:59Z"},
    ]

    response = post(client, payload)

    assert_refused(
        response, "receipt 1: timestamp 2026-11-28T00:59:59+00:00 is before the message", first, second
    )
    with pytest.raises(ValueError, match="before the message"):
        record_delivery_receipt(
            provider_message_id="gw-6102", status="failed", at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
        )
    second.refresh_from_db()
    assert second.status == NotificationLog.Status.SENT


def test_deeply_nested_json_is_a_bad_request(client):
    log = make_sent_notification(provider_message_id="gw-6201")
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_refused(post(client, None, raw=deep), "nested too deeply", log)
    nested = {"provider_message_id": "gw-6201", "status": "delivered", "meta": {"a": [1, {"b": 2}]}}
    assert_refused(post(client, nested), "receipt 0: meta is nested", log)
    listed = [[{"provider_message_id": "gw-6201", "status": "delivered"}]]
    assert_refused(post(client, listed), "receipt 0: expected an object", log)


def test_an_error_text_over_the_bound_is_a_bad_request_and_never_stored(client):
    log = make_sent_notification(provider_message_id="gw-6301")
    payload = {"provider_message_id": "gw-6301", "status": "failed", "error": "x" * 501}

    assert_refused(post(client, payload), "error is longer than 500 characters", log)
    payload["error"] = "x" * 500
    assert post(client, payload).status_code == 200
    assert AuditEvent.objects.get(action="notifications.contact.failed").after["error"] == "x" * 500


def test_a_body_over_the_bound_is_a_bad_request_before_anything_is_read(client, settings):
    settings.DELIVERY_RECEIPTS_MAX_BYTES = 1000
    log = make_sent_notification(provider_message_id="gw-6401")
    payload = {"provider_message_id": "gw-6401", "status": "failed", "error": "y" * 990}

    assert_refused(post(client, payload), "larger than 1000 bytes", log)
    # Refused before the signature is even checked: an unsigned flood costs nothing either.
    assert_refused(post(client, payload, signature=""), "larger than 1000 bytes", log)


def test_more_receipts_than_the_bound_in_one_request_is_a_bad_request(client, settings):
    settings.DELIVERY_RECEIPTS_MAX_PER_REQUEST = 3
    logs = [make_sent_notification(provider_message_id=f"gw-65{i:02d}") for i in range(4)]
    payload = [{"provider_message_id": log.provider_message_id, "status": "delivered"} for log in logs]

    assert_refused(post(client, payload), "4 receipts in one request; at most 3", *logs)
    assert post(client, payload[:3]).status_code == 200


def test_a_large_batch_is_applied_in_chunks_of_short_transactions_with_few_queries(
    client, settings, monkeypatch, django_assert_max_num_queries
):
    from notifications import receipts

    settings.DELIVERY_RECEIPTS_CHUNK_SIZE = 20
    logs = [make_sent_notification(provider_message_id=f"gw-7{i:03d}") for i in range(50)]
    chunks = []
    apply_chunk = receipts._apply_chunk

    def spy(chunk, **kwargs):
        chunks.append(len(chunk))
        return apply_chunk(chunk, **kwargs)

    monkeypatch.setattr(receipts, "_apply_chunk", spy)
    payload = [
        {
            "provider_message_id": log.provider_message_id,
            "status": "delivered",
            "timestamp": "2026-11-28T02:00:00Z",
        }
        for log in logs
    ]

    with django_assert_max_num_queries(40):  # a few per chunk of 20, never a few per receipt
        response = post(client, payload)

    assert response.status_code == 200 and response.json() == {"received": 50, "unknown": []}
    assert chunks == [20, 20, 10]
    assert set(NotificationLog.objects.values_list("status", flat=True)) == {"delivered"}
    assert AuditEvent.objects.filter(action="notifications.contact.delivered").count() == 50
