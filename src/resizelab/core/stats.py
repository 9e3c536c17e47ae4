"""Statistics for reports: means with Student-t confidence intervals over seeds, and Pareto fronts."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def t_critical_95(df: int) -> float:
    """Two-sided 95% Student-t critical value (scipy's quantile function, exact for any df)."""
    if df < 1:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, df))


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
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Summary(1, mean, float("nan"))
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return Summary(len(values), mean, t_critical_95(len(values) - 1) * sem)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower cost (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
