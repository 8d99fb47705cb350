"""How a batch reaches a provider: the message and outcome shapes every backend shares, and the machinery that
sends a batch concurrently over pooled keep-alive connections within the provider's concurrency and its shared rate
(``core.throttle``), a 429 holding the bucket off for its Retry-After. The backends themselves are in
``notifications.channels``; the dispatcher calls ``send_all`` / ``start_send_all`` here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils.module_loading import import_string
from requests.adapters import HTTPAdapter

from core.throttle import TokenBucket, acquire


@dataclass
class OutgoingMessage:
    channel: str
    destination: str
    subject: str
    body: str
    idempotency_key: str
    language: str = ""
    # An email's one-click unsubscribe link (RFC 8058 List-Unsubscribe and List-Unsubscribe-Post headers).
    unsubscribe_url: str = ""


@dataclass
class SendResult:
    provider_message_id: str


class ProviderError(Exception):
    """The provider did not accept the message. ``retryable`` is False when trying again cannot help;
    ``dead_destination`` says the address itself is gone (a push token FCM no longer knows, a mailbox that does
    not exist): the dispatcher forgets it, so nothing is sent there again."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status_code: int | None = None,
        dead_destination: bool = False,
        response_json: Any = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.dead_destination = dead_destination
        self.response_json = response_json  # the provider's error body, when it was JSON
        # Set when the provider throttled us (HTTP 429): the seconds it asked us to wait. Not the message's fault.
        self.retry_after = retry_after


class ChannelBackend(Protocol):
    def send(self, message: OutgoingMessage) -> SendResult: ...


def send_each(backend: ChannelBackend, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
    """Send ``messages`` one by one through ``backend.send``: one outcome per message, in order. Any exception
    other than ``ProviderError`` (a broken backend) becomes a retryable ``ProviderError`` naming it."""
    outcomes: list[SendResult | ProviderError] = []
    for message in messages:
        try:
            outcomes.append(backend.send(message))
        except ProviderError as exc:
            outcomes.append(exc)
        except Exception as exc:  # noqa: BLE001 - a broken backend fails its message, not the batch
            outcomes.append(ProviderError(f"{type(exc).__name__}: {exc}", retryable=True))
    return outcomes


@dataclass(frozen=True)
class SendLimits:
    """How a provider takes a batch: ``concurrency`` requests in flight per worker, ``rate`` messages a second
    across all workers (0: no limit)."""

    concurrency: int
    rate: float

    @classmethod
    def from_settings(cls, prefix: str) -> SendLimits:
        return cls(
            concurrency=max(1, int(getattr(settings, f"{prefix}_CONCURRENCY", 1))),
            rate=max(0.0, float(getattr(settings, f"{prefix}_RATE_PER_SECOND", 0))),
        )


def send_concurrently(
    messages: list[OutgoingMessage],
    send_one: Callable[[OutgoingMessage], SendResult],
    *,
    limits: SendLimits,
    bucket: TokenBucket,
    slots: threading.Semaphore | None = None,
) -> list[SendResult | ProviderError]:
    """Send ``messages`` through ``send_one`` with up to ``limits.concurrency`` in flight, each taking a token of
    ``bucket`` first. One outcome per message, in order. A throttled message (``retry_after`` set) holds the
    bucket off and is tried again once the wait is over, as long as the batch has waited less than
    ``PROVIDER_MAX_THROTTLE_WAIT_SECONDS``; after that it comes back throttled for the dispatcher to defer.
    ``slots`` (the provider's ``provider_slots``) keep two batches sent at once in one process within the
    provider's concurrency too."""
    if not messages:
        return []
    max_wait = float(getattr(settings, "PROVIDER_MAX_THROTTLE_WAIT_SECONDS", 30))
    started = time.monotonic()

    slots = slots or threading.Semaphore(limits.concurrency)

    def one(message: OutgoingMessage) -> SendResult | ProviderError:
        while True:
            try:
                with slots:
                    acquire(bucket)
                    return send_one(message)
            except ProviderError as exc:
                if exc.retry_after is None:
                    return exc
                bucket.hold_off(exc.retry_after)
                if time.monotonic() - started + exc.retry_after > max_wait:
                    return exc
            except Exception as exc:  # noqa: BLE001 - a broken backend fails its message, not the batch
                return ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)

    workers = min(limits.concurrency, len(messages))
    if workers == 1:
        return [one(message) for message in messages]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
        return list(pool.map(one, messages))


