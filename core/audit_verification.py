"""Verifying the audit trail: ``verify_chain`` walks it and checks every link, the anchor file and the
append-only triggers (``manage.py verify_audit``). From the browser, the same walk is recorded as an
``AuditVerification`` with its progress and verdict. A trail of more than ``AUDIT_VERIFY_BACKGROUND_THRESHOLD``
events is walked by a django-q2 task; a smaller one in the request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .audit import _EVENT_COLUMNS, compute_hash, event_payload, log_event
from .audit_anchor_file import (
    ANCHOR_ACTIONS,
    AnchorRecord,
    _anchor_record,
    anchor_file_problem,
    anchor_path,
    read_anchors,
)
from .audit_triggers import missing_audit_triggers
from .models import GENESIS_HASH, AuditChainHead, AuditEvent, AuditVerification

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
