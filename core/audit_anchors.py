"""Anchoring the audit trail: the chain head appended to the anchor file outside the database, each anchor
first recorded in the trail itself (``backoffice.audit.anchored``), and a new file started on purpose."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from django.db import transaction

from .audit import _lock_head, log_event
from .audit_anchor_file import (
    ANCHOR_ACTOR,
    ANCHORED,
    ANCHORS_INITIALISED,
    INIT_HINT,
    AnchorError,
    AnchorRecord,
    anchor_file_problem,
    anchor_path,
    last_anchor_record,
    read_anchors,
    read_last_anchor,
)
from .audit_verification import verify_chain

logger = logging.getLogger(__name__)


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
