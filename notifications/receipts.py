"""Delivery receipts: what the provider later says became of a message it accepted."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from backoffice.audit import log_event

from .models import NotificationLog
from .services import plan_fallbacks

DELIVERED = "delivered"
FAILED = "failed"
RECEIPT_STATUSES = (DELIVERED, FAILED)


def record_delivery_receipt(
    *,
    provider_message_id: str,
    status: str,
    error: str = "",
    at: dt.datetime | None = None,
    actor: str = "webhook:delivery_receipts",
) -> NotificationLog | None:
    """Apply one receipt to the contact the provider knows as ``provider_message_id``.

    Effects: a ``sent`` contact becomes ``delivered`` (``delivered_at`` = ``at`` or now) or ``failed`` with reason
    ``provider_error`` and ``last_error``; the audit event ``notifications.contact.delivered`` / ``.failed`` is
    written in the same transaction. A failed contact falls back to the next channel of the tier
    (``plan_fallbacks``), also in that transaction. A contact in any other status is left as it is (receipts are repeated and
    arrive out of order), so applying a receipt twice changes nothing more.
    Returns the contact, or None when no contact carries that id. Raises ValueError for another ``status``.
    """
    if status not in RECEIPT_STATUSES:
        raise ValueError(f"Unknown receipt status {status!r}; expected one of {', '.join(RECEIPT_STATUSES)}.")
    if not provider_message_id:
        return None
    if at is None:
        at = timezone.now()
    elif timezone.is_naive(at):
        at = timezone.make_aware(at, dt.timezone.utc)
    with transaction.atomic():
        log = (
            NotificationLog.objects.select_for_update()
            .filter(provider_message_id=provider_message_id)
            .order_by("-id")
            .first()
        )
        if log is None or log.status != NotificationLog.Status.SENT:
            return log
        before = {"status": log.status, "reason": log.reason}
        if status == DELIVERED:
            log.status = NotificationLog.Status.DELIVERED
            log.delivered_at = at
            fields = ["status", "delivered_at", "updated_at"]
        else:
            log.status = NotificationLog.Status.FAILED
            log.reason = NotificationLog.Reason.PROVIDER_ERROR
            log.last_error = (error or "failed according to the provider's delivery receipt")[:500]
            fields = ["status", "reason", "last_error", "updated_at"]
        log.save(update_fields=fields)
        log_event(
            f"notifications.contact.{status}",
            actor=actor,
            obj=log,
            before=before,
            after={
                "status": log.status,
                "reason": log.reason,
                "provider_message_id": provider_message_id,
                "channel": log.channel,
                "error": error,
                "at": at,
            },
        )
        if log.status == NotificationLog.Status.FAILED:
            plan_fallbacks([log], at=at, actor=actor)
    return log
