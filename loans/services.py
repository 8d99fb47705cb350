"""Workflows of the loan book: recording payments, keeping instalments' paid state, applying credit scores.

Signals (``loans.signals``) are sent with ``transaction.on_commit``: receivers (reminders cancelled with reason
``paid``, collections cases closed, contacts re-planned on a tier change) only ever see committed money and
scores, and a failing receiver cannot undo a recorded payment. The dispatcher re-checks "nothing after payment"
at send time, so the short gap between commit and receiver is safe.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from backoffice.audit import Event, actor_name, log_events
from backoffice.bulk import bulk_update_rows

from . import signals
from .models import CreditScore, CreditTier, Customer, Installment, Loan, Payment

CHUNK = 2000
ZERO = Decimal("0")


def _chunks(ids: Iterable[int], size: int = CHUNK):
    ids = sorted(set(ids))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def refresh_installments(
    installment_ids: Iterable[int],
    at: dt.datetime | None = None,
    *,
    payments_recorded: bool = True,
    actor: Any = None,
) -> dict[str, int]:
    """Recompute the paid state of the given instalments from their payments (set-based, idempotent).

    Effects: ``amount_paid`` becomes the SUM of the instalment's payments (re-importing a payment file never
    counts twice); ``paid_at`` becomes the ``received_at`` of the payment that covered ``amount_due`` (cleared
    if no longer covered); a loan whose instalments are all paid becomes ``paid_off`` (and back to ``active``
    if one is no longer covered). Audit events ``loans.installment.paid`` / ``loans.installment.reopened`` /
    ``loans.loan.paid_off`` / ``loans.loan.reopened`` carry the inputs. On commit it sends
    ``payments_recorded`` (for all given instalments, unless ``payments_recorded=False``) and
    ``installments_paid`` (for those that became paid). Returns counts.
    """
    at = at or timezone.now()
    actor = actor_name(actor) if actor is not None else "system"
    newly_paid: list[int] = []
    touched_loans: set[int] = set()
    all_ids: list[int] = []
    events: list[Event] = []
    reopened = 0
    with transaction.atomic():
        for chunk in _chunks(installment_ids):
            installments = list(
                Installment.objects.filter(pk__any_of=chunk).select_for_update().order_by("pk")
            )
            payments = defaultdict(list)
            for p in (
                Payment.objects.filter(installment_id__any_of=chunk)
                .order_by("installment_id", "received_at", "pk")
                .values_list("installment_id", "amount", "received_at")
            ):
                payments[p[0]].append((p[1], p[2]))
            changed = []
            for inst in installments:
                all_ids.append(inst.pk)
                touched_loans.add(inst.loan_id)
                total, covered_at = ZERO, None
                for amount, received_at in payments[inst.pk]:
                    total += amount
                    if covered_at is None and total >= inst.amount_due:
                        covered_at = received_at
                if covered_at is None and inst.amount_due <= ZERO:
                    covered_at = inst.paid_at or at
                was_paid = inst.paid_at is not None
                if inst.amount_paid == total and inst.paid_at == covered_at:
                    continue
                inst.amount_paid, inst.paid_at = total, covered_at
                changed.append(inst)
                if covered_at and not was_paid:
                    newly_paid.append(inst.pk)
                    events.append(
                        Event(
                            action="loans.installment.paid",
                            actor=actor,
                            object_type="loans.Installment",
                            object_id=str(inst.pk),
                            after={
                                "loan_id": inst.loan_id,
                                "seq": inst.seq,
                                "amount_due": inst.amount_due,
                                "amount_paid": total,
                                "paid_at": covered_at,
                            },
                        )
                    )
                elif was_paid and not covered_at:
                    reopened += 1
                    events.append(
                        Event(
                            action="loans.installment.reopened",
                            actor=actor,
                            object_type="loans.Installment",
                            object_id=str(inst.pk),
                            after={
                                "loan_id": inst.loan_id,
                                "seq": inst.seq,
                                "amount_due": inst.amount_due,
                                "amount_paid": total,
                            },
                        )
                    )
            bulk_update_rows(changed, ["amount_paid", "paid_at"], batch_size=500)
        loan_changes = _refresh_loan_status(touched_loans, actor, events)
        log_events(events)

        loan_ids = sorted(touched_loans)
        if payments_recorded and all_ids:
            ids = sorted(all_ids)
            transaction.on_commit(
                lambda: signals.payments_recorded.send(
                    sender=Payment, installment_ids=ids, loan_ids=loan_ids, at=at
                )
            )
        if newly_paid:
            paid = sorted(newly_paid)
            transaction.on_commit(
                lambda: signals.installments_paid.send(sender=Installment, installment_ids=paid, at=at)
            )
    return {"installments": len(all_ids), "paid": len(newly_paid), "reopened": reopened, **loan_changes}


def _refresh_loan_status(loan_ids: set[int], actor: str, events: list[Event]) -> dict[str, int]:
    paid_off = reopened = 0
    for chunk in _chunks(loan_ids):
        unpaid = set(
            Installment.objects.filter(loan_id__any_of=chunk, paid_at__isnull=True)
            .values_list("loan_id", flat=True)
            .distinct()
        )
        has_any = set(
            Installment.objects.filter(loan_id__any_of=chunk).values_list("loan_id", flat=True).distinct()
        )
        done = [pk for pk in chunk if pk in has_any and pk not in unpaid]
        to_close = list(
            Loan.objects.filter(pk__in=done, status=Loan.Status.ACTIVE).values_list("pk", flat=True)
        )
        to_reopen = list(
            Loan.objects.filter(
                pk__in=[pk for pk in chunk if pk in unpaid], status=Loan.Status.PAID_OFF
            ).values_list("pk", flat=True)
        )
        if to_close:
            paid_off += Loan.objects.filter(pk__in=to_close).update(
                status=Loan.Status.PAID_OFF, updated_at=timezone.now()
            )
            events.extend(
                Event(
                    action="loans.loan.paid_off",
                    actor=actor,
                    object_type="loans.Loan",
                    object_id=str(pk),
                    after={"status": "paid_off"},
                )
                for pk in to_close
            )
        if to_reopen:
            reopened += Loan.objects.filter(pk__in=to_reopen).update(
                status=Loan.Status.ACTIVE, updated_at=timezone.now()
            )
            events.extend(
                Event(
                    action="loans.loan.reopened",
                    actor=actor,
                    object_type="loans.Loan",
                    object_id=str(pk),
                    before={"status": "paid_off"},
                    after={"status": "active", "reason": "instalment_not_covered"},
                )
                for pk in to_reopen
            )
    return {"loans_paid_off": paid_off, "loans_reopened": reopened}


def earliest_unpaid_installment(loan: Loan) -> Installment | None:
    return loan.installments.filter(paid_at__isnull=True).order_by("due_date", "seq").first()


def record_payment(
    *,
    loan: Loan,
    amount: Decimal,
    received_at: dt.datetime,
    ref: str,
    source: str = Payment.Source.APP,
    installment: Installment | None = None,
    actor: Any = None,
) -> Payment:
    """Record one payment and refresh the instalment it pays (safe to call twice with the same ``ref``).

    Without ``installment`` the payment goes to the loan's earliest unpaid instalment. A second call with an
    existing ``ref`` returns the recorded payment unchanged. Writes ``loans.payment.recorded``; signals as
    ``refresh_installments``. Raises ``ValidationError`` for an amount that is not positive or an instalment
    of another loan.
    """
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        existing = Payment.objects.filter(ref=ref).first()
        if existing:
            return existing
        if installment is None:
            installment = earliest_unpaid_installment(loan)
        payment = Payment(
            ref=ref,
            loan=loan,
            installment=installment,
            amount=Decimal(amount),
            received_at=received_at,
            source=source,
        )
        payment.full_clean()
        if payment.installment_id is None and not loan.installments.exists():
            raise ValidationError({"installment": "This loan has no instalment to pay."})
        payment.save()
        log_events(
            [
                Event(
                    action="loans.payment.recorded",
                    actor=actor_name(actor),
                    object_type="loans.Payment",
                    object_id=str(payment.pk),
                    after={
                        "ref": ref,
                        "loan": loan.ref,
                        "installment_seq": installment.seq if installment else None,
                        "amount": payment.amount,
                        "received_at": received_at,
                        "source": source,
                    },
                )
            ]
        )
        if payment.installment_id:
            refresh_installments([payment.installment_id], received_at, actor=actor)
    return payment


def apply_credit_scores(now: dt.datetime) -> dict[str, int]:
    """Apply the credit scores received up to ``now`` that are not applied yet (pipeline step; idempotent).

    Set-based: for each customer with a new score, ``credit_score`` becomes their LATEST score (by
    ``scored_at``, an older score arriving late does not win), and their tier is re-derived from the tiers'
    ranges unless an operator pinned it. Customers are written with ``bulk_update``, scores are marked applied.
    Writes ``loans.customer.tier_changed`` (with the score inputs) for each tier that moved, and sends
    ``tier_changed`` with ``[(customer_id, old_tier_id, new_tier_id), ...]`` on commit.
    """
    tiers = list(CreditTier.objects.order_by("min_score"))

    def tier_for(score: int | None) -> int | None:
        if score is None:
            return None
        for tier in tiers:
            if tier.min_score <= score <= tier.max_score:
                return tier.pk
        return None

    pending = CreditScore.objects.filter(applied_at__isnull=True, scored_at__lte=now)
    customer_ids = list(pending.values_list("customer_id", flat=True).distinct())
    changes: list[tuple[int, int | None, int | None]] = []
    updated = scores_applied = 0
    with transaction.atomic():
        for chunk in _chunks(customer_ids):
            latest_at = dict(
                CreditScore.objects.filter(customer_id__in=chunk, scored_at__lte=now)
                .values("customer_id")
                .annotate(latest=Max("scored_at"))
                .values_list("customer_id", "latest")
            )
            latest = {
                cid: (score, scored_at)
                for cid, score, scored_at in CreditScore.objects.filter(
                    customer_id__in=chunk, scored_at__lte=now
                ).values_list("customer_id", "score", "scored_at")
                if latest_at.get(cid) == scored_at
            }
            customers = list(Customer.objects.filter(pk__in=chunk).select_for_update().order_by("pk"))
            to_update, events = [], []
            for customer in customers:
                score, scored_at = latest[customer.pk]
                old_tier = customer.tier_id
                new_tier = old_tier if customer.is_tier_pinned else tier_for(score)
                if customer.credit_score == score and new_tier == old_tier:
                    continue
                old_score = customer.credit_score
                customer.credit_score, customer.tier_id = score, new_tier
                customer.updated_at = now
                to_update.append(customer)
                if new_tier != old_tier:
                    changes.append((customer.pk, old_tier, new_tier))
                    events.append(
                        Event(
                            action="loans.customer.tier_changed",
                            actor="job:apply_credit_scores",
                            object_type="loans.Customer",
                            object_id=str(customer.pk),
                            before={"tier_id": old_tier, "credit_score": old_score},
                            after={
                                "tier_id": new_tier,
                                "credit_score": score,
                                "scored_at": scored_at,
                                "reason": "credit_score",
                            },
                        )
                    )
            bulk_update_rows(to_update, ["credit_score", "tier", "updated_at"], batch_size=500)
            updated += len(to_update)
            scores_applied += CreditScore.objects.filter(
                customer_id__in=chunk, applied_at__isnull=True, scored_at__lte=now
            ).update(applied_at=now)
            log_events(events)
        if changes:
            changed = list(changes)
            transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=changed, at=now))
    return {"scores_applied": scores_applied, "customers_updated": updated, "tiers_changed": len(changes)}


def rederive_customer_tiers(*, actor: Any = None, reason: str = "tier_ranges_changed") -> dict[str, int]:
    """Move every unpinned customer to the tier whose range holds their score, after tier ranges changed.

    Set-based: one read and one ``update()`` per tier. Writes ``loans.customer.tier_changed`` per moved
    customer (with ``reason``) and sends ``tier_changed`` on commit. Returns ``{"tiers_changed": n}``.
    """
    changes: list[tuple[int, int | None, int | None]] = []
    events: list[Event] = []
    who = actor_name(actor)
    with transaction.atomic():
        tiers = list(CreditTier.objects.order_by("min_score"))
        unpinned = Customer.objects.filter(is_tier_pinned=False)
        targets = [
            (t.pk, unpinned.filter(credit_score__gte=t.min_score, credit_score__lte=t.max_score))
            for t in tiers
        ]
        in_no_range = unpinned.exclude(tier__isnull=True)
        for t in tiers:
            in_no_range = in_no_range.exclude(credit_score__gte=t.min_score, credit_score__lte=t.max_score)
        targets.append((None, in_no_range))
        for tier_id, qs in targets:
            moving = qs.exclude(tier_id=tier_id) if tier_id else qs
            rows = list(moving.values_list("pk", "tier_id", "credit_score"))
            if not rows:
                continue
            for chunk in _chunks(r[0] for r in rows):
                Customer.objects.filter(pk__in=chunk).update(tier_id=tier_id, updated_at=timezone.now())
            for pk, old, score in rows:
                changes.append((pk, old, tier_id))
                events.append(
                    Event(
                        action="loans.customer.tier_changed",
                        actor=who,
                        object_type="loans.Customer",
                        object_id=str(pk),
                        before={"tier_id": old},
                        after={"tier_id": tier_id, "credit_score": score, "reason": reason},
                    )
                )
        log_events(events)
        if changes:
            at = timezone.now()
            transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=changes, at=at))
    return {"tiers_changed": len(changes)}


def pin_tier(customer: Customer, tier: CreditTier | None, *, reason: str, actor: Any = None) -> Customer:
    """Pin ``customer`` to ``tier`` (the tier no longer follows the score), or unpin with ``tier=None``
    (the tier follows the latest score again).

    Pinning needs a reason (``ValidationError`` otherwise). Writes ``loans.customer.tier_pinned`` or
    ``loans.customer.tier_unpinned`` and, if the tier moved, sends ``tier_changed`` on commit.
    """
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        before = {
            "tier_id": customer.tier_id,
            "is_tier_pinned": customer.is_tier_pinned,
            "tier_pin_reason": customer.tier_pin_reason,
        }
        if tier is not None:
            if not reason.strip():
                raise ValidationError({"tier_pin_reason": "Say why the tier is pinned."})
            customer.is_tier_pinned, customer.tier, customer.tier_pin_reason = True, tier, reason.strip()
        else:
            customer.is_tier_pinned, customer.tier_pin_reason = False, ""
        customer.save()
        note_tier_pin_change(customer, before=before, actor=actor, reason=reason)
    return customer


def note_tier_pin_change(customer: Customer, *, before: dict, actor: Any = None, reason: str = "") -> None:
    """Record a pin/unpin already saved on ``customer`` (admin form or ``pin_tier``).

    ``before`` holds ``tier_id``, ``is_tier_pinned`` and ``tier_pin_reason`` as they were. Writes
    ``loans.customer.tier_pinned`` / ``loans.customer.tier_unpinned`` with the inputs, and ``tier_changed``
    on commit when the tier moved.
    """
    action = "loans.customer.tier_pinned" if customer.is_tier_pinned else "loans.customer.tier_unpinned"
    log_events(
        [
            Event(
                action=action,
                actor=actor_name(actor),
                object_type="loans.Customer",
                object_id=str(customer.pk),
                before=before,
                after={
                    "tier_id": customer.tier_id,
                    "is_tier_pinned": customer.is_tier_pinned,
                    "tier_pin_reason": customer.tier_pin_reason or reason,
                    "credit_score": customer.credit_score,
                },
            )
        ]
    )
    if customer.tier_id != before.get("tier_id"):
        change = [(customer.pk, before.get("tier_id"), customer.tier_id)]
        at = timezone.now()
        transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=change, at=at))


def outstanding_by_loan(loan_ids: Iterable[int]) -> dict[int, Decimal]:
    """What is still owed on each loan (sum of unpaid parts of its instalments)."""
    rows = (
        Installment.objects.filter(loan_id__in=list(loan_ids), paid_at__isnull=True)
        .values("loan_id")
        .annotate(due=Sum("amount_due"), paid=Sum("amount_paid"))
    )
    return {r["loan_id"]: max((r["due"] or ZERO) - (r["paid"] or ZERO), ZERO) for r in rows}
