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
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
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
    ids: dict[int, int] = {}
    columns = _append(events, ids)
    if not columns:
        return []
    connection = connections[AuditEvent.objects.db]
    rows = []
    for seq, at, actor, action, object_type, object_id, before, after, prev_hash, digest in columns:
        row = AuditEvent(
            ids[seq],
            seq,
            at,
            actor,
            action,
            object_type,
            object_id,
            None if before is None else json.loads(before),
            None if after is None else json.loads(after),
            prev_hash,
            digest,
        )
        row._state.adding = False
        row._state.db = connection.alias
        rows.append(row)
    return rows


def append_events(events: Iterable[Event]) -> int:
    """``log_events`` for a bulk writer that does not need the saved rows back (an import's thousands of
    events): the same chain, the same rows, without reading their ids back. Returns how many were written."""
    return len(_append(events))


def _append(events: Iterable[Event], ids: dict[int, int] | None = None) -> list[tuple]:
    """Chain and insert ``events``; their column values in ``_EVENT_COLUMNS`` order, JSON as its text. With
    ``ids``, the new rows' ids are read back into it by seq.

    Each value is serialised once: its canonical JSON (sorted keys, no spaces) is both what is stored and what
    the event's hash covers, so the chain is computed in one pass without building the payload again."""
    events = list(events)
    if not events:
        return []
    with transaction.atomic():
        head = _lock_head()
        seq, prev = head.seq, head.hash
        now = timezone.now()
        columns = []
        texts = _Texts()
        for ev in events:
            seq += 1
            at = ev.at or now
            object_id = str(ev.object_id or "")
            before = _canonical_text(ev.before)
            after = _canonical_text(ev.after)
            digest = hashlib.sha256(
                (
                    prev
                    + _payload_text(
                        seq, at, ev.actor, ev.action, ev.object_type, object_id, before, after, texts
                    )
                ).encode()
            ).hexdigest()
            columns.append(
                (seq, at, ev.actor, ev.action, ev.object_type, object_id, before, after, prev, digest)
            )
            prev = digest
        _insert_events(columns, ids)
        AuditChainHead.objects.filter(id=1).update(seq=seq, hash=prev)
    if any(values[3] in ANCHOR_AFTER for values in columns):
        from .audit_anchors import anchor_quietly  # it writes the trail too

        at = columns[-1][1]
        transaction.on_commit(lambda: anchor_quietly(at), robust=True)
    return columns


_CANONICAL = DjangoJSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain_default(value: Any) -> Any:
    """``DjangoJSONEncoder.default``, a Decimal (most values of the product's events that JSON lacks) first."""
    if type(value) is Decimal:
        return str(value)
    return _CANONICAL.default(value)


