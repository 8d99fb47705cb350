"""Closing: a case is closed when its overdue amount is paid (or its loan leaves the book), at once inside the
payment's transaction; a partial payment keeps it open with the new amount."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from core.audit import Event, about, actor_name, append_events
from core.bulk import bulk_update_rows
from loans.models import CreditTier, Installment, Loan
from loans.schedule import local_date
from notifications.cancelling import cancel_pending
from notifications.models import NotificationLog

from .calls import cancel_call_tasks
from .models import AgencyPlacement, CallTask, CollectionCase, PromiseToPay
from .placements import recall_placements_of
from .positions import CHUNK, loan_positions
from .promises import keep_covered_promises, keep_promises


def close_cases(
    cases: list[CollectionCase],
    *,
    at: dt.datetime,
    actor: Any,
    counts: Counter | None = None,
    payment_refs: dict[int, list[str]] | None = None,
) -> int:
    """Close open cases whose overdue amount is covered (or whose loan is no longer active).

    Effects: status ``closed`` (reason ``paid``, or ``loan_closed`` for a loan no longer active); open call
    tasks cancelled (they leave the queue) and pending promises kept; the legal hold of a frozen case's loan
    lifted; active agency placements recalled (reason
    ``paid``); pending contacts about the loan's paid instalments cancelled with reason ``paid``. Writes
    ``collections.case.closed`` (with the refs of the payments that cured it, from ``payment_refs`` by loan id),
    ``collections.call.cancelled`` per task and ``collections.promise.kept`` per promise.
    """
    actor = actor_name(actor)
    cases = [c for c in cases if c.is_open]
    if not cases:
        return 0
    ids = [c.pk for c in cases]
    loan_ids = [c.loan_id for c in cases]
    status_of, zone_of = {}, {}
    for loan_id, status, tz_name in Loan.objects.filter(pk__in=loan_ids).values_list(
        "pk", "status", "customer__timezone"
    ):
        status_of[loan_id], zone_of[loan_id] = status, tz_name
    with transaction.atomic():
        events = []
        for case in cases:
            reason = (
                CollectionCase.CloseReason.PAID
                if status_of.get(case.loan_id) in (Loan.Status.ACTIVE, Loan.Status.PAID_OFF)
                else CollectionCase.CloseReason.LOAN_CLOSED
            )
            events.append(
                Event(
                    action="collections.case.closed",
                    actor=actor,
                    **about(CollectionCase, case.pk),
                    at=at,
                    before={
                        "status": CollectionCase.Status.OPEN,
                        "stage": case.stage,
                        "dpd": case.days_past_due(local_date(at, zone_of[case.loan_id])),
                        "amount_overdue": case.amount_overdue,
                    },
                    after={
                        "status": CollectionCase.Status.CLOSED,
                        "reason": reason,
                        **({"legal_hold": False} if case.is_frozen else {}),
                        **(
                            {"payment_refs": payment_refs[case.loan_id]}
                            if payment_refs and payment_refs.get(case.loan_id)
                            else {}
                        ),
                    },
                )
            )
            case.status, case.closed_at, case.close_reason, case.paused_until = (
                CollectionCase.Status.CLOSED,
                at,
                reason,
                None,
            )
        bulk_update_rows(cases, ["status", "closed_at", "close_reason", "paused_until", "updated_at"])
        # A legal referral ends with its case: the loan's legal hold is lifted.
        held = [c.loan_id for c in cases if c.is_frozen]
        if held:
            Loan.objects.filter(pk__in=held).update(legal_hold=False)
        append_events(events)
        cancelled = cancel_call_tasks(
            CallTask.objects.filter(case_id__in=ids), CallTask.CancelReason.PAID, at=at, actor=actor
        ).total()
        keep_promises(
            list(PromiseToPay.objects.filter(case_id__in=ids, status=PromiseToPay.Status.PENDING)),
            at=at,
            actor=actor,
        )
        recall_placements_of(ids, AgencyPlacement.Reason.PAID, at=at, actor=actor)
        paid_ids = list(
            Installment.objects.filter(loan_id__in=loan_ids, paid_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
        if paid_ids:
            cancel_pending(reason=NotificationLog.Reason.PAID, actor=actor, at=at, installment_ids=paid_ids)
    if counts is not None:
        counts["cases_closed"] += len(cases)
        counts["call_tasks_cancelled"] += cancelled
    return len(cases)


def settle_payments(
    loan_ids: Iterable[int],
    at: dt.datetime,
    actor: Any = "system",
    payment_refs: dict[int, list[str]] | None = None,
) -> dict[str, int]:
    """React to money received on these loans (receiver of ``loans.signals.payments_recorded``, run inside the
    payment's transaction, so the cure is immediate).

    A payment that brings the loan out of arrears closes the case (see ``close_cases``: call tasks cancelled,
    contacts about the paid instalments cancelled as ``paid``, promises kept); a partial one keeps it open at
    its stage with the new amount; a pending promise covered by the payments since it was made is kept and the
    ladder resumes. Returns counts.
    """
    counts: Counter = Counter()
    loan_ids = sorted(set(loan_ids))
    tiers = {t.pk: t for t in CreditTier.objects.all()}
    for start in range(0, len(loan_ids), CHUNK):
        with transaction.atomic():
            cases = list(
                CollectionCase.objects.open()
                .filter(loan_id__in=loan_ids[start : start + CHUNK])
                .select_for_update()
            )
            if not cases:
                continue
            positions = loan_positions([c.loan_id for c in cases], at, tiers)
            to_close = [c for c in cases if c.loan_id not in positions or not positions[c.loan_id].is_overdue]
            close_cases(to_close, at=at, actor=actor, counts=counts, payment_refs=payment_refs)
            still_open = [c for c in cases if c not in to_close]
            for case in still_open:
                pos = positions[case.loan_id]
                case.oldest_due_date, case.amount_overdue, case.updated_at = (
                    pos.first_due_date,
                    pos.amount_overdue,
                    at,
                )
            bulk_update_rows(still_open, ["oldest_due_date", "amount_overdue", "updated_at"])
            keep_covered_promises(still_open, at, actor_name(actor), counts)
    return dict(counts)
