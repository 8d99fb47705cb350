"""Credit scores and the tiers that follow them: applying the bureau's scores, re-deriving tiers after their
ranges changed, pinning a customer to a tier. Which tier a score falls in is ``loans.tiers.tier_for``, here as
everywhere. The ``tier_changed`` signal is sent on commit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from core.audit import Event, about, actor_name, append_events, log_events
from core.bulk import bulk_update_rows

from . import signals
from .models import CreditScore, CreditTier, Customer
from .services import CHUNK, chunks
from .tiers import tier_for


def _pk(tier: CreditTier | None) -> int | None:
    return tier.pk if tier is not None else None


def apply_credit_scores(now: dt.datetime) -> dict[str, int]:
    """Apply the credit scores received up to ``now`` that are not applied yet (pipeline step; idempotent).

    Set-based: for each customer with a new score, ``credit_score`` becomes their LATEST score (by
    ``scored_at``, an older score arriving late does not win), and their tier is re-derived from the tiers'
    ranges unless an operator pinned it. Customers are written with ``bulk_update``, scores are marked applied.
    Writes ``loans.customer.tier_changed`` (with the score inputs) for each tier that moved, and sends
    ``tier_changed`` with ``[(customer_id, old_tier_id, new_tier_id), ...]`` on commit.
    """
    tiers = list(CreditTier.objects.all())
    pending = CreditScore.objects.filter(applied_at__isnull=True, scored_at__lte=now)
    customer_ids = list(pending.values_list("customer_id", flat=True).distinct())
    changes: list[tuple[int, int | None, int | None]] = []
    updated = scores_applied = 0
    with transaction.atomic():
        for chunk in chunks(customer_ids):
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
                new_tier = old_tier if customer.is_tier_pinned else _pk(tier_for(score, tiers))
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
                            **about(Customer, customer.pk),
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
            append_events(events)
        if changes:
            changed = list(changes)
            transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=changed, at=now))
    return {"scores_applied": scores_applied, "customers_updated": updated, "tiers_changed": len(changes)}


def rederive_customer_tiers(
    *, at: dt.datetime, actor: Any = None, reason: str = "tier_ranges_changed"
) -> dict[str, int]:
    """Move every unpinned customer to the tier whose range holds their score (``tier_for``), after tier ranges
    changed.

    Set-based: one read of the unpinned customers' scores (a cursor in chunks) and one ``update()`` per new tier
    and chunk of 2,000 movers. Writes ``loans.customer.tier_changed`` per moved customer (with ``reason``) and
    sends ``tier_changed`` on commit. Returns ``{"tiers_changed": n}``.
    """
    changes: list[tuple[int, int | None, int | None]] = []
    events: list[Event] = []
    who = actor_name(actor)
    with transaction.atomic():
        tiers = list(CreditTier.objects.order_by("min_score"))
        moving: dict[int | None, list[tuple[int, int | None, int | None]]] = defaultdict(list)
        unpinned = Customer.objects.filter(is_tier_pinned=False).order_by("ref")
        for pk, old, score in unpinned.values_list("pk", "tier_id", "credit_score").iterator(
            chunk_size=CHUNK
        ):
            new = _pk(tier_for(score, tiers))
            if new != old:
                moving[new].append((pk, old, score))
        for tier_id in [t.pk for t in tiers] + [None]:
            rows = moving.get(tier_id)
            if not rows:
                continue
            for chunk in chunks(r[0] for r in rows):
                Customer.objects.filter(pk__in=chunk).update(tier_id=tier_id, updated_at=at)
            for pk, old, score in rows:
                changes.append((pk, old, tier_id))
                events.append(
                    Event(
                        action="loans.customer.tier_changed",
                        actor=who,
                        **about(Customer, pk),
                        before={"tier_id": old},
                        after={"tier_id": tier_id, "credit_score": score, "reason": reason},
                    )
                )
        append_events(events)
        if changes:
            transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=changes, at=at))
    return {"tiers_changed": len(changes)}


def pin_tier(
    customer: Customer, tier: CreditTier | None, *, reason: str, at: dt.datetime, actor: Any = None
) -> Customer:
    """Pin ``customer`` to ``tier`` (the tier no longer follows the score), or unpin with ``tier=None``
    (the tier follows the latest score again).

    Pinning needs a reason (``ValidationError`` otherwise). Writes ``loans.customer.tier_pinned`` or
    ``loans.customer.tier_unpinned`` and, if the tier moved, sends ``tier_changed`` on commit.
    """
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
        note_tier_pin_change(customer, before=before, at=at, actor=actor, reason=reason)
    return customer


def note_tier_pin_change(
    customer: Customer, *, before: dict, at: dt.datetime, actor: Any = None, reason: str = ""
) -> None:
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
                **about(Customer, customer.pk),
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
        transaction.on_commit(lambda: signals.tier_changed.send(sender=Customer, changes=change, at=at))