# ``_CANONICAL.encode`` without making its C encoder again for every value (what ``JSONEncoder.encode`` does):
# one encoder, the same arguments, no circular check (an event's values are trees). None without the C module.
_C_ENCODER = (
    json.encoder.c_make_encoder(
        None, _plain_default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    if json.encoder.c_make_encoder is not None
    else None
)


def _encode(value: Any) -> str:
    """``_CANONICAL.encode(value)`` for a value with string keys only."""
    if _C_ENCODER is None or type(value) is str:
        return _CANONICAL.encode(value)
    return "".join(_C_ENCODER(value, 0))


# Types that hold no key: what the product's events carry, checked by type alone (a dict's values are
# thousands of these in an import's events).
_PLAIN = frozenset({str, int, float, bool, type(None), Decimal, dt.date, dt.datetime, dt.time, uuid.UUID})


def _has_text_keys(value: Any) -> bool:
    """Whether every dict inside ``value`` has only string keys (then sorting them before and after JSON agree).
    A subclass of dict, list or tuple answers no: the slower, always right way takes it."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return not isinstance(value, dict | list | tuple)
    for item in items:
        if type(item) not in _PLAIN and not _has_text_keys(item):
            return False
    return True


def _canonical_text(value: Any) -> str | None:
    """The canonical JSON of ``value`` as plain JSON types (``canonical_json(to_json_value(value))``), None for
    None. With string keys only (every event the product writes) it is one encoding: the encoder sorts them
    as they will sort once read back. Other keys become strings first, and sort as strings."""
    if value is None:
        return None
    if _has_text_keys(value):
        return _encode(value)
    return canonical_json(to_json_value(value))


class _Texts(dict):
    """The JSON texts of the values a batch of events repeats (actors, actions, object types, moments), each
    made once."""

    def __missing__(self, value):
        text = self[value] = _CANONICAL.encode(
            value.astimezone(dt.timezone.utc).isoformat() if isinstance(value, dt.datetime) else value
        )
        return text


def _payload_text(seq, at, actor, action, object_type, object_id, before, after, texts=None) -> str:
    """``canonical_json(event_payload(...))`` from the values' canonical texts: the keys in sorted order.
    ``texts`` keeps the texts of repeated values (``_Texts``)."""
    if texts is None:
        texts = _Texts()
    return (
        f'{{"action":{texts[action]},"actor":{texts[actor]},"after":{after or "null"},'
        f'"at":{texts[at]},"before":{before or "null"},'
        f'"object_id":{_CANONICAL.encode(object_id)},"object_type":{texts[object_type]},"seq":{seq:d}}}'
    )


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
# daily jobs write thousands of events per transaction); fewer go through one INSERT per event.
COPY_AT_LEAST = 200


def _adapted_at(connection, columns: list[tuple]) -> list[tuple]:
    """The rows with ``at`` as the database takes it (events of one batch mostly share their moment)."""
    adapt = connection.ops.adapt_datetimefield_value
    seen: dict[Any, Any] = {}
    out = []
    for values in columns:
        at = values[1]
        if at not in seen:
            seen[at] = adapt(at)
        out.append((values[0], seen[at], *values[2:]))
    return out


def _insert_events(columns: list[tuple], ids: dict[int, int] | None = None) -> None:
    """Insert the rows (``_EVENT_COLUMNS`` order, JSON as text): ``COPY`` on PostgreSQL from ``COPY_AT_LEAST``
    rows (ids read back by seq in one query), else multi-row ``INSERT ... RETURNING id`` when ``ids`` are
    wanted, one prepared ``INSERT`` run for every row (``executemany``) when not."""
    connection = connections[AuditEvent.objects.db]
    qn = connection.ops.quote_name
    opts = AuditEvent._meta
    table = qn(opts.db_table)
    names = ", ".join(qn(opts.get_field(name).column) for name in _EVENT_COLUMNS)
    rows = _adapted_at(connection, columns)
    if connection.vendor == "postgresql":
        placeholder = "(%s, %s, %s, %s, %s, %s, CAST(%s AS jsonb), CAST(%s AS jsonb), %s, %s)"
        per_batch = 1000
    else:
        placeholder = "(" + ", ".join(["%s"] * len(_EVENT_COLUMNS)) + ")"
        per_batch = max(1, (connection.features.max_query_params or 999) // len(_EVENT_COLUMNS))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(rows) >= COPY_AT_LEAST:
            raw = cursor.cursor  # the driver's cursor: COPY is psycopg's, not the DB-API's
            with raw.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for values in rows:
                    copy.write_row(values)
            if ids is not None:
                ids.update(_ids_by_seq(cursor, connection, rows[0][0], rows[-1][0]))
            return
        if ids is None:
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES {placeholder}", rows)
            return
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([placeholder] * len(batch))} "
                f"RETURNING {qn(opts.pk.column)}",
                [value for values in batch for value in values],
            )
            ids.update(zip((values[0] for values in batch), (pk for (pk,) in cursor.fetchall())))


def _ids_by_seq(cursor, connection, first: int, last: int) -> dict[int, int]:
    """``{seq: id}`` of the events ``first`` to ``last`` (seq is unique), in one query."""
    qn, opts = connection.ops.quote_name, AuditEvent._meta
    seq = qn(opts.get_field("seq").column)
    cursor.execute(
        f"SELECT {seq}, {qn(opts.pk.column)} FROM {qn(opts.db_table)} WHERE {seq} BETWEEN %s AND %s",
        [first, last],
    )
    return dict(cursor.fetchall())


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
