"""Verifying the audit trail: ``verify_chain`` walks it and checks every link, the anchor file and the
append-only triggers (``manage.py verify_audit``). From the browser, the same walk is recorded as an
``AuditVerification`` with its progress and verdict. A trail of more than ``AUDIT_VERIFY_BACKGROUND_THRESHOLD``
events is walked by a django-q2 task; a smaller one in the request."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .audit import _EVENT_COLUMNS, compute_hash, event_payload, log_event
from .audit_anchor_file import (
    AnchorRecord,
    _anchor_record,
    anchor_file_problem,
    anchor_path,
    read_anchors,
)
from .audit_archive import ArchiveError, ArchiveReader, manifest_path
from .audit_triggers import missing_audit_triggers
from .models import ANCHOR_ACTIONS, GENESIS_HASH, AuditChainHead, AuditEvent, AuditVerification, MonthArchive

VERIFY_FIELDS = ("id", *_EVENT_COLUMNS)


@dataclass
class Verification:
    """What ``verify_chain`` found: ``problem`` is empty when the trail is intact."""

    count: int = 0
    anchors_checked: int = 0
    problem: str = ""
    seq: int | None = None
    event_id: int | None = None
    archived: int = 0
    where: str = ""

    @property
    def is_intact(self) -> bool:
        return not self.problem


def verify_chain(
    *,
    path: Path | None = None,
    using: str = "default",
    chunk_size: int = 2000,
    check_anchors: bool = True,
    progress=None,
    archives: list[Path] | None = None,
) -> Verification:
    """Walk the trail in ``seq`` order in constant memory and check every link.

    Checks, in order, for each event: ``seq`` continuity from 1, ``prev_hash`` equal to the previous event's
    hash, ``hash`` equal to the one recomputed from the stored fields, and the hash written in the anchor file
    (``path``, default ``settings.AUDIT_ANCHOR_PATH``) for that seq. Then: no anchored event is missing, the
    chain head row agrees with the last event, the anchor file holds every anchor the trail records was written
    (a missing or shortened file is a failure), every archive file is the one archived (its SHA-256 and its
    number of events), and the append-only triggers are in place. Stops at the first problem.
    ``check_anchors=False`` checks the chain alone (before initialising a new anchor file). Never writes.
    ``progress(count)``, when given, is called after every ``chunk_size`` events.

    Months archived from the trail (``MonthArchive``) are read from their files (``archives``, else where they
    were written) and walked with the live events in one ``seq`` order, so the chain is proven through them;
    a registered archive whose file is not found fails, naming the month and its events."""
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
    if 0 in anchors:
        result.anchors_checked += 1
        if anchors[0]["hash"] != GENESIS_HASH:
            result.problem = f"the anchor of seq 0 (line {anchors[0]['line']}) is not the genesis hash"
            return result
    readers, result.problem = _archive_readers(archives, using)
    if result.problem:
        return result
    rows = heapq.merge(
        _live_events(using, chunk_size),
        *(_archived_events(reader) for _, reader in readers),
        key=itemgetter(0),
    )
    try:
        end = _walk(rows, result, anchors, progress, chunk_size)
    except ArchiveError as exc:
        result.problem = str(exc)
        return result
    if end is None:
        return result
    last_seq, last_hash, record = end
    result.seq = result.event_id = None
    result.where = ""
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
    for archive, reader in readers:
        if (reader.rows, reader.sha256) != (archive.rows, archive.file_sha256):
            result.problem = (
                f"the archive of {archive.month:%Y-%m} ({reader.path.name}) is not the file that was archived: "
                f"{reader.rows} events and SHA-256 {reader.sha256}, archived {archive.rows} events and SHA-256 "
                f"{archive.file_sha256}"
            )
            return result
    missing = missing_audit_triggers(connections[using])
    if missing:
        result.problem = f"append-only triggers missing: {', '.join(missing)}"
    return result


def _walk(rows, result: Verification, anchors, progress, chunk_size) -> tuple | None:
    """Check each event's links, hash and anchor; the last seq, hash and anchor record, or None at a problem
    (``result`` then names it)."""
    expected_seq, prev = 1, GENESIS_HASH
    last_seq, last_hash = 0, GENESIS_HASH
    record: AnchorRecord | None = None
    for seq, where, row in rows:
        data = dict(zip(VERIFY_FIELDS, row, strict=True))
        result.seq, result.event_id, result.where = seq, data["id"], where
        if seq != expected_seq:
            result.problem = (
                f"sequence broken: expected seq {expected_seq}, found seq {seq} (events deleted or inserted)"
            )
            return None
        if data["prev_hash"] != prev:
            result.problem = "prev_hash does not link to the hash of the previous event"
            return None
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
            return None
        anchor = anchors.get(seq)
        if anchor is not None:
            result.anchors_checked += 1
            if anchor["hash"] != data["hash"]:
                result.problem = f"hash differs from the anchor written at {anchor['at']} (line {anchor['line']}): the trail was rewritten"
                return None
        if data["action"] in ANCHOR_ACTIONS:
            record = _anchor_record(seq, data["hash"], data["after"]) or record
        result.count += 1
        result.archived += bool(where)
        prev, last_seq, last_hash = data["hash"], seq, data["hash"]
        expected_seq += 1
        if progress is not None and result.count % chunk_size == 0:
            progress(result.count)
    return last_seq, last_hash, record


def _live_events(using: str, chunk_size: int) -> Iterator[tuple[int, str, tuple]]:
    rows = (
        AuditEvent.objects.using(using)
        .order_by("seq")
        .values_list(*VERIFY_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    seq_at = VERIFY_FIELDS.index("seq")
    for row in rows:
        yield row[seq_at], "", row


def _archived_events(reader: ArchiveReader) -> Iterator[tuple[int, str, tuple]]:
    for seq, line, values in reader.events():
        yield seq, f"archive {reader.path.name} line {line}", values


def _archive_readers(archives, using: str) -> tuple[list[tuple[MonthArchive, ArchiveReader]], str]:
    """A reader for every registered archive of the trail: the file given for it in ``archives`` (matched by
    name, else by the month its manifest names), else the file where it was written. A problem when a given
    file is no registered archive or a registered archive's file is not found."""
    registered = list(
        MonthArchive.objects.using(using).filter(kind=MonthArchive.Kind.AUDIT).order_by("month")
    )
    chosen: dict[int, Path] = {}
    for given in map(Path, archives or []):
        if not given.exists():
            return [], f"archive file {given} not found"
        match = next((a for a in registered if Path(a.file_path).name == given.name), None)
        if match is None:
            month = _manifest_month(given)
            match = next((a for a in registered if f"{a.month:%Y-%m}" == month), None)
        if match is None:
            return [], f"{given.name} is not a registered archive of the audit trail"
        chosen[match.pk] = given
    readers = []
    for archive in registered:
        file = chosen.get(archive.pk) or Path(archive.file_path)
        if not file.exists():
            return [], (
                f"the archive of {archive.month:%Y-%m} (events seq {archive.first_seq} to {archive.last_seq}) "
                f"is not at {archive.file_path}: give its file with --archive"
            )
        readers.append((archive, ArchiveReader(file)))
    return readers, ""


