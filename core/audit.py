"""Writing the audit trail.

Every event is chained to the previous one: ``hash = sha256(prev_hash + canonical_json(event))``. Writers lock
the chain head row for the rest of their transaction, so events are written in the same transaction as the
change they record and two concurrent writers can never both extend the same head.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
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


# --- Verification and the anchor file ----------------------------------------------------------------------

VERIFY_FIELDS = ("id", *_EVENT_COLUMNS)


@dataclass
class Verification:
    """What ``verify_chain`` found: ``problem`` is empty when the trail is intact."""

    count: int = 0
    anchors_checked: int = 0
    problem: str = ""
    seq: int | None = None
    event_id: int | None = None

    @property
    def is_intact(self) -> bool:
        return not self.problem


def anchor_path() -> Path | None:
    path = getattr(settings, "AUDIT_ANCHOR_PATH", None)
    return Path(path) if path else None


def _parse_anchor(line: str, number: int | None, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(line)
        return {"seq": int(data["seq"]), "hash": str(data["hash"]), "at": data.get("at", ""), "line": number}
    except (ValueError, KeyError, TypeError) as exc:
        where = f"line {number}" if number is not None else "the last line"
        raise ValueError(f"{path.name} {where} is not an anchor: {exc}") from exc


def read_anchors(path: Path | None) -> list[dict[str, Any]]:
    """The anchors written so far, oldest first. Raises ValueError naming the line of a malformed anchor."""
    if path is None or not path.exists():
        return []
    anchors = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                anchors.append(_parse_anchor(line, number, path))
    return anchors


TAIL_BYTES = 4096  # an anchor line is about 150 bytes


def read_last_anchor(path: Path | None) -> dict[str, Any] | None:
    """The file's last anchor, reading only its end (the file grows by a line per anchor, and the head is anchored
    every minute something is sent). None for a missing or empty file. Raises ValueError for a malformed line."""
    if path is None or not path.exists():
        return None
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        fh.seek(start)
        lines = fh.read().decode("utf-8", errors="replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first may be cut
    lines = [line for line in lines if line.strip()]
    if not lines:
        anchors = read_anchors(path) if start > 0 else []
        return anchors[-1] if anchors else None
    return _parse_anchor(lines[-1], None, path)


ANCHORED = "backoffice.audit.anchored"
ANCHORS_INITIALISED = "backoffice.audit.anchors_initialised"
ANCHOR_ACTIONS = (ANCHORED, ANCHORS_INITIALISED)
ANCHOR_ACTOR = "job:anchor_audit"
# Events after whose transaction the head is anchored (see ``log_events``): what an import or an export did is
# covered by an anchor as soon as it is committed, not only at the next pipeline run.
ANCHOR_AFTER = frozenset({"backoffice.import.completed", "backoffice.export.completed"})
INIT_HINT = "run `manage.py verify_audit --init-anchors --reason ...` to start a new anchor file on purpose"


class AnchorError(Exception):
    """The anchor file is not what the trail says was written to it (missing, shorter, replaced, or ahead of the
    trail): nothing more is appended until an operator initialises a new file (``init_anchors``)."""


@dataclass(frozen=True)
class AnchorRecord:
    """The last ``backoffice.audit.anchored`` (or ``anchors_initialised``) event: the file held ``anchors``
    anchors once this event was anchored, the last of them being this event's own seq and hash."""

    seq: int
    hash: str
    anchors: int


def _anchor_record(seq: int, digest: str, after: Any) -> AnchorRecord | None:
    try:
        return AnchorRecord(seq=seq, hash=digest, anchors=int((after or {})["anchors"]))
    except (KeyError, TypeError, ValueError):
        return None


def last_anchor_record(using: str = "default") -> AnchorRecord | None:
    """The trail's own record of the last anchor written (None before the first)."""
    row = (
        AuditEvent.objects.using(using)
        .filter(action__in=ANCHOR_ACTIONS)
        .order_by("-seq")
        .values_list("seq", "hash", "after")
        .first()
    )
    return _anchor_record(*row) if row else None


