"""The ladder's rule: which of a tier's escalation steps a case performs at its days past due, and which it
passes over. Pure (no query, no clock): the daily advance, a tier change and the policy preview all call it.

An instalment's own standing (state, days past due, end of grace) is the loan book's: ``loans.schedule``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Step(Protocol):
    min_dpd: int


S = TypeVar("S", bound=Step)

# Dedupe keys of the ladder's messages in the reminder engine's log start with this and the tier: the messages of
# one customer, kind and channel on their local day are one contact naming every case's loan (notice_dedupe_key).
LADDER_KEY_PREFIX = "case:"


def steps_to_perform(
    steps: Sequence[S], dpd: int, grace: int, done: Collection[S]
) -> tuple[list[S], list[S]]:
    """The ladder steps a case performs at ``dpd`` days past due, and those it passes over (SPEC.md).

    Nothing is reached inside the grace period (``dpd <= grace``). Of the steps reached (``min_dpd <= dpd``)
    and not ``done`` yet, only those of the highest ``min_dpd`` are performed (all of them when several share
    it); the lower ones are skipped, never sent as a burst. Both lists keep the order of ``steps``. Used by the
    daily advance, by a tier change (whether the new ladder reaches a call) and by the policy preview.
    """
    if dpd <= grace:
        return [], []
    reached = [s for s in steps if s.min_dpd <= dpd and s not in done]
    if not reached:
        return [], []
    top = max(s.min_dpd for s in reached)
    return [s for s in reached if s.min_dpd == top], [s for s in reached if s.min_dpd < top]


@dataclass(frozen=True)
class LadderStep:
    """A ladder step as a policy version stored it. ``pk`` is the ladder row it was read from, None when a later
    version deleted that row (the step is then known by its DPD and action)."""

    pk: int | None
    min_dpd: int
    action: str
    stage: str
    kind: str


def version_ladder(ladder: Sequence[dict], existing_step_ids: Collection[int]) -> list[LadderStep]:
    """A version's stored ladder as steps, in its stored order (by DPD, then as the rows were written)."""
    return [
        LadderStep(
            pk=s.get("step_id") if s.get("step_id") in existing_step_ids else None,
            min_dpd=s["min_dpd"],
            action=s["action"],
            stage=s.get("stage", ""),
            kind=s.get("kind", ""),
        )
        for s in ladder
    ]


def done_steps(
    ladder: Sequence[S], done_ids: Collection[int], done_keys: Collection[tuple[int, str]]
) -> set[S]:
    """The steps of ``ladder`` a case already ran: by their ladder row; a version's step whose row is gone since
    by its DPD and action among the runs whose row is gone (``done_keys``)."""
    return {
        s for s in ladder if (s.pk in done_ids if s.pk is not None else (s.min_dpd, s.action) in done_keys)
    }
