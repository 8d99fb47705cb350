"""Which arm of a tier's champion/challenger test a customer is in: a pure rule over the customer's id and the
test's seed and shares (``arm_for``), so the same customer always lands in the same arm of one test."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from .models.experiments import Arm


def unit_draw(customer_id: int, seed: str) -> float:
    """A number in [0, 1) fixed by the customer and the seed (SHA-256 of ``"seed:customer_id"``)."""
    digest = hashlib.sha256(f"{seed}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_for(customer_id: int, seed: str, challenger_share: Decimal, holdout_share: Decimal) -> str:
    """The arm: holdout for a draw below ``holdout_share``, challenger for the next ``challenger_share``, champion
    for the rest."""
    draw = unit_draw(customer_id, seed)
    if draw < float(holdout_share):
        return Arm.HOLDOUT.value
    if draw < float(holdout_share) + float(challenger_share):
        return Arm.CHALLENGER.value
    return Arm.CHAMPION.value
