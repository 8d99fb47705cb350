"""Legal: a case referred to legal freezes all automatic contact for its loan (its call tasks cancelled, its
agency placements recalled, its pending contacts cancelled), and the daily sweep keeps it frozen."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import Event, about, actor_name, append_events
from core.bulk import bulk_update_rows
from loans.models import Installment, Loan
from loans.schedule import local_date
from notifications.cancelling import cancel_pending
from notifications.models import NotificationLog

from .calls import cancel_call_tasks
from .models import AgencyPlacement, CallTask, CollectionCase, LegalReferral
from .placements import recall_placements_of
from .positions import CHUNK, JOB_ACTOR


def refer_to_legal(
    case: CollectionCase, *, actor: Any, at: dt.datetime, note: str = "", stage: str = "legal"
) -> LegalReferral:
    """Refer an open case to legal and freeze all automatic contact for its loan.

    Effects: a ``LegalReferral``; the case is frozen at stage ``legal`` and its loan put on legal hold
    (``Loan.legal_hold``, until the case closes); open call tasks cancelled; active
    agency placements recalled (reason ``legal``); pending contacts about the loan cancelled (reason
    ``do_not_contact``). Writes ``collections.case.referred_to_legal``. Raises ``ValidationError`` for a
    closed or already referred case.
    """
    with transaction.atomic():
        locked = CollectionCase.objects.select_for_update().get(pk=case.pk)
        if not locked.is_open:
            raise ValidationError("A closed case cannot be referred to legal.")
        if LegalReferral.objects.filter(case=locked).exists():
            raise ValidationError("This case was already referred to legal.")
        [referral] = refer_many_to_legal([locked], actor=actor, at=at, note=note, stages={locked.pk: stage})
    return referral


def refer_many_to_legal(
    cases: list[CollectionCase], *, actor: Any, at: dt.datetime, note: str, stages: dict[int, str]
) -> list[LegalReferral]:
    """``refer_to_legal`` for open cases not yet referred (the caller checked), a fixed number of queries for
    any number of cases (the daily ladder refers a day's cohort at once)."""
    actor_str = actor_name(actor)
    ids = [c.pk for c in cases]
    zone_of = dict(
        Loan.objects.filter(pk__in=[c.loan_id for c in cases]).values_list("pk", "customer__timezone")
    )
    dpd_of = {c.pk: c.days_past_due(local_date(at, zone_of[c.loan_id])) for c in cases}
    with transaction.atomic():
        referrals = LegalReferral.objects.bulk_create(
            [
                LegalReferral(
                    case=c,
                    referred_at=at,
                    referred_by=actor_str,
                    dpd=dpd_of[c.pk],
                    amount_overdue=c.amount_overdue,
                    note=note,
                )
                for c in cases
            ]
        )
        if any(r.pk is None for r in referrals):  # backends that do not return ids from bulk inserts
            by_case = {r.case_id: r for r in LegalReferral.objects.filter(case_id__in=ids)}
            referrals = [by_case[c.pk] for c in cases]
        before = {c.pk: {"stage": c.stage, "is_frozen": c.is_frozen} for c in cases}
        for c in cases:
            c.is_frozen, c.paused_until, c.stage, c.updated_at = True, None, stages.get(c.pk, "legal"), at
        bulk_update_rows(cases, ["is_frozen", "paused_until", "stage", "updated_at"], batch_size=500)
        # The loan book's flag, which the reminder engine reads: no automatic contact about these loans.
        Loan.objects.filter(pk__in=[c.loan_id for c in cases]).update(legal_hold=True)
        tasks_by_case = cancel_call_tasks(
            CallTask.objects.filter(case_id__in=ids), CallTask.CancelReason.LEGAL, at=at, actor=actor_str
        )
        append_events(
            Event(
                action="collections.case.referred_to_legal",
                actor=actor_str,
                **about(CollectionCase, c.pk),
                at=at,
                before=before[c.pk],
                after={
                    "referral_id": r.pk,
                    "is_frozen": True,
                    "legal_hold": True,
                    "dpd": dpd_of[c.pk],
                    "amount_overdue": c.amount_overdue,
                    "call_tasks_cancelled": tasks_by_case[c.pk],
                    "note": note,
                },
            )
            for c, r in zip(cases, referrals, strict=True)
        )
        recall_placements_of(ids, AgencyPlacement.Reason.LEGAL, at=at, actor=actor_str)
        installment_ids = list(
            Installment.objects.filter(loan_id__in=[c.loan_id for c in cases]).values_list("pk", flat=True)
        )
        cancel_pending(
            reason=NotificationLog.Reason.DO_NOT_CONTACT,
            actor=actor_str,
            at=at,
            installment_ids=installment_ids,
        )
    return referrals


def enforce_legal_freeze(
    now: dt.datetime,
    *,
    actor: Any = JOB_ACTOR,
    counts: Counter | None = None,
    customer_ids: Iterable[int] | None = None,
) -> int:
    """Cancel whatever automatic contact was planned for loans frozen by legal since the last run (of the loans
    of ``customer_ids`` when given)."""
    # Only the instalments some pending contact lists can change anything (the planner leaves frozen loans
    # out), and only a contact of a customer with a frozen loan can list one: the pending contacts and the
    # frozen loans' customers first, then the unpaid instalments of frozen loans those contacts list. One
    # statement joining the instalments, the cases and the pending contacts' items read each instalment a pending
    # contact listed, by primary key (78,000 after a day's planning at 1,000,000 loans: 1.5-4 s).
    frozen = CollectionCase.objects.open().filter(is_frozen=True).order_by()
    if customer_ids is not None:
        # A few customers: their contacts by customer, the status kept here (``NotificationLogQuerySet.pending``).
        customer_of_loan = dict(
            frozen.filter(loan__customer_id__any_of=list(customer_ids)).values_list(
                "loan_id", "loan__customer_id"
            )
        )
        contacts = [
            id_
            for id_, status in (
                NotificationLog.objects.filter(customer_id__any_of=sorted(set(customer_of_loan.values())))
                .order_by()
                .values_list("id", "status")
                if customer_of_loan
                else ()
            )
            if NotificationLog.is_pending_status(status)
        ]
    else:
        # The book: every pending contact by their partial index (a day's planning, or none), then the customers
        # of the frozen loans when there is one.
        pending = list(NotificationLog.objects.pending().order_by().values_list("id", "customer_id"))
        customer_of_loan = dict(frozen.values_list("loan_id", "loan__customer_id")) if pending else {}
        frozen_customers = set(customer_of_loan.values())
        contacts = [id_ for id_, customer_id in pending if customer_id in frozen_customers]
    rows = sorted(
        {
            (customer_of_loan[loan_id], installment_id)
            for installment_id, loan_id in (
                Installment.objects.filter(
                    notification_items__notification_id__any_of=contacts, paid_at__isnull=True
                ).values_list("pk", "loan_id")
                if contacts
                else ()
            )
            if loan_id in customer_of_loan
        }
    )
    # A consolidated contact lists a customer's loans together: a chunk never splits a customer.
    chunks: list[list[int]] = [[]]
    last_customer = None
    for customer_id, installment_id in rows:
        if customer_id != last_customer and len(chunks[-1]) >= CHUNK:
            chunks.append([])
        chunks[-1].append(installment_id)
        last_customer = customer_id
    cancelled = 0
    for ids in chunks:
        if ids:
            cancelled += (
                cancel_pending(
                    reason=NotificationLog.Reason.DO_NOT_CONTACT,
                    actor=actor_name(actor),
                    at=now,
                    installment_ids=ids,
                )
                or 0
            )
    if counts is not None and cancelled:
        counts["contacts_cancelled_frozen"] += cancelled
    return cancelled
