"""Writing the audit trail.

Every event is chained to the previous one: ``hash = sha256(prev_hash + canonical_json(event))``. Writers lock
the chain head row for the rest of their transaction, so events are written in the same transaction as the
change they record and two concurrent writers can never both extend the same head.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .models import GENESIS_HASH, AuditChainHead, AuditEvent


def to_json_value(value: Any) -> Any:
    """Plain JSON types only (Decimal, dates and UUIDs become strings), so what is hashed is what is stored."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False))


def canonical_json(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)


def event_payload(*, seq, at, actor, action, object_type, object_id, before, after) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at.astimezone(dt.timezone.utc).isoformat(),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "before": before,
        "after": after,
    }


def compute_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(payload)).encode("utf-8")).hexdigest()


def event_hash(event: AuditEvent) -> str:
    """The hash an event should carry, recomputed from its stored fields."""
    payload = event_payload(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        before=event.before,
        after=event.after,
    )
    return compute_hash(event.prev_hash, payload)


@dataclass
class Event:
    action: str
    actor: str
    object_type: str = ""
    object_id: str = ""
    before: Any = None
    after: Any = None
    at: Any = field(default=None)


def describe(obj: models.Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label, str(obj.pk)


def actor_name(actor: Any) -> str:
    """A user becomes their user name; a string (``job:plan_contacts``) is kept; nothing is ``system``."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return getattr(actor, "get_username", lambda: str(actor))()


def _lock_head() -> AuditChainHead:
    head, _ = AuditChainHead.objects.get_or_create(id=1)
    return AuditChainHead.objects.select_for_update().get(id=1)


def log_events(events: Iterable[Event]) -> list[AuditEvent]:
    """Append events to the chain in one go (one lock, one bulk insert). Returns the saved rows.

    Must run inside the transaction of the change it records; opens one itself when called outside any.
    """
    events = list(events)
    if not events:
        return []
    with transaction.atomic():
        head = _lock_head()
        seq, prev = head.seq, head.hash
        now = timezone.now()
        rows = []
        for ev in events:
            seq += 1
            at = ev.at or now
            before, after = to_json_value(ev.before), to_json_value(ev.after)
            payload = event_payload(
                seq=seq,
                at=at,
                actor=ev.actor,
                action=ev.action,
                object_type=ev.object_type,
                object_id=str(ev.object_id or ""),
                before=before,
                after=after,
            )
            digest = compute_hash(prev, payload)
            rows.append(
                AuditEvent(
                    seq=seq,
                    at=at,
                    actor=ev.actor,
                    action=ev.action,
                    object_type=ev.object_type,
                    object_id=str(ev.object_id or ""),
                    before=before,
                    after=after,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        AuditEvent.objects.bulk_create(rows, batch_size=1000)
        AuditChainHead.objects.filter(id=1).update(seq=seq, hash=prev)
    return rows


def log_event(
    action: str,
    *,
    actor: Any = None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event (dotted past-tense ``action`` such as ``notifications.contact.suppressed``)."""
    if obj is not None:
        object_type, object_id = describe(obj)
    return log_events(
        [Event(action=action, actor=actor_name(actor), object_type=object_type, object_id=str(object_id), before=before, after=after)]
    )[0]


__all__ = ["GENESIS_HASH", "Event", "actor_name", "compute_hash", "event_hash", "log_event", "log_events"]
