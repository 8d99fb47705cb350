"""Policy versions: recording a new version of each tier whose saved policy changed (who, when, why), and
reading a stored version back as a plain policy.

A tier's saved policy is what operations edit (the tier's grace period, cap and channel order, its reminder rules,
its ladder steps: the admin and the import files). Saving it never overwrites a version: ``record_versions``
compares each tier's saved policy with its newest version and writes the next one when they differ
(``strategy.policy_version.created``). Contacts, cases and call tasks name the version they were decided under;
an open case keeps its version until it closes (``debt_collection.policy_versions``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Max

from core.audit import Event, about, actor_name, log_events
from debt_collection.models import EscalationStep
from loans.models import CreditTier, PolicyVersion
from notifications.models import ReminderRule

from .policy import Policy, RuleSpec, StepSpec

VERSION_ACTOR = "job:policy_versions"


def saved_policies(tier_ids: Iterable[int] | None = None) -> dict[int, tuple[Policy, dict]]:
    """Each tier's saved policy and the ladder rows it was read from (``(min_dpd, action) -> step id``), three
    queries for any number of tiers."""
    tiers = CreditTier.objects.all()
    if tier_ids is not None:
        tiers = tiers.filter(pk__in=list(tier_ids))
    tiers = list(tiers)
    rules: dict[int, list[RuleSpec]] = defaultdict(list)
    for r in ReminderRule.objects.filter(tier__in=tiers, is_active=True).order_by(
        "offset_days", "channel", "kind", "id"
    ):
        rules[r.tier_id].append(RuleSpec(r.offset_days, r.channel, r.kind, r.send_time))
    ladders: dict[int, list[StepSpec]] = defaultdict(list)
    step_ids: dict[int, dict] = defaultdict(dict)
    # In the order the daily advance walks a ladder (by DPD, then as the rows were written).
    for s in EscalationStep.objects.filter(tier__in=tiers).order_by("min_dpd", "id"):
        ladders[s.tier_id].append(StepSpec(s.min_dpd, s.action, s.stage, s.kind))
        step_ids[s.tier_id][(s.min_dpd, s.action)] = s.pk
    return {
        t.pk: (
            Policy(
                grace_period_days=t.grace_period_days,
                max_contacts_per_week=t.max_contacts_per_week,
                channel_order=tuple(t.channels),
                rules=tuple(rules[t.pk]),
                ladder=tuple(ladders[t.pk]),
            ),
            step_ids[t.pk],
        )
        for t in tiers
    }


def version_fields(policy: Policy, step_ids: dict | None = None) -> dict[str, Any]:
    """A policy as a version's stored fields."""
    step_ids = step_ids or {}
    return {
        "grace_period_days": policy.grace_period_days,
        "max_contacts_per_week": policy.max_contacts_per_week,
        "channel_order": ",".join(policy.channel_order),
        "rules": [[r.offset_days, r.channel, r.kind, r.send_time.strftime("%H:%M")] for r in policy.rules],
        "ladder": [
            {
                "min_dpd": s.min_dpd,
                "action": s.action,
                "stage": s.stage,
                "kind": s.kind,
                "step_id": step_ids.get((s.min_dpd, s.action)),
            }
            for s in policy.ladder
        ],
    }


def policy_of_version(version: PolicyVersion) -> Policy:
    """A stored version as the plain ``Policy`` the preview, the engine and the comparison read."""
    return Policy(
        grace_period_days=version.grace_period_days,
        max_contacts_per_week=version.max_contacts_per_week,
        channel_order=tuple(version.channels),
        rules=tuple(
            RuleSpec(offset, channel, kind, dt.time.fromisoformat(at))
            for offset, channel, kind, at in version.rules
        ),
        ladder=tuple(StepSpec(s["min_dpd"], s["action"], s["stage"], s["kind"]) for s in version.ladder),
    )


def record_versions(
    *, at: dt.datetime, actor: Any = VERSION_ACTOR, reason: str = "", tier_ids: Iterable[int] | None = None
) -> list[PolicyVersion]:
    """Write the next version of every tier (of ``tier_ids``) whose saved policy differs from its newest version
    (or that has none yet), saved by ``actor`` at ``at`` for ``reason``. Writes ``strategy.policy_version.created``
    per version, in one transaction. Returns the versions written. Safe to run twice: an unchanged policy makes
    no version."""
    actor = actor_name(actor)
    with transaction.atomic():
        policies = saved_policies(tier_ids)
        if not policies:
            return []
        # Locking the tiers serialises two savers of one tier: the second sees the first's version.
        list(CreditTier.objects.filter(pk__in=list(policies)).select_for_update().values_list("pk"))
        newest = {
            v.tier_id: v
            for v in PolicyVersion.objects.filter(
                pk__in=list(PolicyVersion.objects.latest_ids(policies).values())
            )
        }
        numbers = dict(
            PolicyVersion.objects.filter(tier_id__in=list(policies))
            .values("tier_id")
            .annotate(n=Max("number"))
            .values_list("tier_id", "n")
        )
        made = []
        for tier_id, (policy, step_ids) in sorted(policies.items()):
            last = newest.get(tier_id)
            if last is not None and policy_of_version(last) == policy:
                continue
            made.append(
                PolicyVersion(
                    tier_id=tier_id,
                    number=numbers.get(tier_id, 0) + 1,
                    created_at=at,
                    created_by=actor,
                    reason=reason[:300],
                    **version_fields(policy, step_ids),
                )
            )
        if not made:
            return []
        PolicyVersion.objects.bulk_create(made)
        if any(v.pk is None for v in made):  # backends that do not return ids from bulk inserts
            numbers = {(v.tier_id, v.number) for v in made}
            made = [
                v
                for v in PolicyVersion.objects.filter(tier_id__in=[t for t, _n in numbers]).order_by(
                    "tier_id"
                )
                if (v.tier_id, v.number) in numbers
            ]
        log_events(
            Event(
                action="strategy.policy_version.created",
                actor=actor,
                **about(PolicyVersion, v.pk),
                at=at,
                after={
                    "tier_id": v.tier_id,
                    "number": v.number,
                    "reason": v.reason,
                    "previous_version_id": newest[v.tier_id].pk if v.tier_id in newest else None,
                    "grace_period_days": v.grace_period_days,
                    "max_contacts_per_week": v.max_contacts_per_week,
                    "channel_order": v.channel_order,
                    "rules": v.rules,
                    # Without the rows it was read from: the event says what the policy is.
                    "ladder": [{k: s[k] for k in s if k != "step_id"} for s in v.ladder],
                },
            )
            for v in made
        )
    return made


def record_changed_versions(now: dt.datetime) -> dict:
    """Pipeline step "policy_versions": a policy saved without the admin or an import (a script, a bulk write)
    gets its version before the day is planned under it."""
    return {"versions_recorded": len(record_versions(at=now, reason="saved outside the admin"))}