def anchor_file_problem(
    path: Path | None, anchors: list[dict[str, Any]], record: AnchorRecord | None, head_seq: int
) -> str:
    """What is wrong with the anchor file against the trail, or "" when nothing is.

    Wrong: no file (or no path set); fewer anchors than the trail records were written, or a different anchor at
    that place (truncated, replaced, restored from an older copy); an anchor beyond the trail's last event."""
    if path is None:
        return f"AUDIT_ANCHOR_PATH is not set: the trail has no anchor file; {INIT_HINT}"
    if not path.exists():
        return f"the anchor file {path} is missing; {INIT_HINT}"
    if anchors and anchors[-1]["seq"] > head_seq:
        last = anchors[-1]
        return (
            f"the anchor file's last anchor (line {last['line']}) is for seq {last['seq']}, beyond the trail's "
            f"last event (seq {head_seq}): events were removed, or the file belongs to another database"
        )
    if record is not None:
        if len(anchors) < record.anchors:
            return (
                f"the anchor file holds {len(anchors)} anchors but the trail records that {record.anchors} were "
                f"written (event seq {record.seq}): the file was truncated or replaced; {INIT_HINT}"
            )
        anchor = anchors[record.anchors - 1]
        if (anchor["seq"], anchor["hash"]) != (record.seq, record.hash):
            return (
                f"anchor {record.anchors} of the file (line {anchor['line']}) is not the one the trail recorded "
                f"(event seq {record.seq}): the file was replaced; {INIT_HINT}"
            )
    return ""


