"""Significance: the two-proportion z-test (the A/B winner, the reports' A/B table) and Wilson intervals."""

from __future__ import annotations

import math


def z_test(successes_a: int, total_a: int, successes_b: int, total_b: int) -> float:
    """Two-sided p-value of a two-proportion z-test (NaN when it cannot be computed)."""
    if min(total_a, total_b) == 0:
        return float("nan")
    pooled = (successes_a + successes_b) / (total_a + total_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    if spread == 0:
        return float("nan")
    z = (successes_b / total_b - successes_a / total_a) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float, float]:
    """The rate and its 95 % Wilson score interval (NaN for an empty group)."""
    if total <= 0:
        return float("nan"), float("nan"), float("nan")
    rate = successes / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    spread = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return rate, max(0.0, centre - spread), min(1.0, centre + spread)
