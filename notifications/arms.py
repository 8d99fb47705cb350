"""The reminder rules each arm of a tier's champion/challenger test plans from (``loans.PolicyExperiment``):
the champion the tier's saved rules, the challenger its proposal version's rules, the holdout the tier's rules
without those before the due date. Read by the planner; the arms never change a send-time gate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import OuterRef, QuerySet, Subquery

from loans.models import Arm, PolicyAssignment, PolicyExperiment

from .models import ReminderRule


def is_pre_due(rule: ReminderRule) -> bool:
    """A reminder before the due date: what the holdout does not get."""
    return rule.offset_days < 0


@dataclass
class ArmRules:
    """Each tier's rules per arm, with the policy version each rule's contact is decided under."""

    champion: dict[int, list[ReminderRule]]
    tests: dict[int, PolicyExperiment] = field(default_factory=dict)
    challenger: dict[int, list[ReminderRule]] = field(default_factory=dict)

    @classmethod
    def load(cls, champion: dict[int, list[ReminderRule]]) -> ArmRules:
        """The tests running (one query) and their challengers' rules (from the proposal version, as rows not
        saved: ``id`` None); a challenger rule that does not suit the tier's grace period is left out, as a saved
        one is."""
        found = cls(champion=champion)
        for test in PolicyExperiment.objects.select_related("challenger", "tier"):
            if not test.is_running:
                continue
            found.tests[test.tier_id] = test
            if test.challenger is not None and test.challenger_share:
                rules = [
                    ReminderRule(
                        tier_id=test.tier_id,
                        offset_days=offset,
                        channel=channel,
                        kind=kind,
                        send_time=dt.time.fromisoformat(at),
                    )
                    for offset, channel, kind, at in test.challenger.rules
                ]
                for rule in rules:
                    rule.policy_version_id = test.challenger_id
                found.challenger[test.tier_id] = [
                    r for r in rules if r.fits_grace_period(test.tier.grace_period_days)
                ]
        return found

    @property
    def tier_ids(self) -> list[int]:
        return sorted(set(self.champion) | set(self.challenger))

    def offsets(self) -> set[int]:
        return {
            r.offset_days for rules in [*self.champion.values(), *self.challenger.values()] for r in rules
        }

    def with_arms(self, rows: QuerySet) -> QuerySet:
        """Instalment rows annotated with their customer's arm (``arm``) when a test runs; unchanged otherwise."""
        if not self.tests:
            return rows
        arm = PolicyAssignment.objects.filter(
            customer_id=OuterRef("loan__customer_id"), tier_id=OuterRef("loan__customer__tier_id")
        ).order_by("-id")
        return rows.annotate(arm=Subquery(arm.values("arm")[:1]), arm_seed=Subquery(arm.values("seed")[:1]))

    def row_fields(self) -> tuple[str, ...]:
        """The annotations ``with_arms`` adds, for the rows' ``values()``."""
        return ("arm", "arm_seed") if self.tests else ()

    def rules_for(self, tier_id: int, row: dict) -> Iterable[ReminderRule]:
        """The rules planned for the customer of ``row`` (an instalment row, annotated by ``with_arms``): a
        customer not assigned yet, or assigned under an earlier seed, follows the champion."""
        test = self.tests.get(tier_id)
        arm = row.get("arm") if test is not None and row.get("arm_seed") == test.seed else Arm.CHAMPION
        if arm == Arm.CHALLENGER and tier_id in self.challenger:
            return self.challenger[tier_id]
        rules = self.champion.get(tier_id, [])
        if arm == Arm.HOLDOUT:
            return [r for r in rules if not is_pre_due(r)]
        return rules
