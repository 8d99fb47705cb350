"""The ladder's rule as a table: which steps a case performs at a number of days past due, which it passes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from debt_collection.ladder import steps_to_perform


@dataclass(frozen=True)
class Step:
    min_dpd: int
    action: str


EARLY, CALL_SMS, CALL, FIRM, AGENCY, LEGAL = (
    Step(1, "sms"),
    Step(3, "sms"),
    Step(3, "call_task"),
    Step(7, "sms"),
    Step(30, "agency"),
    Step(60, "legal"),
)
LADDER = [EARLY, CALL_SMS, CALL, FIRM, AGENCY, LEGAL]


@pytest.mark.parametrize(
    ("dpd", "grace", "done", "perform", "skipped"),
    [
        (2, 2, set(), [], []),  # inside grace nothing is reached
        (1, 0, set(), [EARLY], []),
        (3, 2, set(), [CALL_SMS, CALL], [EARLY]),  # all steps of the highest min_dpd; the lower one passed
        (7, 2, {EARLY, CALL_SMS, CALL}, [FIRM], []),
        (8, 2, {EARLY, CALL_SMS, CALL, FIRM}, [], []),  # nothing new reached
        (31, 2, set(), [AGENCY], [EARLY, CALL_SMS, CALL, FIRM]),  # opened late: one step, never a burst
        (61, 2, {EARLY, CALL_SMS, CALL}, [LEGAL], [FIRM, AGENCY]),  # resumed after a hold
        (500, 2, set(LADDER), [], []),
    ],
)
def test_it_performs_only_the_steps_of_the_highest_min_dpd_reached(dpd, grace, done, perform, skipped):
    assert steps_to_perform(LADDER, dpd, grace, done) == (perform, skipped)


def test_it_reaches_nothing_on_an_empty_ladder():
    assert steps_to_perform([], 40, 3, set()) == ([], [])
