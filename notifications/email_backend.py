"""The email delivery backend: Django's mail (SMTP by default) or an ESP's API through django-anymail, a batch
over ``EMAIL_CONCURRENCY`` sessions kept open for the batch. Its settings path stays
``notifications.channels.EmailBackend``.
"""

from __future__ import annotations

import smtplib
import threading
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from core.throttle import bucket_for

from .sending import (
    OutgoingMessage,
    ProviderError,
    SendLimits,
    SendResult,
    is_retryable_status,
    key_as_uuid,
    provider_slots,
    send_concurrently,
)


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
