"""Verifying the audit trail from the browser: the same walk as ``manage.py verify_audit`` (``verify_chain``),
recorded as an ``AuditVerification`` with its progress and verdict. A trail of more than
``AUDIT_VERIFY_BACKGROUND_THRESHOLD`` events is walked by a django-q2 task; a smaller one in the request."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .audit import log_event, verify_chain
from .models import AuditChainHead, AuditVerification

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
