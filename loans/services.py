"""Payments of the loan book: recording, correcting and reversing them, allocating them and keeping instalments'
paid state and loans' credit and status.

Payments are allocated by the one rule of ``loans.allocation`` (the due-date-order waterfall). The payment
signals (``loans.signals.payments_recorded`` and ``installments_paid``) are sent INSIDE the payment's
transaction: their receivers (reminders cancelled with reason ``paid``, the collections case closed, call tasks
cancelled, a promise kept) happen at once and together with the money, or not at all: a failing receiver rolls
the payment back and the caller sees the error. Credit scores and tiers are ``loans.scores``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from core.audit import Event, about, actor_name, append_events, log_events
from core.bulk import bulk_update_rows, insert_rows, update_rows
from core.lookups import within_bounds

from . import signals
from .allocation import Instalment as Due
from .allocation import Receipt, allocate_loan
from .models import Installment, Loan, Payment, PaymentAllocation

CHUNK = 2000
ZERO = Decimal("0")


def chunks(ids: Iterable[int], size: int = CHUNK):
    """The distinct ``ids`` in order, ``size`` at a time (a chunk's statements stay within any database's limits)."""
    ids = sorted(set(ids))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def reallocate_loans(
    loan_ids: Iterable[int],
    at: dt.datetime,
    *,
    payments_recorded: bool = True,
    actor: Any = None,
) -> dict[str, int]:
    """Allocate every payment of these loans by the waterfall (``loans.allocation.allocate_loan``) and store it
    (set-based: a few queries per chunk of 2,000 loans, whatever the number of payments; idempotent).

    Effects, only where something changed: ``PaymentAllocation`` rows (one per payment and instalment) are
    created, updated or deleted; ``Installment.amount_paid`` is the sum allocated to it (never above its amount
    due) and ``paid_at`` the ``received_at`` of the payment that completed it (an instalment of nothing due is
    paid at ``at``); ``Loan.credit`` is what no instalment could take; a loan whose instalments are all paid is
    ``paid_off`` (and ``active`` again when one is no longer covered). Audit events: ``loans.payment.allocated``
    (which instalments the payment paid, how much of each, when one it completed became paid in full, and its
    part kept as credit), ``loans.installment.paid`` (only for an instalment paid in full by no allocation
    event of this call: one of nothing due, or whose amount due was lowered to what it had) /
    ``loans.installment.reopened``, ``loans.loan.credit_changed``, ``loans.loan.paid_off`` / ``.reopened``.

    Then, in the same transaction, sends ``payments_recorded`` (for every loan given, unless
    ``payments_recorded=False``) and ``installments_paid`` (for the instalments that became paid): the cure of
    a loan out of arrears happens here, not on the next daily run. Both are sent for each chunk of loans once it
    is allocated (a loan is in one chunk), so that a file's million payments are never held at once. Returns
    counts.
    """
    actor = actor_name(actor) if actor is not None else "system"
    loan_ids = sorted(set(loan_ids))
    counts = defaultdict(int)
    with transaction.atomic():
        for chunk in chunks(loan_ids):
            newly_paid: list[int] = []
            all_installments: list[int] = []
            allocated_refs: dict[int, list[str]] = defaultdict(list)
            _reallocate_chunk(chunk, at, actor, counts, newly_paid, all_installments, allocated_refs)
            if payments_recorded:
                signals.payments_recorded.send(
                    sender=Payment,
                    installment_ids=sorted(all_installments),
                    loan_ids=chunk,
                    at=at,
                    payment_refs={k: sorted(v) for k, v in allocated_refs.items()},
                )
            if newly_paid:
                signals.installments_paid.send(sender=Installment, installment_ids=sorted(newly_paid), at=at)
        counts["loans"] = len(loan_ids)
    return dict(counts)


def _reallocate_chunk(chunk, at, actor, counts, newly_paid, all_installments, allocated_refs) -> None:
    loans = {
        loan.pk: loan
        for loan in Loan.objects.filter(pk__any_of=chunk)
        .select_for_update()
        .order_by("pk")
        .only("pk", "ref", "status", "credit")
    }
    # Plain values, not model objects: a chunk is thousands of instalments and allocations.
    instalments: dict[int, list[_Inst]] = defaultdict(list)
    seq_of: dict[int, int] = {}
    installment_ids: list[int] = []
    for pk, loan_id, seq, due_date, amount_due, amount_paid, paid_at in (
        Installment.objects.filter(within_bounds("loan_id", chunk), loan_id__any_of=chunk)
        .order_by("loan_id", "due_date", "seq")
        .values_list("pk", "loan_id", "seq", "due_date", "amount_due", "amount_paid", "paid_at")
    ):
        instalments[loan_id].append(_Inst(pk, seq, due_date, amount_due, amount_paid, paid_at))
        seq_of[pk] = seq
        installment_ids.append(pk)
    all_installments.extend(installment_ids)
    receipts: dict[int, list[Receipt]] = defaultdict(list)
    payment_info: dict[int, tuple[str, Decimal, int | None]] = {}
    # No ordering (the rule orders a loan's payments itself); the model's own would sort every chunk.
    for pk, loan_id, ref, amount, received_at, start_id in (
        Payment.objects.filter(within_bounds("loan_id", chunk), loan_id__any_of=chunk)
        .order_by()
        .values_list("pk", "loan_id", "ref", "amount", "received_at", "installment_id")
    ):
        receipts[loan_id].append(Receipt(pk, amount, received_at, seq_of.get(start_id)))
        payment_info[pk] = (ref, amount, seq_of.get(start_id))
    # By the instalments just read (the loans are locked, so they are all of them): through the instalments'
    # loans, PostgreSQL joined every allocation of the book for each chunk (a sequential scan, growing with the
    # file). Unordered: the model's ordering (by the payment's date and the instalment's number) joined both
    # tables whole for each chunk.
    stored: dict[tuple[int, int], tuple[int, Decimal]] = {
        (payment_id, installment_id): (pk, amount)
        for pk, payment_id, installment_id, amount in (
            PaymentAllocation.objects.filter(
                within_bounds("installment_id", installment_ids), installment_id__any_of=installment_ids
            )
            .order_by()
            .values_list("pk", "payment_id", "installment_id", "amount")
            if installment_ids
            else ()
        )
    }

    wanted: dict[tuple[int, int], Decimal] = {}
    unallocated: dict[int, Decimal] = {}
    credit_moved: set[int] = set()  # payments whose part kept as credit changed with their loan's credit
    changed_installments: list[tuple[int, Decimal, dt.datetime | None]] = []
    events: list[Event] = []
    # Instalments paid in full by this re-allocation: the loan's ref and the payment that completed it.
    paid_now: list[tuple[_Inst, str, int | None]] = []
    to_close, to_reopen, credit_changed = [], [], []
    for loan_id in chunk:
        loan = loans.get(loan_id)
        if loan is None:
            continue
        insts = instalments.get(loan_id, [])
        outcome = allocate_loan(
            [Due(i.pk, i.seq, i.due_date, i.amount_due) for i in insts], receipts[loan_id]
        )
        wanted.update(outcome.allocations)
        unallocated.update(outcome.unallocated)
        for inst in insts:
            paid = outcome.amount_paid[inst.pk]
            paid_at = outcome.paid_at[inst.pk] if inst.pk in outcome.paid_at else (inst.paid_at or at)
            if inst.amount_paid == paid and inst.paid_at == paid_at:
                continue
            was_paid = inst.paid_at is not None
            inst.amount_paid, inst.paid_at = paid, paid_at
            changed_installments.append((inst.pk, paid, paid_at))
            if paid_at and not was_paid:
                newly_paid.append(inst.pk)
                paid_now.append((inst, loan.ref, outcome.paid_by.get(inst.pk)))
            elif was_paid and not paid_at:
                counts["reopened"] += 1
                values = {
                    "loan": loan.ref,
                    "seq": inst.seq,
                    "amount_due": inst.amount_due,
                    "amount_paid": paid,
                }
                events.append(_event("loans.installment.reopened", actor, Installment, inst.pk, after=values))
        if loan.credit != outcome.credit:
            credit_moved.update(p for p, part in outcome.unallocated.items() if part > ZERO)
            events.append(
                _event(
                    "loans.loan.credit_changed",
                    actor,
                    Loan,
                    loan.pk,
                    before={"credit": loan.credit},
                    after={"credit": outcome.credit, "ref": loan.ref},
                )
            )
            loan.credit = outcome.credit
            credit_changed.append(loan)
        all_paid = bool(insts) and all(i.paid_at is not None for i in insts)
        if all_paid and loan.status == Loan.Status.ACTIVE:
            to_close.append(loan)
        elif insts and not all_paid and loan.status == Loan.Status.PAID_OFF:
            to_reopen.append(loan)

    # The allocation rows: only the difference is written.
    stale = [pk for key, (pk, _amount) in stored.items() if key not in wanted]
    moved = [
        (stored[key][0], amount)
        for key, amount in wanted.items()
        if key in stored and stored[key][1] != amount
    ]
    new = [(key[0], key[1], amount) for key, amount in wanted.items() if key not in stored]
    if stale:
        PaymentAllocation.objects.filter(pk__any_of=stale).delete()
    update_rows(PaymentAllocation, ["amount"], moved)
    insert_rows(PaymentAllocation, ["payment", "installment", "amount"], new)
    touched_payments = credit_moved | {
        key[0] for key in [*wanted, *stored] if wanted.get(key) != stored.get(key, (0, None))[1]
    }
    allocated = sorted(p for p in touched_payments if p in payment_info)
    # An instalment paid in full is told by the allocation event of the payment that completed it (its entry
    # carries ``paid_at``); only one no such event tells (nothing due, or its amount due lowered to what it
    # had) gets an event of its own.
    completed: dict[tuple[int, int], dt.datetime] = {}
    allocated_set = set(allocated)
    for inst, loan_ref, payment_id in paid_now:
        if payment_id in allocated_set and (payment_id, inst.pk) in wanted:
            completed[(payment_id, inst.pk)] = inst.paid_at
        else:
            events.append(
                _event(
                    "loans.installment.paid",
                    actor,
                    Installment,
                    inst.pk,
                    after={
                        "loan": loan_ref,
                        "seq": inst.seq,
                        "amount_due": inst.amount_due,
                        "amount_paid": inst.amount_paid,
                        "paid_at": inst.paid_at,
                    },
                )
            )
    by_payment: dict[int, list[dict]] = defaultdict(list)
    for key, amount in sorted(wanted.items(), key=lambda kv: (kv[0][0], seq_of[kv[0][1]])):
        payment_id, installment_id = key
        entry = {"id": installment_id, "seq": seq_of[installment_id], "amount": amount}
        if key in completed:
            entry["paid_at"] = completed[key]
        by_payment[payment_id].append(entry)
    loan_of = {pk: loan_id for loan_id, rs in receipts.items() for pk in (r.key for r in rs)}
    for payment_id in allocated:
        ref, amount, start_seq = payment_info[payment_id]
        allocated_refs[loan_of[payment_id]].append(ref)
        events.append(
            Event(
                action="loans.payment.allocated",
                actor=actor,
                **about(Payment, payment_id),
                after={
                    "ref": ref,
                    "loan": loans[loan_of[payment_id]].ref,
                    "amount": amount,
                    "start_seq": start_seq,
                    "allocations": by_payment.get(payment_id, []),
                    "credit": unallocated.get(payment_id, ZERO),
                    "rule": "due_date_order",
                },
            )
        )
    counts["allocations_written"] += len(stale) + len(moved) + len(new)
    counts["payments_allocated"] += len(allocated)

    update_rows(Installment, ["amount_paid", "paid_at"], changed_installments, batch_size=500)
    bulk_update_rows(credit_changed, ["credit"], batch_size=500)
    counts["installments"] += len(changed_installments)
    counts["paid"] += len(paid_now)
    for loans_, status, action, before, after in (
        (to_close, Loan.Status.PAID_OFF, "loans.loan.paid_off", None, {"status": "paid_off"}),
        (
            to_reopen,
            Loan.Status.ACTIVE,
            "loans.loan.reopened",
            {"status": "paid_off"},
            {"status": "active", "reason": "instalment_not_covered"},
        ),
    ):
        if loans_:
            Loan.objects.filter(pk__any_of=[loan.pk for loan in loans_]).update(
                status=status, updated_at=timezone.now()
            )
            events.extend(_event(action, actor, Loan, loan.pk, before=before, after=after) for loan in loans_)
    counts["loans_paid_off"] += len(to_close)
    counts["loans_reopened"] += len(to_reopen)
    append_events(events)


def _event(action: str, actor: str, model, pk: int, *, before=None, after=None) -> Event:
    return Event(action=action, actor=actor, **about(model, pk), before=before, after=after)


@dataclass(slots=True)
class _Inst:
    """An instalment as the re-allocation reads it."""

    pk: int
    seq: int
    due_date: dt.date
    amount_due: Decimal
    amount_paid: Decimal
    paid_at: dt.datetime | None


def refresh_installments(
    installment_ids: Iterable[int],
    at: dt.datetime,
    *,
    payments_recorded: bool = True,
    actor: Any = None,
) -> dict[str, int]:
    """``reallocate_loans`` for the loans of these instalments (after an instalment's amount due changed)."""
    loan_ids = set()
    for chunk in chunks(installment_ids):
        loan_ids.update(Installment.objects.filter(pk__any_of=chunk).values_list("loan_id", flat=True))
    return reallocate_loans(loan_ids, at, payments_recorded=payments_recorded, actor=actor)


def record_payment(
    *,
    loan: Loan,
    amount: Decimal,
    received_at: dt.datetime,
    ref: str,
    source: str = Payment.Source.APP,
    installment: Installment | None = None,
    actor: Any = None,
    now: dt.datetime | None = None,
) -> Payment:
    """Record one payment of ``loan`` and allocate it (safe to call twice with the same ``ref``).

    ``installment`` is where the allocation starts (by default the oldest unpaid instalment); the waterfall
    goes on oldest first and what is left after the loan's balance is its credit (``reallocate_loans``). A
    second call with an existing ``ref`` returns the recorded payment unchanged. ``now`` is the moment it is
    recorded (default ``received_at``): the cure (case closed, calls and contacts cancelled) is judged then.
    Writes ``loans.payment.recorded``. Raises ``ValidationError`` for an amount that is not positive, an
    instalment of another loan or a loan without instalments.
    """
    with transaction.atomic():
        existing = Payment.objects.filter(ref=ref).first()
        if existing:
            return existing
        payment = Payment(
            ref=ref,
            loan=loan,
            installment=installment,
            amount=Decimal(amount),
            received_at=received_at,
            source=source,
        )
        payment.full_clean()
        if not loan.installments.exists():
            raise ValidationError({"loan": "This loan has no instalment to pay."})
        payment.save()
        log_events([_payment_event("loans.payment.recorded", payment, actor)])
        reallocate_loans([loan.pk], now or received_at, actor=actor)
    return payment


def _payment_event(action: str, payment: Payment, actor: Any, before: dict | None = None) -> Event:
    return Event(
        action=action,
        actor=actor_name(actor),
        **about(Payment, payment.pk),
        before=before,
        after=_payment_values(payment),
    )


def _payment_values(payment: Payment) -> dict:
    return {
        "ref": payment.ref,
        "loan": payment.loan.ref,
        "installment_seq": payment.installment.seq if payment.installment_id else None,
        "amount": payment.amount,
        "received_at": payment.received_at,
        "source": payment.source,
    }


def correct_payment(payment: Payment, *, before: Payment, actor: Any = None, now: dt.datetime) -> Payment:
    """Save a corrected ``payment`` (amount, date, loan or start instalment changed; ``before`` is the stored
    one) and re-allocate the loans it was and is on. Writes ``loans.payment.changed`` with before and after.
    Raises ``ValidationError`` for values the model refuses."""
    with transaction.atomic():
        payment.full_clean()
        payment.save()
        log_events([_payment_event("loans.payment.changed", payment, actor, before=_payment_values(before))])
        reallocate_loans({before.loan_id, payment.loan_id}, now, actor=actor)
    return payment


def reverse_payment(payment: Payment, *, actor: Any = None, now: dt.datetime) -> None:
    """Delete ``payment`` (a reversal) and re-allocate its loan's other payments: what it paid is due again.
    Writes ``loans.payment.deleted`` with what it was and what it had paid."""
    with transaction.atomic():
        before = _payment_values(payment)
        before["allocations"] = [
            {"seq": seq, "amount": amount}
            for seq, amount in payment.allocations.order_by("installment__seq").values_list(
                "installment__seq", "amount"
            )
        ]
        log_events(
            [
                Event(
                    action="loans.payment.deleted",
                    actor=actor_name(actor),
                    **about(Payment, payment.pk),
                    before=before,
                )
            ]
        )
        loan_id = payment.loan_id
        payment.delete()
        reallocate_loans([loan_id], now, payments_recorded=False, actor=actor)


def outstanding_by_loan(loan_ids: Iterable[int]) -> dict[int, Decimal]:
    """What is still owed on each loan (sum of unpaid parts of its instalments)."""
    rows = (
        Installment.objects.filter(loan_id__in=list(loan_ids), paid_at__isnull=True)
        .values("loan_id")
        .annotate(due=Sum("amount_due"), paid=Sum("amount_paid"))
    )
    return {r["loan_id"]: max((r["due"] or ZERO) - (r["paid"] or ZERO), ZERO) for r in rows}
