"""Open cases follow a customer's new tier: the old ladder's pending messages and an open call task the new
ladder does not reach are cancelled; the next daily advance performs the new tier's steps."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from django.db import transaction

from core.audit import Event, about, actor_name, log_events
from loans.models import PolicyVersion
from notifications.cancelling import cancel_pending
from notifications.models import NotificationLog

from .calls import cancel_call_tasks
from .ladder import LADDER_KEY_PREFIX, steps_to_perform
from .models import CallTask, CollectionCase, EscalationStep


def follow_tier_change(
    changes: list[tuple[int, int | None, int | None]], at: dt.datetime, actor: Any = "system"
) -> dict[str, int]:
    """Open cases of customers who moved tier follow the new tier's ladder (receiver of ``tier_changed``).

    ``changes`` are ``(customer_id, old_tier_id, new_tier_id)``. Effects: ladder messages not sent yet that the
    old tier planned are cancelled (``tier_changed``); an open call task is cancelled (``tier_changed``) when
    the new ladder reaches no call step at the case's days past due (``steps_to_perform``: a low-risk ladder
    calls later); the next run of the ladder performs the new tier's steps. Writes
    ``collections.case.tier_changed`` per open case and ``collections.call.cancelled`` per task. Returns counts.
    """
    actor = actor_name(actor)
    by_customer = {customer_id: (old, new) for customer_id, old, new in changes}
    by_new_tier: dict[int | None, list[int]] = defaultdict(list)
    for customer_id, (_old, new) in by_customer.items():
        by_new_tier[new].append(customer_id)
    counts: Counter = Counter()
    with transaction.atomic():
        for new, customer_ids in by_new_tier.items():
            counts["contacts_cancelled"] += cancel_pending(
                reason=NotificationLog.Reason.TIER_CHANGED,
                actor=actor,
                at=at,
                customer_ids=customer_ids,
                dedupe_prefix=LADDER_KEY_PREFIX,
                except_tier_id=new,
                details_by_customer={
                    c: {"old_tier_id": by_customer[c][0], "new_tier_id": new} for c in customer_ids
                },
            )
        ladders: dict[int, list[EscalationStep]] = defaultdict(list)
        for step in EscalationStep.objects.filter(tier_id__in=[t for t in by_new_tier if t is not None]):
            ladders[step.tier_id].append(step)
        cases = list(
            CollectionCase.objects.open()
            .filter(loan__customer_id__any_of=list(by_customer))
            .select_related("loan__customer")
            .select_for_update(of=("self",))
        )
        new_tier_of = {c.pk: by_customer[c.loan.customer_id][1] for c in cases}
        dpd_of = {c.pk: c.days_past_due(at) for c in cases}
        # The case follows its customer's new tier: that tier's current policy version.
        current = PolicyVersion.objects.latest_ids({t for t in by_new_tier if t is not None})
        moved = defaultdict(list)
        for c in cases:
            moved[current.get(new_tier_of[c.pk])].append(c.pk)
        for version_id, case_ids in moved.items():
            CollectionCase.objects.filter(pk__in=case_ids).update(policy_version_id=version_id)

        def reaches_a_call(case: CollectionCase) -> bool:
            # Every step the new ladder reaches at the case's DPD, performed or passed over (nothing is done yet
            # on the new ladder; its grace period is the advance's business).
            perform, passed = steps_to_perform(ladders.get(new_tier_of[case.pk], []), dpd_of[case.pk], 0, ())
            return any(s.action == EscalationStep.Action.CALL_TASK for s in perform + passed)

        log_events(
            Event(
                action="collections.case.tier_changed",
                actor=actor,
                **about(CollectionCase, c.pk),
                at=at,
                before={"tier_id": by_customer[c.loan.customer_id][0]},
                after={
                    "tier_id": new_tier_of[c.pk],
                    "policy_version_id": current.get(new_tier_of[c.pk]),
                    "stage": c.stage,
                    "dpd": dpd_of[c.pk],
                },
            )
            for c in cases
        )
        cancelled = cancel_call_tasks(
            CallTask.objects.filter(case_id__in=[c.pk for c in cases if not reaches_a_call(c)]),
            CallTask.CancelReason.TIER_CHANGED,
            at=at,
            actor=actor,
            details=lambda case_id: {"dpd": dpd_of[case_id]},
        )
    counts["call_tasks_cancelled"] += cancelled.total()
    return dict(counts)
