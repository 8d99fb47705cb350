"""Writing the audit trail.

Every event is chained to the previous one: ``hash = sha256(prev_hash + canonical_json(event))``. Writers lock
the chain head row for the rest of their transaction, so events are written in the same transaction as the
change they record and two concurrent writers can never both extend the same head. The head is anchored in a
file outside the database (``audit_anchors``); ``audit_verification`` walks the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, transaction
from django.utils import timezone

from .models import GENESIS_HASH, AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)


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


def about(model: type[models.Model] | models.Model, pk: Any = None) -> dict[str, str]:
    """How an event names what it is about, the one way: the model's label (``collections.CallTask``) and the
    primary key (of ``model`` when it is an object). ``Event(..., **about(task))``, ``**about(Payment, pk)``."""
    if isinstance(model, models.Model):
        pk = model.pk if pk is None else pk
        model = type(model)
    return {"object_type": model._meta.label, "object_id": "" if pk is None else str(pk)}


def describe(obj: models.Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    named = about(obj)
    return named["object_type"], named["object_id"]


def actor_name(actor: Any) -> str:
    """A user becomes their user name; a string (``job:plan_contacts``) is kept; nothing is ``system``."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return getattr(actor, "get_username", lambda: str(actor))()


def _lock_head() -> AuditChainHead:
    """Lock the chain head row until the end of the transaction (a no-op lock on SQLite, whose IMMEDIATE
    transactions already serialise writers). The row is created by the migration and after a flush."""
    try:
        return AuditChainHead.objects.select_for_update().get(id=1)
    except AuditChainHead.DoesNotExist:
        ensure_chain_head()
        return AuditChainHead.objects.select_for_update().get(id=1)


def ensure_chain_head(using: str = "default") -> AuditChainHead:
    """Create the chain head row if it is missing, continuing from the last event if there is one."""
    last = AuditEvent.objects.using(using).order_by("-seq").values_list("seq", "hash").first()
    seq, digest = last or (0, GENESIS_HASH)
    head, _created = AuditChainHead.objects.using(using).get_or_create(
        id=1, defaults={"seq": seq, "hash": digest}
    )
    return head


# Events after whose transaction the head is anchored (see ``log_events``): what an import or an export did is
# covered by an anchor as soon as it is committed, not only at the next pipeline run.
ANCHOR_AFTER = frozenset({"backoffice.import.completed", "backoffice.export.completed"})


def log_events(events: Iterable[Event]) -> list[AuditEvent]:
    """Append events to the chain in one go (one lock, one bulk insert). Returns the saved rows.

    Must run inside the transaction of the change it records; opens one itself when called outside any. An
    import or export completed (``ANCHOR_AFTER``) has the head anchored once its transaction commits.
    """
    events = list(events)
    if not events:
        return []
    with transaction.atomic():
        head = _lock_head()
        seq, prev = head.seq, head.hash
        now = timezone.now()
        rows, texts = [], []
        for ev in events:
            seq += 1
            at = ev.at or now
            before, before_text = _normalised(ev.before)
            after, after_text = _normalised(ev.after)
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
            texts.append((before_text, after_text))
            prev = digest
        _insert_events(rows, texts)
        AuditChainHead.objects.filter(id=1).update(seq=seq, hash=prev)
    if any(row.action in ANCHOR_AFTER for row in rows):
        from .audit_anchors import anchor_quietly  # it writes the trail too

        at = rows[-1].at
        transaction.on_commit(lambda: anchor_quietly(at), robust=True)
    return rows


def _normalised(value: Any) -> tuple[Any, str | None]:
    """``value`` as plain JSON types (what is hashed is what is stored) and its JSON text (None for NULL)."""
    if value is None:
        return None, None
    text = json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return json.loads(text), text


_EVENT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "prev_hash",
    "hash",
)
# From this many events on, PostgreSQL gets them through COPY (about twice as fast as a multi-row INSERT: the
# daily jobs write thousands of events per transaction); fewer go through INSERT ... RETURNING.
COPY_AT_LEAST = 200


def _column_values(row: AuditEvent, before_text, after_text, adapt_at) -> tuple:
    """The row's values in the order of ``_EVENT_COLUMNS``, its JSON already serialised."""
    return (
        row.seq,
        adapt_at(row.at),
        row.actor,
        row.action,
        row.object_type,
        row.object_id,
        before_text,
        after_text,
        row.prev_hash,
        row.hash,
    )


def _copy_events(connection, table: str, columns: str, rows: list[AuditEvent], texts) -> None:
    """``COPY ... FROM STDIN`` the rows, then read their ids back by ``seq`` (unique) in one query."""
    adapt_at = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor: COPY is psycopg's, not the DB-API's
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row, (before_text, after_text) in zip(rows, texts):
                copy.write_row(_column_values(row, before_text, after_text, adapt_at))
        qn, opts = connection.ops.quote_name, AuditEvent._meta
        seq = qn(opts.get_field("seq").column)
        cursor.execute(
            f"SELECT {seq}, {qn(opts.pk.column)} FROM {table} WHERE {seq} BETWEEN %s AND %s",
            [rows[0].seq, rows[-1].seq],
        )
        ids = dict(cursor.fetchall())
    for row in rows:
        row.pk = ids[row.seq]
        row._state.adding = False
        row._state.db = connection.alias


def _insert_events(rows: list[AuditEvent], texts: list[tuple[str | None, str | None]]) -> None:
    """Insert the rows as ``bulk_create`` would (the same statements per batch, ids set on the rows), without its
    per-field Python overhead: multi-row ``INSERT ... RETURNING id`` with the JSON already serialised."""
    connection = connections[AuditEvent.objects.db]
    if not connection.features.can_return_rows_from_bulk_insert or connection.vendor not in (
        "postgresql",
        "sqlite",
    ):
        AuditEvent.objects.bulk_create(rows, batch_size=1000)
        return
    qn = connection.ops.quote_name
    opts = AuditEvent._meta
    table = qn(opts.db_table)
    columns = ", ".join(qn(opts.get_field(name).column) for name in _EVENT_COLUMNS)
    if connection.vendor == "postgresql" and len(rows) >= COPY_AT_LEAST:
        _copy_events(connection, table, columns, rows, texts)
        return
    if connection.vendor == "postgresql":
        placeholder = "(%s, %s, %s, %s, %s, %s, CAST(%s AS jsonb), CAST(%s AS jsonb), %s, %s)"
        per_batch = 1000
    else:
        placeholder = "(" + ", ".join(["%s"] * len(_EVENT_COLUMNS)) + ")"
        per_batch = max(1, (connection.features.max_query_params or 999) // len(_EVENT_COLUMNS))
    adapt_at = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params: list[Any] = []
            for row, (before_text, after_text) in zip(batch, texts[start : start + per_batch]):
                params += _column_values(row, before_text, after_text, adapt_at)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(batch))} "
                f"RETURNING {qn(opts.pk.column)}",
                params,
            )
            for row, (pk,) in zip(batch, cursor.fetchall()):
                row.pk = pk
                row._state.adding = False
                row._state.db = connection.alias


def log_event(
    action: str,
    *,
    actor: Any = None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    before: Any = None,
    after: Any = None,
    at: Any = None,
) -> AuditEvent:
    """Append one event (dotted past-tense ``action`` such as ``notifications.contact.suppressed``) at ``at``
    (default now)."""
    if obj is not None:
        object_type, object_id = describe(obj)
    return log_events(
        [
            Event(
                action=action,
                actor=actor_name(actor),
                object_type=object_type,
                object_id=str(object_id),
                before=before,
                after=after,
                at=at,
            )
        ]
    )[0]