def batch_send_seconds(batch_size: int) -> float:
    """How long a batch of ``batch_size`` messages may take to send on the slowest configured channel: every
    request timing out, ``concurrency`` at a time, plus the time the rate limit spreads them over and the
    longest 429 wait. A backend without limits sends one message after another."""
    timeout = float(getattr(settings, "PROVIDER_TIMEOUT_SECONDS", 10)) + 1
    slowest = 0.0
    for path in dict(getattr(settings, "NOTIFICATION_BACKENDS", {})).values():
        try:
            limits = getattr(import_string(path), "send_limits", None)
        except ImportError:
            limits = None
        if limits is None:
            seconds = batch_size * timeout
        else:
            limits = limits()
            seconds = math.ceil(batch_size / limits.concurrency) * timeout
            seconds += batch_size / limits.rate if limits.rate else 0
            seconds += float(getattr(settings, "PROVIDER_MAX_THROTTLE_WAIT_SECONDS", 30))
        slowest = max(slowest, seconds)
    return slowest or batch_size * timeout


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """A Retry-After header's wait in seconds: a number of seconds or an HTTP date; ``default`` without one."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def send_all(backend: ChannelBackend, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
    """Send a batch through ``backend``: its ``send_many`` when it has one, else ``send`` per message.

    Returns one outcome per message, in order: a ``SendResult`` or the ``ProviderError`` of that message. When
    ``send_many`` itself raises, every message of the batch gets that error (retryable unless the error says
    otherwise); the idempotency keys make the retry of any message the provider did take harmless.
    """
    if not messages:
        return []
    send_many = getattr(backend, "send_many", None)
    if send_many is None:
        return send_each(backend, messages)
    try:
        outcomes = list(send_many(messages))
    except ProviderError as exc:
        return [exc] * len(messages)
    except Exception as exc:  # noqa: BLE001 - a broken backend must not leave the batch claimed
        return [ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)] * len(messages)
    if len(outcomes) != len(messages):
        error = ProviderError(
            f"{type(backend).__name__}.send_many answered {len(outcomes)} outcomes for {len(messages)} messages",
            retryable=True,
        )
        return [error] * len(messages)
    return outcomes


def start_send_all(backend: ChannelBackend, messages: list[OutgoingMessage]) -> Future:
    """``send_all`` begun: in a thread of its own when the backend keeps off the database (``sends_off_thread``:
    the HTTP providers and email), so the caller can prepare its next batch while this one is at the provider;
    else (the outbox writes to the database, on the caller's connection) done at once. The future's result is
    ``send_all``'s."""
    if getattr(backend, "sends_off_thread", False) and messages:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        try:
            return pool.submit(send_all, backend, messages)
        finally:
            pool.shutdown(wait=False)  # the thread ends with its batch
    done: Future = Future()
    done.set_result(send_all(backend, messages))
    return done


# One connection pool and one set of concurrency slots per process and provider.
_sessions: dict[tuple, requests.Session] = {}
_slots: dict[tuple, threading.Semaphore] = {}
_sessions_lock = threading.Lock()


def provider_slots(name: str, concurrency: int) -> threading.Semaphore:
    """The requests one process may have in flight at a provider, whatever the number of batches sending."""
    key = (os.getpid(), name, concurrency)
    with _sessions_lock:
        return _slots.setdefault(key, threading.Semaphore(concurrency))


def pooled_session(name: str, pool_size: int) -> requests.Session:
    """One ``requests.Session`` per process and provider, keeping up to ``pool_size`` connections alive between
    requests and batches (a forked worker makes its own: sockets are not shared across processes)."""
    key = (os.getpid(), name, pool_size)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            _sessions[key] = session
        return session


# --- what the backends share -------------------------------------------------------------------------------
# Identifiers that are not UUIDs still map to one stable UUID (the outbox stores keys as UUIDs).
_KEY_NAMESPACE = uuid.UUID("6f1d3a52-3f0e-4d7c-9d44-1d0c5e2b8a10")


def key_as_uuid(idempotency_key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(idempotency_key))
    except ValueError:
        return uuid.uuid5(_KEY_NAMESPACE, str(idempotency_key))


def required_setting(name: str) -> str:
    value = getattr(settings, name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set to use this delivery backend.")
    return value


def public_url(view_name: str) -> str:
    """The address a provider calls back for ``view_name``: ``PUBLIC_BASE_URL`` plus the view's path."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(view_name)


def is_retryable_status(status_code: int) -> bool:
    return status_code >= 500 or status_code in (408, 429)
