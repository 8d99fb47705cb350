"""The HTTP delivery backends: a JSON SMS gateway, Twilio's Messages API and Firebase Cloud Messaging (push).

They share ``HttpBackend``: one pooled keep-alive session per process and provider, a timeout, the mapping of HTTP
errors to ``ProviderError`` (5xx, 408 and 429 retryable; a 429's Retry-After holds the provider's bucket off) and
``send_many`` sending a batch concurrently within ``<PROVIDER>_CONCURRENCY`` and ``<PROVIDER>_RATE_PER_SECOND``
(``sending.send_concurrently``). Their settings paths stay ``notifications.channels.<Backend>``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.throttle import bucket_for

from .sending import (
    OutgoingMessage,
    ProviderError,
    SendLimits,
    SendResult,
    is_retryable_status,
    pooled_session,
    provider_slots,
    public_url,
    required_setting,
    retry_after_seconds,
    send_concurrently,
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
        self.url = required_setting("SMS_GATEWAY_URL")
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
        self.sid = required_setting("TWILIO_ACCOUNT_SID")
        self.token = required_setting("TWILIO_AUTH_TOKEN")
        self.sender = required_setting("TWILIO_FROM_NUMBER")

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
            self.project_id = required_setting("FCM_PROJECT_ID")
            self.access_token = required_setting("FCM_ACCESS_TOKEN")

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