def _append_anchor(path: Path, seq: int, digest: str, now: dt.datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {"seq": seq, "hash": digest, "at": now.astimezone(dt.timezone.utc).isoformat()}, sort_keys=True
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_anchor(now: dt.datetime) -> dict[str, Any]:
    """Anchor the chain head: append ``{seq, hash, at}`` as a JSON line to ``settings.AUDIT_ANCHOR_PATH``.

    The file lives outside the database, so a rewrite of the table (even with recomputed hashes), or the removal
    of its anchored tail, no longer matches it. Each anchor is itself recorded first, as a
    ``backoffice.audit.anchored`` event carrying the number of anchors the file then holds, and the anchor is that
    event's seq and hash: the trail knows how long the file must be, so a missing or shortened file is caught.

    Runs after every pipeline step, after every import and export (when their transaction commits), in the
    hourly housekeeping and at the end of the pipeline. A head already anchored adds nothing. The very first
    anchor of a trail creates the file (``backoffice.audit.anchors_initialised``). Holds the chain head lock
    while it appends, so concurrent writers append in order.

    Raises ``AnchorError`` (and writes nothing) when the file does not hold what the trail recorded; errors of
    the file system (no permission, disk full) propagate and roll the anchor event back."""
    path = anchor_path()
    if path is None:
        return {"skipped": "AUDIT_ANCHOR_PATH is not set"}
    with transaction.atomic():
        head = _lock_head()
        try:
            last = read_last_anchor(path)
            if head.seq == 0 or (last is not None and (last["seq"], last["hash"]) == (head.seq, head.hash)):
                return {"seq": head.seq, "written": 0}  # nothing yet, or the head is already anchored
            record = last_anchor_record()
            if record is None:
                # The trail's first anchor (or the first since anchors were recorded): read the whole file once.
                anchors = read_anchors(path)
                count = len(anchors)
                problem = anchor_file_problem(path, anchors, None, head.seq) if anchors else ""
            else:
                count = record.anchors
                problem = _tail_problem(path, last, record)
        except ValueError as exc:
            raise AnchorError(f"{exc}; {INIT_HINT}") from exc
        if problem:
            raise AnchorError(problem)
        event = log_event(
            ANCHORED if count else ANCHORS_INITIALISED,
            actor=ANCHOR_ACTOR,
            at=now,
            after={"anchors": count + 1, "file": path.name, "head": head.seq},
        )
        _append_anchor(path, event.seq, event.hash, now)
    return {"seq": event.seq, "written": 1}


def _tail_problem(path: Path, last: dict[str, Any] | None, record: AnchorRecord) -> str:
    """Before appending: the file must end with the anchor the trail last recorded writing (``verify_chain``
    checks the whole file; this is the cheap check of every anchoring)."""
    if not path.exists():
        return anchor_file_problem(path, [], record, record.seq)
    if last is None or (last["seq"], last["hash"]) != (record.seq, record.hash):
        return (
            f"the anchor file does not end with anchor {record.anchors}, the one the trail recorded (event seq "
            f"{record.seq}): the file was truncated or replaced; {INIT_HINT}"
        )
    return ""


def anchor_quietly(now: dt.datetime) -> dict[str, Any]:
    """``write_anchor`` where a broken anchor file must not undo or fail the work just committed (an import, an
    export, one step of the pipeline): the problem is logged, and ``verify_audit`` reports it."""
    try:
        return write_anchor(now)
    except AnchorError as exc:
        logger.error("audit anchor not written: %s", exc)
        return {"refused": str(exc)}


def init_anchors(now: dt.datetime, *, actor: Any, reason: str = "", using: str = "default") -> dict[str, Any]:
    """Start a new anchor file on purpose (``verify_audit --init-anchors``) after checking the chain itself.

    An existing file is kept beside the new one as ``<name>.replaced-<UTC time>``. Recorded as
    ``backoffice.audit.anchors_initialised`` (who, why, what the previous file was), whose seq and hash become
    the first anchor. Raises ``AnchorError`` when the chain itself is broken (a broken trail is not blessed) or
    AUDIT_ANCHOR_PATH is not set."""
    path = anchor_path()
    if path is None:
        raise AnchorError("AUDIT_ANCHOR_PATH is not set")
    chain = verify_chain(using=using, check_anchors=False)
    if not chain.is_intact:
        raise AnchorError(f"the chain itself is broken at seq {chain.seq}: {chain.problem}")
    with transaction.atomic(using=using):
        _lock_head()
        previous: dict[str, Any] = {"state": "missing"}
        if path.exists():
            try:
                count: int | str = len(read_anchors(path))
            except ValueError:
                count = "unreadable"
            aside = path.with_name(f"{path.name}.replaced-{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}")
            path.rename(aside)
            previous = {"state": "replaced", "anchors": count, "moved_to": aside.name}
        event = log_event(
            ANCHORS_INITIALISED,
            actor=actor,
            at=now,
            after={"anchors": 1, "file": path.name, "reason": reason, "previous_file": previous},
        )
        _append_anchor(path, event.seq, event.hash, now)
    return {"seq": event.seq, "written": 1, "previous_file": previous}


def verify_chain(
    *,
    path: Path | None = None,
    using: str = "default",
    chunk_size: int = 2000,
    check_anchors: bool = True,
    progress=None,
) -> Verification:
    """Walk the trail in ``seq`` order in constant memory and check every link.

    Checks, in order, for each event: ``seq`` continuity from 1, ``prev_hash`` equal to the previous event's
    hash, ``hash`` equal to the one recomputed from the stored fields, and the hash written in the anchor file
    (``path``, default ``settings.AUDIT_ANCHOR_PATH``) for that seq. Then: no anchored event is missing, the
    chain head row agrees with the last event, the anchor file holds every anchor the trail records was written
    (a missing or shortened file is a failure), and the append-only triggers are in place. Stops at the first
    problem. ``check_anchors=False`` checks the chain alone (before initialising a new anchor file). Never
    writes. ``progress(count)``, when given, is called after every ``chunk_size`` events."""
    result = Verification()
    path = anchor_path() if path is None else path
    anchor_list: list[dict[str, Any]] = []
    if check_anchors:
        try:
            anchor_list = read_anchors(path)
        except ValueError as exc:
            result.problem = str(exc)
            return result
    anchors = {a["seq"]: a for a in anchor_list}
    expected_seq, prev = 1, GENESIS_HASH
    if 0 in anchors:
        result.anchors_checked += 1
        if anchors[0]["hash"] != GENESIS_HASH:
            result.problem = f"the anchor of seq 0 (line {anchors[0]['line']}) is not the genesis hash"
            return result
    rows = (
        AuditEvent.objects.using(using)
        .order_by("seq")
        .values_list(*VERIFY_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    last_seq, last_hash = 0, GENESIS_HASH
    record: AnchorRecord | None = None
    for row in rows:
        data = dict(zip(VERIFY_FIELDS, row, strict=True))
        seq = data["seq"]
        result.seq, result.event_id = seq, data["id"]
        if seq != expected_seq:
            result.problem = (
                f"sequence broken: expected seq {expected_seq}, found seq {seq} (events deleted or inserted)"
            )
            return result
        if data["prev_hash"] != prev:
            result.problem = "prev_hash does not link to the hash of the previous event"
            return result
        payload = event_payload(
            **{
                k: data[k]
                for k in ("seq", "at", "actor", "action", "object_type", "object_id", "before", "after")
            }
        )
        if compute_hash(data["prev_hash"], payload) != data["hash"]:
            result.problem = (
                "hash does not match the event's content (the row was changed after it was written)"
            )
            return result
        anchor = anchors.get(seq)
        if anchor is not None:
            result.anchors_checked += 1
            if anchor["hash"] != data["hash"]:
                result.problem = f"hash differs from the anchor written at {anchor['at']} (line {anchor['line']}): the trail was rewritten"
                return result
        if data["action"] in ANCHOR_ACTIONS:
            record = _anchor_record(seq, data["hash"], data["after"]) or record
        result.count += 1
        prev, last_seq, last_hash = data["hash"], seq, data["hash"]
        expected_seq += 1
        if progress is not None and result.count % chunk_size == 0:
            progress(result.count)
    result.seq = result.event_id = None
    beyond = sorted(s for s in anchors if s > last_seq)
    if beyond:
        result.seq = beyond[0]
        result.problem = (
            f"anchored event seq {beyond[0]} is missing: the trail ends at seq {last_seq} (truncated)"
        )
        return result
    head = AuditChainHead.objects.using(using).filter(id=1).values_list("seq", "hash").first()
    if head is not None and head != (last_seq, last_hash):
        result.seq = head[0]
        result.problem = f"the chain head (seq {head[0]}) does not match the last event (seq {last_seq})"
        return result
    if check_anchors:
        problem = anchor_file_problem(path, anchor_list, record, last_seq)
        if problem:
            result.problem = problem
            return result
    missing = missing_audit_triggers(connections[using])
    if missing:
        result.problem = f"append-only triggers missing: {', '.join(missing)}"
    return result


# --- Append-only: the database itself refuses UPDATE and DELETE on the audit table -------------------------

TRIGGER_NAMES = (
    "backoffice_auditevent_no_update",
    "backoffice_auditevent_no_delete",
    "backoffice_auditevent_no_truncate",
)
PG_FUNCTION = "backoffice_auditevent_append_only"


def _table(connection) -> str:
    return connection.ops.quote_name(AuditEvent._meta.db_table)


def install_audit_triggers(connection) -> None:
    """Create the triggers refusing UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the audit table.

    Idempotent. Raises NotImplementedError on a database vendor without an implementation."""
    table = _table(connection)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name, op in (TRIGGER_NAMES[0], "UPDATE"), (TRIGGER_NAMES[1], "DELETE"):
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {op} refused'); END"
                )
        elif connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            )
            for name, op, level in (
                (TRIGGER_NAMES[0], "UPDATE", "ROW"),
                (TRIGGER_NAMES[1], "DELETE", "ROW"),
                (TRIGGER_NAMES[2], "TRUNCATE", "STATEMENT"),
            ):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH {level} EXECUTE FUNCTION {PG_FUNCTION}()"
                )
        else:
            raise NotImplementedError(f"no append-only triggers for {connection.vendor}")


def remove_audit_triggers(connection) -> None:
    """Drop the append-only triggers (reverse migration, and ``flush`` of a development or test database)."""
    table = _table(connection)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name in TRIGGER_NAMES[:2]:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        elif connection.vendor == "postgresql":
            for name in TRIGGER_NAMES:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")


def missing_audit_triggers(connection) -> list[str]:
    """The names of the append-only triggers that are not in the database (empty when all are there)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [AuditEvent._meta.db_table],
            )
            expected = TRIGGER_NAMES[:2]
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [AuditEvent._meta.db_table],
            )
            expected = TRIGGER_NAMES
        else:
            return []
        present = {row[0] for row in cursor.fetchall()}
    return [name for name in expected if name not in present]


__all__ = [
    "GENESIS_HASH",
    "AnchorError",
    "Event",
    "Verification",
    "actor_name",
    "compute_hash",
    "event_hash",
    "init_anchors",
    "install_audit_triggers",
    "log_event",
    "log_events",
    "missing_audit_triggers",
    "remove_audit_triggers",
    "verify_chain",
    "write_anchor",
]
