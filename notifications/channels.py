"""Delivery backends: one per channel, chosen by a dotted path in ``settings.NOTIFICATION_BACKENDS``.

Every backend has ``send(message: OutgoingMessage) -> SendResult`` and raises ``ProviderError`` when the
provider did not take the message. A backend may also have ``send_many(messages) -> list[SendResult |
ProviderError]`` (one outcome per message, in order) to send a batch at once; ``send_all`` uses it when present
and falls back to ``send`` one message after another. ``ProviderError.retryable`` tells the dispatcher whether trying again can
help (timeouts, connection errors, 5xx, 429) or not (any other 4xx: a bad number, a dead push token).

The HTTP backends and email send a batch concurrently (``<PROVIDER>_CONCURRENCY`` requests in flight over pooled
keep-alive connections), within the provider's rate (``<PROVIDER>_RATE_PER_SECOND``, one token bucket shared by
every worker: ``core.throttle``). A 429 holds the bucket off for its Retry-After and the message is tried again
in the batch; when the wait would be too long it comes back as a ``ProviderError`` with ``retry_after``, which the
dispatcher defers without spending an attempt.

Here: ``get_backend`` and the outbox (the default, in the database); the HTTP providers (JSON SMS gateway, Twilio,
FCM push) are in ``notifications.http_backends``, email in ``notifications.email_backend``, and every one of them is
importable from here too: settings name them ``notifications.channels.<Backend>``.

Each message carries an idempotency key (the notification's own), sent to the provider in the way its protocol
allows, so a retry after a crash between sending and recording is recognised by the provider, not re-sent.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from core.bulk import insert_rows

from .email_backend import EmailBackend
from .http_backends import (
    FCM_SCOPE,
    FcmPushBackend,
    HttpBackend,
    JsonSmsGatewayBackend,
    TwilioSmsBackend,
    _fcm_credentials,
    fcm_credentials,
    fcm_dead_token_reason,
)
from .sending import (
    ChannelBackend,
    OutgoingMessage,
    ProviderError,
    SendResult,
    is_retryable_status,
    key_as_uuid,
    public_url,
    send_each,
)

__all__ = [
    "FCM_SCOPE",
    "ChannelBackend",
    "EmailBackend",
    "FcmPushBackend",
    "HttpBackend",
    "JsonSmsGatewayBackend",
    "OutboxBackend",
    "TwilioSmsBackend",
    "_fcm_credentials",
    "fcm_credentials",
    "fcm_dead_token_reason",
    "get_backend",
    "is_retryable_status",
    "key_as_uuid",
    "public_url",
]


def get_backend(channel: str) -> ChannelBackend:
    """An instance of the backend configured for ``channel``.

    Raises ImproperlyConfigured for a channel without a backend or a backend missing its settings.
    """
    try:
        path = settings.NOTIFICATION_BACKENDS[channel]
    except KeyError:
        raise ImproperlyConfigured(f"No delivery backend configured for channel {channel!r}.") from None
    return import_string(path)()


class OutboxBackend:
    """The default: writes the message to ``OutboxMessage`` (visible in the admin) instead of sending it."""

    def send(self, message: OutgoingMessage) -> SendResult:
        from .models import OutboxMessage

        key = key_as_uuid(message.idempotency_key)
        existing = (
            OutboxMessage.objects.filter(idempotency_key=key)
            .values_list("provider_message_id", flat=True)
            .first()
        )
        if existing:
            return SendResult(provider_message_id=existing)
        try:
            with transaction.atomic():
                row = _outbox_row(message, key)
                row.save(force_insert=True)
        except IntegrityError:
            # A concurrent send with the same key won the insert: answer as the provider would, with its id.
            row = OutboxMessage.objects.get(idempotency_key=key)
        return SendResult(provider_message_id=row.provider_message_id)

    def send_many(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """The batch at once: one insert of its messages (a key already in the outbox is left out), and only
        when some were left out a second query reading the keys' provider ids back. A key already there
        answers with its first message, as a provider does. A subclass that overrides ``send`` (to add
        latency, to count calls) keeps being called once per message."""
        from .models import OutboxMessage

        if type(self).send is not OutboxBackend.send:
            return send_each(self, messages)
        keys = [key_as_uuid(m.idempotency_key) for m in messages]
        new: dict[uuid.UUID, dict] = {}
        for key, message in zip(keys, messages):
            if key not in new:
                new[key] = _outbox_values(message, key)
        inserted = insert_rows(
            OutboxMessage,
            list(OUTBOX_FIELDS),
            [tuple(values[name] for name in OUTBOX_FIELDS) for values in new.values()],
            ignore_conflicts=True,
        )
        if inserted == len(new):
            # Every message was stored as built: its provider id is the one it was given.
            ids = {key: values["provider_message_id"] for key, values in new.items()}
        else:
            # A key sent before (a re-send after a crash) or by a concurrent send keeps its first message.
            ids = dict(
                OutboxMessage.objects.filter(idempotency_key__any_of=list(new)).values_list(
                    "idempotency_key", "provider_message_id"
                )
            )
        return [
            SendResult(provider_message_id=ids[key])
            if key in ids
            else ProviderError("outbox: the message was not stored", retryable=True)
            for key in keys
        ]


OUTBOX_FIELDS = ("channel", "destination", "subject", "body", "idempotency_key", "provider_message_id")


def _outbox_values(message: OutgoingMessage, key: uuid.UUID) -> dict:
    """The outbox row of a message as the values of ``OUTBOX_FIELDS``, with a provider id of its own."""
    return {
        "channel": message.channel,
        "destination": message.destination,
        "subject": message.subject[:255],
        "body": message.body,
        "idempotency_key": key,
        "provider_message_id": f"outbox-{uuid.uuid4().hex}",
    }


def _outbox_row(message: OutgoingMessage, key: uuid.UUID):
    """The outbox row of a message (not saved), with a provider id of its own."""
    from .models import OutboxMessage

    return OutboxMessage(**_outbox_values(message, key))
