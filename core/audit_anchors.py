"""Anchoring the audit trail: the chain head appended to the anchor file outside the database, each anchor
first recorded in the trail itself (``backoffice.audit.anchored``), and a new file started on purpose."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import transaction

from .audit import _lock_head, log_event
from .audit_anchor_file import (
    ANCHOR_ACTOR,
    INIT_HINT,
    AnchorError,
    AnchorRecord,
    anchor_file_problem,
    anchor_path,
    last_anchor_records,
    read_anchors,
    read_last_anchor,
    read_tail_anchors,
)
from .audit_verification import verify_chain
from .models import ANCHORED, ANCHORS_INITIALISED

logger = logging.getLogger(__name__)


def _append_anchor(path: Path, seq: int, digest: str, at: dt.datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {"seq": seq, "hash": digest, "at": at.astimezone(dt.timezone.utc).isoformat()}, sort_keys=True
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Appends to the anchor file one at a time, across processes (a lock file beside it: locking the anchor file
    itself would create it, and a missing file is something to report, not to paper over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _pending_path(path: Path) -> Path:
    return path.with_name(path.name + ".pending")


def _write_pending(path: Path, record: AnchorRecord) -> None:
    """Note, before the anchor's event commits, the line about to be appended: if the process dies after the
    commit and before the append, the next anchoring finds the note naming the trail's last anchor and writes
    it. A file merely one line short, with no such note, stays a problem (truncated, or restored from an older
    copy)."""
    pending = _pending_path(path)
    with pending.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"seq": record.seq, "hash": record.hash}, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())


def _read_pending(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_pending_path(path).read_text(encoding="utf-8"))
        return {"seq": int(data["seq"]), "hash": str(data["hash"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _clear_pending(path: Path, record: AnchorRecord | None = None) -> None:
    """Remove the note (only if it names ``record``, when given)."""
    if record is None or record.matches(_read_pending(path)):
        _pending_path(path).unlink(missing_ok=True)


def _follows(previous: AnchorRecord | None, last: dict[str, Any] | None) -> bool:
    """The file ends where ``previous`` left it: with its anchor, or empty before the trail's first."""
    return previous.matches(last) if previous is not None else last is None


def _catch_up(path: Path, records: list[AnchorRecord | None]) -> str:
    """Before anchoring: make the file end with the trail's last recorded anchor (``records[0]``), or say why it
    cannot. Called holding the chain head's lock and the file lock, so no anchoring is half-way.

    The line of an anchor is appended only once its event is committed (``write_anchor``), so a crash between
    the two leaves the file one anchor short, never one ahead (a line for an event that was rolled back would
    look exactly like a trail whose anchored tail was removed). Such a crash leaves the pending note naming
    that anchor: then, and only then, the missing line is written here. A note naming anything else is left
    from a transaction that was rolled back, and is dropped."""
    record, previous = (records + [None, None])[:2]
    tail = read_tail_anchors(path)
    last = tail[-1] if tail else None
    pending = _read_pending(path)
    if record is None or record.matches(last):
        _clear_pending(path)
        return ""
    if record.matches(pending) and _follows(previous, last):
        _append_anchor(path, record.seq, record.hash, record.at)
        _clear_pending(path)
        return ""
    if pending is not None and not record.matches(pending):
        _clear_pending(path)
    return _tail_problem(path, last, record)


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and (a["seq"], a["hash"]) == (b["seq"], b["hash"])
    )


def _append_committed(path: Path, written: AnchorRecord, seen_last: dict[str, Any] | None) -> None:
    """After the anchor's event is committed: append its line if the file still ends where the anchoring saw it
    end (``seen_last``), unless an anchoring that came in between already caught this one up."""
    with _file_lock(path):
        try:
            tail = read_tail_anchors(path)
        except ValueError as exc:
            logger.error("audit anchor seq %s not written: %s", written.seq, exc)
            return
        if any(written.matches(anchor) for anchor in tail):
            _clear_pending(path, written)
            return
        if not _same(seen_last, tail[-1] if tail else None):
            logger.error(
                "audit anchor seq %s not written: the anchor file changed while it was being anchored; %s",
                written.seq,
                INIT_HINT,
            )
            return
        _append_anchor(path, written.seq, written.hash, written.at)
        _clear_pending(path, written)


