"""Small statistics for benchmark results: percentiles, medians, ratios.

Rounds are repeated and interleaved because the machine is shared; a section reports the
median of its rounds, and ratios are taken between modes of the same run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Percentiles:
    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    def as_json(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in asdict(self).items()}


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(sorted_values[low])
    weight = position - low
    return float(sorted_values[low] * (1 - weight) + sorted_values[high] * weight)


def percentiles(values: Sequence[float]) -> Percentiles:
    ordered = sorted(values)
    if not ordered:
        return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Percentiles(
        count=len(ordered),
        mean=statistics.fmean(ordered),
        p50=quantile(ordered, 0.50),
        p95=quantile(ordered, 0.95),
        p99=quantile(ordered, 0.99),
        max=float(ordered[-1]),
    )


def weighted_percentiles(pairs: Sequence[tuple[float, int]]) -> Percentiles:
    """Percentiles of values that occur ``count`` times each (e.g. records of one transaction)."""
    values: list[float] = []
    for value, count in pairs:
        values.extend([value] * count)
    return percentiles(values)


def median(values: Sequence[float]) -> float:
    clean = [value for value in values if not math.isnan(value)]
    return float(statistics.median(clean)) if clean else math.nan


def ratio(numerator: float, denominator: float) -> float:
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def ratios_line(ratios: Sequence[float]) -> str:
    """An A/B's ratios per round as the benchmarks print them: the median, then each round."""
    return f"median {median(ratios):.3f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
