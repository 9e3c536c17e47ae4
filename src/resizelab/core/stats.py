"""Statistics: means with Student-t confidence intervals over seeds (the one interval every table, figure and
verdict uses), and Pareto fronts."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def t_critical(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value at `level` (scipy's quantile function, exact for any df)."""
    if df < 1:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def t_critical_95(df: int) -> float:
    return t_critical(df, 0.95)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its two-sided Student-t interval at `level` (nan bounds for fewer than 2 values)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan"), float("nan")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = t_critical(len(values) - 1, level) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    half_width: float  # 95% CI half-width; nan for n = 1

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1 or math.isnan(self.half_width):
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


def mean_ci(values: list[float]) -> Summary:
    """Mean and the half-width of its two-sided 95% t confidence interval."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return Summary(0, float("nan"), float("nan"))
    mean, low, high = t_interval(values, 0.95)
    return Summary(len(values), mean, (high - low) / 2)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower cost (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