def write_anchor(now: dt.datetime) -> dict[str, Any]:
    """Anchor the chain head: append ``{seq, hash, at}`` as a JSON line to ``settings.AUDIT_ANCHOR_PATH``.

    The file lives outside the database, so a rewrite of the table (even with recomputed hashes), or the removal
    of its anchored tail, no longer matches it. Each anchor is itself recorded first, as a
    ``backoffice.audit.anchored`` event carrying the number of anchors the file then holds, and the anchor is that
    event's seq and hash: the trail knows how long the file must be, so a missing or shortened file is caught.
    The line is appended once that event is committed (a crash in between is caught up by the next anchoring:
    ``_catch_up``); appends are serialised by a lock file and by the chain head's lock.

    Runs after every pipeline step, after every import and export (when their transaction commits), in the
    hourly housekeeping and at the end of the pipeline. A head already anchored adds nothing. The very first
    anchor of a trail creates the file (``backoffice.audit.anchors_initialised``).

    Raises ``AnchorError`` (and writes nothing) when the file does not hold what the trail recorded; errors of
    the file system (no permission, disk full) propagate."""
    path = anchor_path()
    if path is None:
        return {"skipped": "AUDIT_ANCHOR_PATH is not set"}
    with transaction.atomic():
        head = _lock_head()
        with _file_lock(path):
            try:
                records = last_anchor_records()
                if records and records[0] is not None:
                    problem = _catch_up(path, records)
                    if problem:
                        raise AnchorError(problem)
                last = read_last_anchor(path)
                if head.seq == 0 or (
                    last is not None and (last["seq"], last["hash"]) == (head.seq, head.hash)
                ):
                    return {"seq": head.seq, "written": 0}  # nothing yet, or the head is already anchored
                if records and records[0] is not None:
                    count = records[0].anchors
                else:
                    # The trail's first anchor (or the first since anchors were recorded): read the whole file once.
                    anchors = read_anchors(path)
                    count = len(anchors)
                    problem = anchor_file_problem(path, anchors, None, head.seq) if anchors else ""
                    if problem:
                        raise AnchorError(problem)
            except ValueError as exc:
                raise AnchorError(f"{exc}; {INIT_HINT}") from exc
            event = log_event(
                ANCHORED if count else ANCHORS_INITIALISED,
                actor=ANCHOR_ACTOR,
                at=now,
                after={"anchors": count + 1, "file": path.name, "head": head.seq},
            )
            written = AnchorRecord(seq=event.seq, hash=event.hash, anchors=count + 1, at=now)
            _write_pending(path, written)
    # Committed here, unless a caller holds a transaction open around this one (then the line is written before
    # that commits, as a caller that chose to hold it must accept).
    _append_committed(path, written, last)
    return {"seq": event.seq, "written": 1}


def _tail_problem(path: Path, last: dict[str, Any] | None, record: AnchorRecord) -> str:
    """The file must end with the anchor the trail last recorded writing (``verify_chain`` checks the whole
    file; this is the cheap check of every anchoring)."""
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
        with _file_lock(path):
            previous: dict[str, Any] = {"state": "missing"}
            if path.exists():
                try:
                    count: int | str = len(read_anchors(path))
                except ValueError:
                    count = "unreadable"
                aside = path.with_name(
                    f"{path.name}.replaced-{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
                )
                path.rename(aside)
                previous = {"state": "replaced", "anchors": count, "moved_to": aside.name}
            event = log_event(
                ANCHORS_INITIALISED,
                actor=actor,
                at=now,
                after={"anchors": 1, "file": path.name, "reason": reason, "previous_file": previous},
            )
            written = AnchorRecord(seq=event.seq, hash=event.hash, anchors=1, at=now)
            _write_pending(path, written)
    _append_committed(path, written, None)  # the file was just set aside: the new one starts here
    return {"seq": event.seq, "written": 1, "previous_file": previous}
