"""Delivery receipts: what the provider later says became of a message it accepted.

What a receipt may hold is decided here, for the webhook and for any other caller: a known status, a provider
message id and an error of bounded length, and a timestamp in a sane range that is not before the message was
sent. A request's receipts are all checked before any is applied; they are then applied in chunks, each in its
own short transaction (a receipt applied twice changes nothing more, so a retried request is harmless).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.audit import Event, log_events

from .models import NotificationLog, ParkedReceipt
from .notices import plan_fallbacks

logger = logging.getLogger(__name__)

# A receipt says the message was delivered or failed: the log's own statuses.
DELIVERED = NotificationLog.Status.DELIVERED.value
FAILED = NotificationLog.Status.FAILED.value
RECEIPT_STATUSES = (DELIVERED, FAILED)
ACTOR = "webhook:delivery_receipts"

# The contact's ``last_error`` holds this much; a longer error is refused, not stored whole in the audit trail.
MAX_ERROR_LENGTH = 500
MAX_ID_LENGTH = NotificationLog._meta.get_field("provider_message_id").max_length
MAX_TIMESTAMP_TEXT = 64
# No message of this product was sent before this; a provider's clock may run a little ahead of ours.
EARLIEST_TIMESTAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CLOCK_SKEW = dt.timedelta(hours=1)
SCALARS = (str, int, float, bool, type(None))


class ReceiptError(ValueError):
    """A receipt (or a request of receipts) that cannot be applied; the message says why."""


@dataclass(frozen=True)
class Receipt:
    provider_message_id: str
    status: str
    error: str = ""
    at: dt.datetime | None = None
    # A failure that may also come after delivery (an email that bounced or was reported as spam after the
    # receiving server took it): it applies to a delivered contact too.
    also_after_delivery: bool = False


def parse_timestamp(value: Any, *, now: dt.datetime) -> dt.datetime | None:
    """ISO-8601 text (``Z`` or an offset; without one, UTC) or seconds since the epoch, between 2000-01-01 and
    ``now`` plus an hour of clock skew. Raises ReceiptError otherwise (infinite, huge, negative, unreadable)."""
    if value is None or value == "":
        return None
    latest = now + CLOCK_SKEW
    if isinstance(value, bool):
        raise ReceiptError("timestamp must be ISO-8601 or seconds since the epoch")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not (EARLIEST_TIMESTAMP.timestamp() <= value <= latest.timestamp()):
            raise ReceiptError(f"timestamp {value!r} is out of range ({_range_text(latest)})")
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_TEXT:
        raise ReceiptError("timestamp must be ISO-8601 or seconds since the epoch")
    try:
        parsed = parse_datetime(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ReceiptError(f"timestamp {value!r} is not ISO-8601")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=dt.UTC)
    if not (EARLIEST_TIMESTAMP <= parsed <= latest):
        raise ReceiptError(f"timestamp {value!r} is out of range ({_range_text(latest)})")
    return parsed


def _range_text(latest: dt.datetime) -> str:
    return f"{EARLIEST_TIMESTAMP:%Y-%m-%d} to {latest.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def parse_receipt(item: Any, *, now: dt.datetime) -> Receipt:
    """One receipt from its JSON object ``{provider_message_id, status, error?, timestamp?}``. Every value must
    be a plain string, number or null (nothing nested). Raises ReceiptError naming the field."""
    if not isinstance(item, dict):
        raise ReceiptError("expected an object")
    for key, value in item.items():
        if not isinstance(value, SCALARS):
            raise ReceiptError(f"{str(key)[:40]} is nested; a receipt holds only strings, numbers and null")
    pid, status, error = item.get("provider_message_id"), item.get("status"), item.get("error") or ""
    if not isinstance(pid, str) or not pid:
        raise ReceiptError("provider_message_id is required")
    if len(pid) > MAX_ID_LENGTH:
        raise ReceiptError(f"provider_message_id is longer than {MAX_ID_LENGTH} characters")
    if status not in RECEIPT_STATUSES:
        raise ReceiptError(f"status must be one of {', '.join(RECEIPT_STATUSES)}")
    if not isinstance(error, str):
        raise ReceiptError("error must be a string")
    if len(error) > MAX_ERROR_LENGTH:
        raise ReceiptError(f"error is longer than {MAX_ERROR_LENGTH} characters")
    return Receipt(pid, status, error, parse_timestamp(item.get("timestamp"), now=now))


def parse_receipts(payload: Any, *, now: dt.datetime) -> list[Receipt]:
    """One receipt object or a list of at most ``DELIVERY_RECEIPTS_MAX_PER_REQUEST``. Raises ReceiptError
    naming the first bad receipt (``receipt N: ...``, N counted from 0)."""
    items = payload if isinstance(payload, list) else [payload]
    limit = settings.DELIVERY_RECEIPTS_MAX_PER_REQUEST
    if len(items) > limit:
        raise ReceiptError(f"{len(items)} receipts in one request; at most {limit} are accepted")
    receipts = []
    for n, item in enumerate(items):
        try:
            receipts.append(parse_receipt(item, now=now))
        except ReceiptError as exc:
            raise ReceiptError(f"receipt {n}: {exc}") from None
    return receipts


def check_receipt_time(receipt: Receipt, sent_at: dt.datetime | None) -> None:
    """A receipt cannot say a message was delivered (or failed) before it was sent. Raises ReceiptError."""
    if receipt.at is not None and sent_at is not None and receipt.at < sent_at:
        raise ReceiptError(
            f"timestamp {receipt.at.isoformat()} is before the message {receipt.provider_message_id} was sent "
            f"({sent_at.astimezone(dt.UTC).isoformat()})"
        )


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _latest_contacts(ids: Iterable[str], *, lock: bool) -> dict[str, NotificationLog]:
    """The contact each provider message id names (the newest, should an id ever repeat)."""
    qs = NotificationLog.objects.filter(provider_message_id__in=set(ids)).order_by("id")
    if lock:
        qs = qs.select_for_update()
    return {log.provider_message_id: log for log in qs}


def check_receipts(receipts: Sequence[Receipt]) -> None:
    """Check every receipt's time against its contact's ``sent_at`` before any is applied (a query per chunk).
    Raises ReceiptError naming the first receipt that fails (``receipt N: ...``)."""
    size = settings.DELIVERY_RECEIPTS_CHUNK_SIZE
    for offset, chunk in enumerate(_chunks(receipts, size)):
        if all(r.at is None for r in chunk):
            continue
        sent = {
            pid: sent_at
            for pid, sent_at in NotificationLog.objects.filter(
                provider_message_id__in={r.provider_message_id for r in chunk if r.at is not None}
            )
            .order_by("id")
            .values_list("provider_message_id", "sent_at")
        }
        for n, receipt in enumerate(chunk, start=offset * size):
            try:
                check_receipt_time(receipt, sent.get(receipt.provider_message_id))
            except ReceiptError as exc:
                raise ReceiptError(f"receipt {n}: {exc}") from None


def apply_receipts(receipts: Sequence[Receipt], *, now: dt.datetime, actor: str = ACTOR) -> list[str]:
    """Apply receipts in chunks of ``DELIVERY_RECEIPTS_CHUNK_SIZE``, each chunk in its own transaction (a lock
    on its contacts, one bulk update, its audit events in one go). Returns the provider ids no contact carries;
    their receipts are parked (``ParkedReceipt``) until the send is recorded (``apply_parked_receipts``).

    Effects per receipt: a ``sent`` contact becomes ``delivered`` (``delivered_at`` = the receipt's time or
    ``now``) or ``failed`` with reason ``provider_error`` and ``last_error``, with the audit event
    ``notifications.contact.delivered`` / ``.failed``; a failed contact falls back to the next channel of the tier
    (``plan_fallbacks``) in the same transaction. A contact in any other status is left as it is (receipts
    are repeated and arrive out of order), so applying a receipt twice changes nothing more; except that a
    failure marked ``also_after_delivery`` (a bounce, a spam complaint) also applies to a delivered contact. Raises ReceiptError
    (the chunk is rolled back) for a receipt timed before its message was sent: callers ``check_receipts``
    first, so that nothing of a bad request is applied."""
    unknown: list[str] = []
    for chunk in _chunks(receipts, settings.DELIVERY_RECEIPTS_CHUNK_SIZE):
        unknown += _apply_chunk(chunk, now=now, actor=actor)
    return unknown


def _apply_chunk(
    receipts: Sequence[Receipt], *, now: dt.datetime, actor: str, park: bool = True
) -> list[str]:
    unknown, changed, events = [], {}, []
    failed_at: dict[dt.datetime, list[NotificationLog]] = {}
    with transaction.atomic():
        contacts = _latest_contacts((r.provider_message_id for r in receipts), lock=True)
        parked = []
        for receipt in receipts:
            log = contacts.get(receipt.provider_message_id)
            if log is None:
                unknown.append(receipt.provider_message_id)
                if park:
                    parked.append(_parked(receipt, now=now, actor=actor))
                continue
            if log.status != NotificationLog.Status.SENT and not (
                receipt.also_after_delivery
                and receipt.status == FAILED
                and log.status == NotificationLog.Status.DELIVERED
            ):
                continue
            check_receipt_time(receipt, log.sent_at)
            at = receipt.at or now
            before = {"status": log.status, "reason": log.reason}
            if receipt.status == DELIVERED:
                log.status = NotificationLog.Status.DELIVERED
                log.delivered_at = at
            else:
                log.status = NotificationLog.Status.FAILED
                log.reason = NotificationLog.Reason.PROVIDER_ERROR
                log.last_error = receipt.error or "failed according to the provider's delivery receipt"
                failed_at.setdefault(at, []).append(log)
            log.updated_at = now
            changed[log.pk] = log
            events.append(
                Event(
                    action=f"notifications.contact.{receipt.status}",
                    actor=actor,
                    object_type=log._meta.label,
                    object_id=str(log.pk),
                    before=before,
                    after={
                        "status": log.status,
                        "reason": log.reason,
                        "provider_message_id": receipt.provider_message_id,
                        "channel": log.channel,
                        "error": receipt.error,
                        "at": at,
                    },
                    at=now,
                )
            )
        if changed:
            NotificationLog.objects.bulk_update(
                list(changed.values()), ["status", "reason", "last_error", "delivered_at", "updated_at"]
            )
        log_events(events)
        if parked:
            ParkedReceipt.objects.bulk_create(parked)
        # Failed contacts fall back to the next channel of the tier, scheduled when the receipt says they failed
        # (a few queries per distinct time, whatever the number of contacts).
        for at, logs in failed_at.items():
            plan_fallbacks(logs, at=at, actor=actor)
    return unknown


def record_delivery_receipt(
    *,
    provider_message_id: str,
    status: str,
    error: str = "",
    at: dt.datetime | None = None,
    actor: str = ACTOR,
    now: dt.datetime | None = None,
    also_after_delivery: bool = False,
) -> NotificationLog | None:
    """Apply one receipt to the contact the provider knows as ``provider_message_id`` (see ``apply_receipts``).

    Returns the contact, or None when no contact carries that id. Raises ReceiptError (a ValueError) for another
    ``status``, an error longer than ``MAX_ERROR_LENGTH`` or a time before the message was sent."""
    if status not in RECEIPT_STATUSES:
        raise ReceiptError(
            f"Unknown receipt status {status!r}; expected one of {', '.join(RECEIPT_STATUSES)}."
        )
    if len(error) > MAX_ERROR_LENGTH:
        raise ReceiptError(f"error is longer than {MAX_ERROR_LENGTH} characters")
    if not provider_message_id:
        return None
    now = now or timezone.now()
    if at is not None and timezone.is_naive(at):
        at = timezone.make_aware(at, dt.UTC)
    unknown = apply_receipts(
        [Receipt(provider_message_id, status, error, at, also_after_delivery)], now=now, actor=actor
    )
    if unknown:
        return None
    return _latest_contacts([provider_message_id], lock=False).get(provider_message_id)


def _parked(receipt: Receipt, *, now: dt.datetime, actor: str) -> ParkedReceipt:
    return ParkedReceipt(
        provider_message_id=receipt.provider_message_id,
        status=receipt.status,
        error=receipt.error,
        at=receipt.at,
        also_after_delivery=receipt.also_after_delivery,
        actor=actor[:64],
        received_at=now,
    )


def apply_parked_receipts(provider_message_ids: Iterable[str], *, now: dt.datetime) -> dict[str, int]:
    """Apply the parked receipts of these provider ids (the dispatcher calls it in the transaction that records
    their sends), in the order they came, and remove them. A parked receipt timed before its message was sent
    contradicts the log: it is dropped with a warning instead of undoing the recording. Returns
    ``{"applied": n, "dropped": n}``; one query when nothing is parked."""
    ids = {pid for pid in provider_message_ids if pid}
    if not ids:
        return {"applied": 0, "dropped": 0}
    parked = list(
        ParkedReceipt.objects.filter(provider_message_id__any_of=list(ids))
        .select_for_update()
        .order_by("received_at", "id")
    )
    if not parked:
        return {"applied": 0, "dropped": 0}
    sent = dict(
        NotificationLog.objects.filter(provider_message_id__in={p.provider_message_id for p in parked})
        .order_by("id")
        .values_list("provider_message_id", "sent_at")
    )
    by_actor: dict[str, list[Receipt]] = {}
    done, applied, dropped = [], 0, 0
    for row in parked:
        if row.provider_message_id not in sent:
            continue
        done.append(row.pk)
        receipt = Receipt(row.provider_message_id, row.status, row.error, row.at, row.also_after_delivery)
        try:
            check_receipt_time(receipt, sent[row.provider_message_id])
        except ReceiptError as exc:
            logger.warning("Parked delivery receipt dropped: %s", exc)
            dropped += 1
            continue
        by_actor.setdefault(row.actor, []).append(receipt)
        applied += 1
    for actor, receipts in by_actor.items():
        for chunk in _chunks(receipts, settings.DELIVERY_RECEIPTS_CHUNK_SIZE):
            _apply_chunk(chunk, now=now, actor=actor, park=False)
    ParkedReceipt.objects.filter(pk__in=done).delete()
    return {"applied": applied, "dropped": dropped}


def run_parked_receipts(now: dt.datetime | None = None) -> dict[str, int]:
    """The periodic pass (schedule ``parked-receipts``): apply parked receipts whose message is now known, and
    drop those that waited longer than ``PARKED_RECEIPT_RETENTION_HOURS`` (a warning with their count).
    Returns ``{"applied": n, "dropped": n, "waiting": n}``."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.PARKED_RECEIPT_RETENTION_HOURS)
    ids = set(ParkedReceipt.objects.values_list("provider_message_id", flat=True).distinct())
    with transaction.atomic():
        result = apply_parked_receipts(ids, now=now)
        expired, _ = ParkedReceipt.objects.filter(received_at__lt=cutoff).delete()
    if expired:
        logger.warning(
            "%d parked delivery receipts named no message for %d hours: dropped",
            expired,
            settings.PARKED_RECEIPT_RETENTION_HOURS,
        )
    result["dropped"] += expired
    result["waiting"] = ParkedReceipt.objects.count()
    return result
