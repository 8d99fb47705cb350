"""The policy version a case follows: its tier's current version when it opens (a challenger's, for a customer in
a challenger arm), kept until it closes unless an operator moves it onto its tier's current version on purpose
(``migrate_cases``, the case admin's action) or its customer moves tier; its ladder is that version's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from core.audit import actor_name, log_event
from loans.models import Arm, PolicyAssignment, PolicyExperiment, PolicyVersion

from .ladder import version_ladder
from .models import CollectionCase
from .positions import LoanPosition


@dataclass
class CaseVersions:
    """What one run of the daily advance knows of policy versions: each tier's current version, each tier's
    running challenger (seed, proposal version id), and the ladders of the versions read so far."""

    current: dict[int, int]
    challengers: dict[int, tuple[str, int]]
    ladders: dict[int, tuple[int, list]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> CaseVersions:
        """Two queries."""
        return cls(
            current=PolicyVersion.objects.latest_ids(),
            challengers={
                t.tier_id: (t.seed, t.challenger_id)
                for t in PolicyExperiment.objects.filter(challenger__isnull=False, challenger_share__gt=0)
            },
        )

    def of_opening(self, opening: list[LoanPosition]) -> dict[int, int | None]:
        """The version each customer's new case opens under: the challenger's for a customer in a running
        challenger arm (one query when a test runs one), else the tier's current version."""
        found: dict[int, int | None] = {p.customer_id: self.current.get(p.tier_id) for p in opening}
        if not self.challengers or not opening:
            return found
        for customer_id, tier_id, seed, version_id in PolicyAssignment.objects.filter(
            customer_id__in=sorted(found), arm=Arm.CHALLENGER
        ).values_list("customer_id", "tier_id", "seed", "policy_version_id"):
            if self.challengers.get(tier_id) == (seed, version_id):
                found[customer_id] = version_id
        return found

    def follow(self, cases: list[CollectionCase], positions: dict[int, LoanPosition], steps: dict) -> None:
        """Read the ladders of the cases' versions (once per run), and move a case whose customer changed tier
        onto the new tier's current version: a case keeps its version while it stays in its tier. ``steps`` are
        the saved ladder rows by tier (a version's step whose row is gone is known by DPD and action)."""
        for rounds in (1, 2):
            wanted = {c.policy_version_id for c in cases if c.policy_version_id} - set(self.ladders)
            if wanted:
                existing = {s.pk for rows in steps.values() for s in rows}
                for v in PolicyVersion.objects.filter(pk__in=sorted(wanted)).only("id", "tier_id", "ladder"):
                    self.ladders[v.pk] = (v.tier_id, version_ladder(v.ladder, existing))
            if rounds == 2:
                return
            for case in cases:
                tier_id = positions[case.loan_id].tier_id
                followed = self.ladders.get(case.policy_version_id)
                if followed is not None and followed[0] != tier_id:
                    case.policy_version_id = self.current.get(tier_id)

    def ladder_of(self, case: CollectionCase, tier_id: int | None, steps: dict) -> list:
        """The ladder a case walks: its version's; the tier's saved ladder for a case opened before its tier
        had a version."""
        followed = self.ladders.get(case.policy_version_id)
        if followed is not None:
            return followed[1]
        return steps.get(tier_id, [])


def migrate_cases(cases: Iterable[CollectionCase], *, actor: Any, at: dt.datetime, reason: str = "") -> int:
    """Move open cases onto their tier's current version on purpose (an operator's action): from their next
    ladder step on they follow that version's ladder; the steps already performed stay performed. Writes
    ``collections.case.policy_migrated`` per case moved (before and after version). Returns how many moved."""
    actor = actor_name(actor)
    cases = [c for c in cases if c.is_open and c.tier_id]
    current = PolicyVersion.objects.latest_ids({c.tier_id for c in cases})
    moved = [c for c in cases if current.get(c.tier_id) and c.policy_version_id != current[c.tier_id]]
    with transaction.atomic():
        for case in moved:
            before = case.policy_version_id
            case.policy_version_id = current[case.tier_id]
            CollectionCase.objects.filter(pk=case.pk).update(policy_version_id=case.policy_version_id)
            log_event(
                "collections.case.policy_migrated",
                actor=actor,
                obj=case,
                at=at,
                before={"policy_version_id": before},
                after={"policy_version_id": case.policy_version_id, "reason": reason},
            )
    return len(moved)
