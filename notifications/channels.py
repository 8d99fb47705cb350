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

Each message carries an idempotency key (the notification's own), sent to the provider in the way its protocol
allows, so a retry after a crash between sending and recording is recognised by the provider, not re-sent.
"""

from __future__ import annotations

import os
import smtplib
import threading
import uuid
from typing import Any

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.module_loading import import_string

from core.throttle import bucket_for

from .sending import (
    ChannelBackend,
    OutgoingMessage,
    ProviderError,
    SendLimits,
    SendResult,
    pooled_session,
    provider_slots,
    retry_after_seconds,
    send_concurrently,
    send_each,
)

# Identifiers that are not UUIDs still map to one stable UUID (the outbox stores keys as UUIDs).
_KEY_NAMESPACE = uuid.UUID("6f1d3a52-3f0e-4d7c-9d44-1d0c5e2b8a10")


def get_backend(channel: str) -> ChannelBackend:
    """An instance of the backend configured for ``channel``.

    Raises ImproperlyConfigured for a channel without a backend or a backend missing its settings.
    """
    try:
        path = settings.NOTIFICATION_BACKENDS[channel]
    except KeyError:
        raise ImproperlyConfigured(f"No delivery backend configured for channel {channel!r}.") from None
    return import_string(path)()


def key_as_uuid(idempotency_key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(idempotency_key))
    except ValueError:
        return uuid.uuid5(_KEY_NAMESPACE, str(idempotency_key))


def _required(name: str) -> str:
    value = getattr(settings, name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set to use this delivery backend.")
    return value


def public_url(view_name: str) -> str:
    """The address a provider calls back for ``view_name``: ``PUBLIC_BASE_URL`` plus the view's path."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(view_name)


def is_retryable_status(status_code: int) -> bool:
    return status_code >= 500 or status_code in (408, 429)


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
        """The batch at once, in three queries whatever its size: the keys already in the outbox, one insert of
        the new ones (a key inserted concurrently is ignored) and the read-back of their ids. A key already
        there answers with its first message, as a provider does. A subclass that overrides ``send`` (to add
        latency, to count calls) keeps being called once per message."""
        from .models import OutboxMessage

        if type(self).send is not OutboxBackend.send:
            return send_each(self, messages)
        keys = [key_as_uuid(m.idempotency_key) for m in messages]
        ids = dict(
            OutboxMessage.objects.filter(idempotency_key__any_of=keys).values_list(
                "idempotency_key", "provider_message_id"
            )
        )
        new: dict[uuid.UUID, OutboxMessage] = {}
        for key, message in zip(keys, messages):
            if key not in ids and key not in new:
                new[key] = _outbox_row(message, key)
        if new:
            OutboxMessage.objects.bulk_create(list(new.values()), batch_size=500, ignore_conflicts=True)
            ids.update(
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


def _outbox_row(message: OutgoingMessage, key: uuid.UUID):
    """The outbox row of a message (not saved), with a provider id of its own."""
    from .models import OutboxMessage

    return OutboxMessage(
        channel=message.channel,
        destination=message.destination,
        subject=message.subject[:255],
        body=message.body,
        idempotency_key=key,
        provider_message_id=f"outbox-{uuid.uuid4().hex}",
    )


class HttpBackend:
    """What the HTTP providers share: a pooled keep-alive session, a timeout, error mapping and JSON decoding,
    and ``send_many`` sending a batch concurrently within the provider's limits (``settings_prefix``)."""

    provider = "provider"
    settings_prefix = ""
    sends_off_thread = True  # no database: start_send_all may send a batch while the next is prepared

    def __init__(self) -> None:
        self.timeout = float(settings.PROVIDER_TIMEOUT_SECONDS)
        self.limits = self.send_limits()
        self.session = pooled_session(type(self).__name__, self.limits.concurrency)
        self.slots = provider_slots(type(self).__name__, self.limits.concurrency)

    @classmethod
    def send_limits(cls) -> SendLimits:
        return SendLimits.from_settings(cls.settings_prefix)

    def send(self, message: OutgoingMessage) -> SendResult:
        raise NotImplementedError

    def send_many(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        bucket = bucket_for(self.settings_prefix.lower() or type(self).__name__, self.limits.rate)
        return send_concurrently(messages, self.send, limits=self.limits, bucket=bucket, slots=self.slots)

    def post(self, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.post(url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise ProviderError(f"{self.provider}: timed out after {self.timeout}s", retryable=True) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"{self.provider}: {exc.__class__.__name__}: {exc}", retryable=True) from exc
        if not 200 <= response.status_code < 300:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise ProviderError(
                f"{self.provider}: HTTP {response.status_code}: {response.text[:300]}",
                retryable=is_retryable_status(response.status_code),
                status_code=response.status_code,
                response_json=body,
                retry_after=(
                    retry_after_seconds(response.headers.get("Retry-After"))
                    if response.status_code == 429
                    else None
                ),
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(
                f"{self.provider}: the response is not JSON: {response.text[:200]}", retryable=False
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(f"{self.provider}: unexpected response {data!r:.200}", retryable=False)
        return data

    def message_id(self, data: dict[str, Any], *fields: str) -> str:
        for name in fields:
            if data.get(name):
                return str(data[name])
        raise ProviderError(
            f"{self.provider}: no message id ({', '.join(fields)}) in {data!r:.200}", retryable=False
        )


class JsonSmsGatewayBackend(HttpBackend):
    """A generic JSON SMS gateway: ``POST SMS_GATEWAY_URL`` with ``{to, from, text, reference}``."""

    provider = "SMS gateway"
    settings_prefix = "SMS_GATEWAY"

    def __init__(self) -> None:
        super().__init__()
        self.url = _required("SMS_GATEWAY_URL")
        self.token = settings.SMS_GATEWAY_TOKEN
        self.sender = settings.SMS_SENDER_ID

    def send(self, message: OutgoingMessage) -> SendResult:
        headers = {"Idempotency-Key": str(message.idempotency_key), "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = {
            "to": message.destination,
            "from": self.sender,
            "text": message.body,
            "reference": str(message.idempotency_key),
        }
        data = self.post(self.url, json=payload, headers=headers)
        return SendResult(provider_message_id=self.message_id(data, "message_id", "messageId", "id"))


class TwilioSmsBackend(HttpBackend):
    """A Twilio-compatible Messages API (``TWILIO_BASE_URL`` may point at any server speaking it). With
    ``PUBLIC_BASE_URL`` set, each message asks Twilio to report its status to our StatusCallback URL."""

    provider = "Twilio"
    settings_prefix = "TWILIO"

    def __init__(self) -> None:
        super().__init__()
        self.base_url = (settings.TWILIO_BASE_URL or "https://api.twilio.com").rstrip("/")
        self.sid = _required("TWILIO_ACCOUNT_SID")
        self.token = _required("TWILIO_AUTH_TOKEN")
        self.sender = _required("TWILIO_FROM_NUMBER")

    def send(self, message: OutgoingMessage) -> SendResult:
        url = f"{self.base_url}/2010-04-01/Accounts/{self.sid}/Messages.json"
        form = {"To": message.destination, "From": self.sender, "Body": message.body}
        if settings.PUBLIC_BASE_URL:
            # Twilio reports delivered / undelivered / failed there (notifications.twilio_webhooks).
            form["StatusCallback"] = public_url("notifications:twilio_status")
        data = self.post(
            url,
            data=form,
            auth=(self.sid, self.token),
            headers={
                "I-Twilio-Idempotency-Token": str(message.idempotency_key),
                "Accept": "application/json",
            },
        )
        return SendResult(provider_message_id=self.message_id(data, "sid"))


FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_fcm_credentials: dict[tuple[str, int], Any] = {}
_fcm_lock = threading.Lock()


def fcm_credentials(path: str):
    """The service account of ``path`` (google-auth), one per process and file version, with a valid access
    token: minted on first use and again before it expires (google-auth's refresh threshold, a few minutes
    ahead), so a push never goes out with a token that lapses on the way. Raises ImproperlyConfigured for an unreadable file,
    ProviderError (retryable) when the token endpoint cannot be reached."""
    return _fcm_token(path, force=False)


def _fcm_token(path: str, *, force: bool):
    """``fcm_credentials``; with ``force`` a new token is minted even if the current one looks valid (FCM
    refused it)."""
    from google.auth.exceptions import GoogleAuthError, TransportError
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError as exc:
        raise ImproperlyConfigured(f"FCM_CREDENTIALS_FILE {path!r} cannot be read: {exc}") from exc
    with _fcm_lock:
        credentials = _fcm_credentials.get(key)
        if credentials is None:
            try:
                credentials = service_account.Credentials.from_service_account_file(path, scopes=[FCM_SCOPE])
            except (ValueError, KeyError) as exc:
                raise ImproperlyConfigured(
                    f"FCM_CREDENTIALS_FILE {path!r} is not a service account: {exc}"
                ) from exc
            _fcm_credentials.clear()  # an older version of the file is of no use any more
            _fcm_credentials[key] = credentials
        if force or not credentials.valid:
            try:
                credentials.refresh(Request())
            except TransportError as exc:
                raise ProviderError(
                    f"FCM: the token endpoint cannot be reached: {exc}", retryable=True
                ) from exc
            except GoogleAuthError as exc:
                # The token endpoint refused the service account (revoked key, wrong clock): trying again later
                # may help once an operator fixed it, and nothing was sent.
                raise ProviderError(f"FCM: no access token: {exc}", retryable=True) from exc
        return credentials


def fcm_dead_token_reason(data: Any) -> str:
    """The FCM error code when an error response says the push token itself is dead: ``UNREGISTERED`` (the
    app was uninstalled, the token expired), or ``INVALID_ARGUMENT`` about the token (``message.token``), not
    about the rest of the message (a bug of ours must not wipe every customer's token). Else empty."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    codes = {d.get("errorCode") for d in details}
    if "UNREGISTERED" in codes:
        return "UNREGISTERED"
    if "INVALID_ARGUMENT" in codes or error.get("status") == "INVALID_ARGUMENT":
        fields = {
            violation.get("field")
            for d in details
            for violation in d.get("fieldViolations") or []
            if isinstance(violation, dict)
        }
        if "message.token" in fields or "registration token" in str(error.get("message", "")).lower():
            return "INVALID_ARGUMENT"
    return ""


class FcmPushBackend(HttpBackend):
    """Firebase Cloud Messaging, HTTP v1. Credentials: a service-account file (``FCM_CREDENTIALS_FILE``,
    google-auth mints and refreshes the OAuth token; ``FCM_PROJECT_ID`` defaults to the file's project), or a
    fixed ``FCM_ACCESS_TOKEN`` for a local test server. A token FCM says is dead (``UNREGISTERED``, an
    ``INVALID_ARGUMENT`` about the token) is a permanent error with ``dead_destination``: the dispatcher clears
    it from the customer and falls back to the next channel."""

    provider = "FCM"
    settings_prefix = "FCM"

    def __init__(self) -> None:
        super().__init__()
        self.base_url = (settings.FCM_BASE_URL or "https://fcm.googleapis.com").rstrip("/")
        self.credentials_file = settings.FCM_CREDENTIALS_FILE
        if self.credentials_file:
            credentials = fcm_credentials(self.credentials_file)
            self.project_id = settings.FCM_PROJECT_ID or credentials.project_id
            if not self.project_id:
                raise ImproperlyConfigured(
                    "FCM_PROJECT_ID must be set (the service-account file names none)."
                )
        else:
            self.project_id = _required("FCM_PROJECT_ID")
            self.access_token = _required("FCM_ACCESS_TOKEN")

    def _token(self, *, force: bool = False) -> str:
        if not self.credentials_file:
            return self.access_token
        return _fcm_token(self.credentials_file, force=force).token

    def send(self, message: OutgoingMessage) -> SendResult:
        url = f"{self.base_url}/v1/projects/{self.project_id}/messages:send"
        payload = {
            "message": {
                "token": message.destination,
                "notification": {"title": message.subject, "body": message.body},
                "data": {"idempotency_key": str(message.idempotency_key)},
            }
        }
        try:
            data = self._post(url, payload, self._token())
        except ProviderError as exc:
            if exc.status_code != 401 or not self.credentials_file:
                raise
            # The token was revoked or its clock is off: mint a new one and try once more.
            data = self._post(url, payload, self._token(force=True))
        return SendResult(provider_message_id=self.message_id(data, "name"))

    def _post(self, url: str, payload: dict, token: str) -> dict[str, Any]:
        try:
            return self.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
        except ProviderError as exc:
            reason = fcm_dead_token_reason(exc.response_json)
            if reason:
                raise ProviderError(
                    f"FCM: {reason}: {exc}",
                    retryable=False,
                    status_code=exc.status_code,
                    dead_destination=True,
                ) from exc
            raise


class EmailBackend:
    """Email through Django's mail (``settings.EMAIL_BACKEND``, SMTP by default; timeout ``EMAIL_TIMEOUT``), or
    an ESP's API through a django-anymail backend named there (Amazon SES, Mailgun, SendGrid, Postmark...):
    then the provider message id is the ESP's, the one its tracking webhooks report (notifications.email_tracking).

    The Message-ID is derived from the idempotency key, so a message sent twice after a crash carries the same
    id and mail systems can recognise the duplicate; it is also the provider message id bounces refer to.

    A batch goes out over ``EMAIL_CONCURRENCY`` connections at once, each kept open for the whole batch (one
    SMTP session or ESP API session per sending thread), within ``EMAIL_RATE_PER_SECOND``.
    """

    settings_prefix = "EMAIL"
    sends_off_thread = True

    @classmethod
    def send_limits(cls) -> SendLimits:
        return SendLimits.from_settings(cls.settings_prefix)

    def send_many(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        limits = self.send_limits()
        local = threading.local()
        opened: list[Any] = []

        def send_one(message: OutgoingMessage) -> SendResult:
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = get_connection(fail_silently=False)
                opened.append(connection)
            try:
                return self.send(message, connection=connection)
            except ProviderError:
                # The session may be broken: the thread's next message opens a new one.
                local.connection = None
                _close_quietly(connection)
                raise

        try:
            return send_concurrently(
                messages,
                send_one,
                limits=limits,
                bucket=bucket_for("email", limits.rate),
                slots=provider_slots("email", limits.concurrency),
            )
        finally:
            for connection in opened:
                _close_quietly(connection)

    def send(self, message: OutgoingMessage, connection=None) -> SendResult:
        domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "localhost"
        message_id = f"{key_as_uuid(message.idempotency_key)}@{domain}"
        headers = {"Message-ID": f"<{message_id}>"}
        if message.language:
            headers["Content-Language"] = message.language
        if message.unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMessage(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.destination],
            headers=headers,
        )
        try:
            if connection is None:
                with get_connection(fail_silently=False) as connection:
                    sent = connection.send_messages([email])
            else:
                connection.open()  # kept open for the thread's next message (a no-op once open)
                sent = connection.send_messages([email])
        except AnymailRecipientsRefused as exc:
            # The ESP refused the address itself (invalid, or on its bounce/complaint suppression list).
            raise ProviderError(f"{exc}", retryable=False) from exc
        except AnymailAPIError as exc:
            status = getattr(exc, "status_code", None)
            raise ProviderError(
                f"{type(exc).__name__}: {exc}",
                retryable=status is None or is_retryable_status(status),
                status_code=status,
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _msg in exc.recipients.values()]
            raise ProviderError(
                f"SMTP: recipient refused {exc.recipients}", retryable=any(400 <= c < 500 for c in codes)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # SMTP's own convention: 4xx is transient, 5xx permanent.
            raise ProviderError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                retryable=400 <= exc.smtp_code < 500,
                status_code=exc.smtp_code,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ProviderError(f"SMTP: {exc.__class__.__name__}: {exc}", retryable=True) from exc
        if not sent:
            raise ProviderError("SMTP: the message was not sent", retryable=True)
        # An ESP backend (django-anymail) names the message its own way; its tracking webhooks use that id.
        status = getattr(email, "anymail_status", None)
        return SendResult(
            provider_message_id=(status.message_id if status and status.message_id else message_id)
        )


def _close_quietly(connection) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken session must not fail the batch
        pass
