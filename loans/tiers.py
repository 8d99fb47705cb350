"""Which credit tier a score falls in: the one rule, called by the score job, the customer import, a customer's
save and the re-derivation after tier ranges changed. Over plain values: no query here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import CreditTier


def tier_for(score: int | None, tiers: Iterable[CreditTier]) -> CreditTier | None:
    """The tier whose score range (``min_score`` to ``max_score``, both included) holds ``score``; None without a
    score or when no range holds it. Tiers do not overlap (``CreditTier.clean`` and the import refuse it); should
    two hold the score, the one of the lower range wins."""
    if score is None:
        return None
    holding = [t for t in tiers if t.min_score <= score <= t.max_score]
    return min(holding, key=lambda t: (t.min_score, t.max_score), default=None)