def _manifest_month(path: Path) -> str:
    try:
        return str(json.loads(manifest_path(path).read_text(encoding="utf-8")).get("month", ""))
    except (OSError, ValueError, AttributeError):
        return ""


PROGRESS_EVERY = 2000


def start_verification(user) -> AuditVerification:
    """Record a verification for ``user`` and run it now (small trail) or queue it (large trail)."""
    total = AuditChainHead.objects.filter(id=1).values_list("seq", flat=True).first() or 0
    verification = AuditVerification.objects.create(user=user, events_total=total)
    if total <= settings.AUDIT_VERIFY_BACKGROUND_THRESHOLD:
        run_verification(verification.pk)
        verification.refresh_from_db()
        return verification
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "core.audit_verification.run_verification",
            verification.pk,
            task_name=f"audit-verification-{verification.pk}",
            group="audit-verification",
        )
    )
    return verification


def run_verification(verification_id: int) -> str:
    """Walk the trail for a queued verification, writing its progress, then its verdict, and record
    ``backoffice.audit.verified`` (after the walk: the event is not part of what was checked). A verification
    no longer queued is left alone, so running the task twice walks once. Returns the status."""
    claimed = AuditVerification.objects.filter(
        pk=verification_id, status=AuditVerification.Status.QUEUED
    ).update(status=AuditVerification.Status.RUNNING)
    verification = AuditVerification.objects.select_related("user").get(pk=verification_id)
    if not claimed:
        return verification.status

    def progress(count: int) -> None:
        AuditVerification.objects.filter(pk=verification_id).update(events_checked=count)

    try:
        result = verify_chain(progress=progress, chunk_size=PROGRESS_EVERY)
    except Exception as exc:
        verification.status, verification.problem = AuditVerification.Status.FAILED, str(exc)[:2000]
        verification.finished_at = timezone.now()
        verification.save(update_fields=["status", "problem", "finished_at"])
        raise
    verification.status = (
        AuditVerification.Status.INTACT if result.is_intact else AuditVerification.Status.BROKEN
    )
    verification.events_checked = result.count
    verification.anchors_checked = result.anchors_checked
    verification.broken_seq = None if result.is_intact else result.seq
    verification.problem = result.problem or ""
    verification.finished_at = timezone.now()
    with transaction.atomic():
        verification.save()
        log_event(
            "backoffice.audit.verified",
            actor=verification.user,
            obj=verification,
            after={
                "intact": result.is_intact,
                "events": result.count,
                "anchors": result.anchors_checked,
                "broken_seq": verification.broken_seq,
                "problem": verification.problem,
            },
        )
    return verification.status
