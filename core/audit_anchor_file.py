"""The anchor file of the audit trail (``settings.AUDIT_ANCHOR_PATH``), read, and the trail's own record of
what was written to it: enough to tell a missing, shortened or replaced file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from .models import ANCHOR_ACTIONS, AuditEvent


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


def read_tail_anchors(path: Path | None) -> list[dict[str, Any]]:
    """The file's last anchors (about twenty), oldest first, reading only its end (the file grows by a line per
    anchor, and the head is anchored every minute something is sent). Empty for a missing or empty file. Raises
    ValueError for a malformed line."""
    if path is None or not path.exists():
        return []
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        fh.seek(start)
        lines = fh.read().decode("utf-8", errors="replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first may be cut
    lines = [line for line in lines if line.strip()]
    if not lines and start > 0:
        return read_anchors(path)[-1:]
    return [_parse_anchor(line, None, path) for line in lines]


def read_last_anchor(path: Path | None) -> dict[str, Any] | None:
    """The file's last anchor, reading only its end. None for a missing or empty file. Raises ValueError for a
    malformed line."""
    tail = read_tail_anchors(path)
    return tail[-1] if tail else None


ANCHOR_ACTOR = "job:anchor_audit"
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
    at: Any = None

    def matches(self, anchor: dict[str, Any] | None) -> bool:
        return anchor is not None and (anchor["seq"], anchor["hash"]) == (self.seq, self.hash)


def _anchor_record(seq: int, digest: str, after: Any, at: Any = None) -> AnchorRecord | None:
    try:
        return AnchorRecord(seq=seq, hash=digest, anchors=int((after or {})["anchors"]), at=at)
    except (KeyError, TypeError, ValueError):
        return None


def anchor_events(using: str = "default"):
    """The trail's records of the anchors written, newest first: read through their own partial index
    (``audit_anchor_seq_idx``, whose condition is this filter's)."""
    return AuditEvent.objects.using(using).filter(action__in=ANCHOR_ACTIONS).order_by("-seq")


def last_anchor_records(using: str = "default", n: int = 2) -> list[AnchorRecord | None]:
    """The trail's own records of the last ``n`` anchors written, newest first (fewer before there were ``n``)."""
    rows = anchor_events(using).values_list("seq", "hash", "after", "at")[:n]
    return [_anchor_record(*row) for row in rows]


def last_anchor_record(using: str = "default") -> AnchorRecord | None:
    """The trail's own record of the last anchor written (None before the first)."""
    records = last_anchor_records(using, 1)
    return records[0] if records else None


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
