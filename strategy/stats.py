"""Confidence intervals for the outcome pages: pure functions over counts."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval (95% by default) of a rate ``successes / trials``; None without trials. Unlike
    the normal approximation it stays inside [0, 1] and is honest for small counts and rates near 0 or 1."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_ratio_interval(events: int, units: int, z: float = Z_95) -> tuple[float, float] | None:
    """An approximate 95% interval of a count per unit (contacts per cured instalment): the events as a Poisson count
    (square-root scale, Anscombe), divided by the units; None without units."""
    if units <= 0:
        return None
    low = max(0.0, math.sqrt(events + 3 / 8) - z / 2) ** 2 - 3 / 8
    high = (math.sqrt(events + 3 / 8) + z / 2) ** 2 - 3 / 8
    return max(0.0, low) / units, high / units


def overlaps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two intervals overlap: a difference between them may be noise."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]
