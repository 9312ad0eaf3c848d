"""Interval estimates and a rank test for study summaries: Wilson for rates, bootstrap for means and medians, Mann–Whitney U.

Pure Python (scipy is used for the rank test's p-value when it is installed, else an exact count
for small samples without ties and the normal approximation otherwise), so the report and the
experiments share one definition of each interval.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

Z95 = 1.959963984540054  # the normal quantile for a two-sided 95% interval
BOOTSTRAP_RESAMPLES = 2000
EXACT_LIMIT = 30  # the exact U distribution up to this many observations in all (no ties)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); ``(0, 1)`` when ``n == 0``.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n,
    which is where solve rates over 10 seeds usually sit.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, where rounding would miss
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap_interval(values: Sequence[float], statistic: Callable[[Sequence[float]], float] = statistics.fmean,
                       level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (seeded: the same values give the same interval).

    One value gives a zero-width interval at it: a reader sees n = 1 beside it, never a made-up spread.
    """
    if not values:
        raise ValueError("bootstrap_interval: no values")
    data = [float(v) for v in values]
    if len(data) == 1:
        return data[0], data[0]
    rng = random.Random(seed)
    stats = sorted(statistic(rng.choices(data, k=len(data))) for _ in range(resamples))
    tail = (1 - level) / 2
    low = stats[int(math.floor(tail * (resamples - 1)))]
    high = stats[int(math.ceil((1 - tail) * (resamples - 1)))]
    return low, high


@dataclass(frozen=True)
class RankTest:
    """A two-sided Mann–Whitney U test of two samples: ``u`` is the first sample's statistic."""

    u: float
    p_value: float
    n1: int
    n2: int
    method: str  # "exact", "normal" or "scipy"


def _ranks(values: Sequence[float]) -> list[float]:
    """Mid-ranks (1-based) of ``values``: ties share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give each U = 0..n1*n2 (no ties): the exact null distribution."""
    # f(m, n)[u]: orderings of m x's and n y's with u (x > y) pairs; the largest element is an x (adds n) or a y.
    table: dict[tuple[int, int], list[int]] = {}
    for m in range(n1 + 1):
        for n in range(n2 + 1):
            if m == 0 or n == 0:
                table[m, n] = [1] + [0] * (m * n)
                continue
            counts = [0] * (m * n + 1)
            for u, c in enumerate(table[m - 1, n]):
                counts[u + n] += c
            for u, c in enumerate(table[m, n - 1]):
                counts[u] += c
            table[m, n] = counts
    return tuple(table[n1, n2])


def mann_whitney(first: Sequence[float], second: Sequence[float]) -> RankTest:
    """Two-sided Mann–Whitney U test: do ``first`` and ``second`` come from one distribution?

    scipy's ``mannwhitneyu`` when installed; else the exact null distribution for small samples
    without ties, and the normal approximation with tie and continuity corrections otherwise.
    """
    n1, n2 = len(first), len(second)
    if not n1 or not n2:
        raise ValueError("mann_whitney: both samples need at least one value")
    values = [float(v) for v in (*first, *second)]
    ranks = _ranks(values)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    try:
        from scipy.stats import mannwhitneyu  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        result = mannwhitneyu(first, second, alternative="two-sided")
        return RankTest(float(result.statistic), float(result.pvalue), n1, n2, "scipy")
    tied = len(set(values)) < len(values)
    if not tied and n1 + n2 <= EXACT_LIMIT:
        counts = _u_counts(n1, n2)
        total = sum(counts)
        low = min(u, n1 * n2 - u)  # the distribution is symmetric: double the smaller tail
        tail = sum(counts[: int(low) + 1]) / total
        return RankTest(u, min(1.0, 2 * tail), n1, n2, "exact")
    n = n1 + n2
    ties = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    variance = n1 * n2 / 12 * ((n + 1) - sum(t ** 3 - t for t in ties.values()) / (n * (n - 1)))
    if variance <= 0:  # every value equal: no evidence either way
        return RankTest(u, 1.0, n1, n2, "normal")
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return RankTest(u, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))), n1, n2, "normal")


__all__ = ["BOOTSTRAP_RESAMPLES", "RankTest", "Z95", "bootstrap_interval", "mann_whitney", "wilson"]
