"""Findings-style verdicts on learned resizers: at each size, each learned method against each fixed method of the
same study, the accuracy difference with its confidence interval (paired by seed, Bonferroni over the cases, as
analysis.findings decides its claims) beside what the learned resizer costs (MACs, parameters, images/s)."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.choices import LEARNED_INTERPOLATIONS
from ..store.runs import Group
from .findings import LEVEL, case_level, difference


# The serve matrix's threshold (Findings claim 7): a difference inside one point either way does not matter.
TIE_POINTS = 1.0
VERDICTS = ("beats", "loses to", "ties with", "not resolved against")


@dataclass
class LearnedVerdict:
    data: str
    size_px: int
    learned: str
    fixed: str
    verdict: str  # one of VERDICTS
    points: float  # learned minus fixed, test accuracy points
    low: float
    high: float
    level: float
    seeds: int
    extra_macs_percent: float  # learned run's MACs per image over the fixed run's, minus 1, in percent
    resizer_params: int
    resizer_macs_per_image: int
    train_speed_ratio: float  # training images/s, learned over fixed (one machine, one study)
    serve_speed_ratio: float  # the resizer's forward images/s over the bare bilinear resize it wraps

    def text(self) -> str:
        ci = f"[{self.low:+.1f}, {self.high:+.1f}]" if not math.isnan(self.low) else "[no interval: too few seeds]"
        said = {"beats": f"{self.learned} beats {self.fixed}",
                "loses to": f"{self.learned} loses to {self.fixed}",
                "ties with": f"{self.learned} ties with {self.fixed} (within ±{TIE_POINTS:g} point)",
                "not resolved against": f"{self.learned} against {self.fixed} is not resolved at {self.seeds} seeds"}[self.verdict]
        return (f"{self.data}, {self.size_px} px: {said}: {self.points:+.1f} points {ci} "
                f"({self.level:.1%} CI, {self.seeds} seeds); it costs {self.extra_macs_percent:+.1f}% MACs "
                f"({self.resizer_params:,} resizer parameters), trains at {self.train_speed_ratio:.2f}x the fixed arm's images/s")


def learned_verdicts(groups: list[Group]) -> list[LearnedVerdict]:
    """Every (data, size, learned method, fixed method) the groups hold; empty when no run learned its resizer."""
    table: dict[tuple[str, int, str], Group] = {}
    for g in groups:
        table[(g.config["data"], g.train_size, g.config["interpolation"])] = g
    cases = [(d, s, lm, fm) for (d, s, lm) in sorted(table, key=str) if lm in LEARNED_INTERPOLATIONS
             for (d2, s2, fm) in sorted(table, key=str) if (d2, s2) == (d, s) and fm not in LEARNED_INTERPOLATIONS]
    level = case_level(len(cases))
    out = []
    for data, size, lm, fm in cases:
        lg, fg = table[(data, size, lm)], table[(data, size, fm)]
        est = difference(_by_seed(lg), _by_seed(fg), level, f"{lm} - {fm} at {size} px")
        resolved = not (math.isnan(est.low) or math.isnan(est.high))
        verdict = ("beats" if resolved and est.low > 0 else "loses to" if resolved and est.high < 0
                   else "ties with" if resolved and -TIE_POINTS <= est.low and est.high <= TIE_POINTS
                   else "not resolved against")
        cost = (lg.runs[0].get("result") or {}).get("resizer") or {}
        out.append(LearnedVerdict(
            data, size, lm, fm, verdict, est.value, est.low, est.high, level, est.n,
            100.0 * (lg.runs[0]["macs_per_image"] / fg.runs[0]["macs_per_image"] - 1), int(cost.get("params", 0)),
            int(cost.get("macs_per_image", 0)), _mean(lg, "images_per_second") / _mean(fg, "images_per_second"),
            cost.get("serving_images_per_second", math.nan) / cost.get("wraps_serving_images_per_second", math.nan)))
    return out


def _by_seed(g: Group) -> dict[int, float]:
    return {r["config"]["seed"]: r["test_accuracy"] for r in g.runs}


def _mean(g: Group, key: str) -> float:
    values = [r[key] for r in g.runs if r.get(key) is not None]
    return sum(values) / len(values) if values else math.nan


def write_learned(verdicts: list[LearnedVerdict], out: Path) -> list[str]:
    """learned.csv (one row per case) and learned.txt (one sentence per case); the files written."""
    if not verdicts:
        return []
    with open(out / "learned.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(verdicts[0])))
        writer.writeheader()
        writer.writerows(asdict(v) for v in verdicts)
    (out / "learned.txt").write_text(
        f"Learned resizers against fixed methods (simultaneous {LEVEL:.0%} intervals over {len(verdicts)} cases):\n"
        + "".join(f"- {v.text()}\n" for v in verdicts))
    return ["learned.csv", "learned.txt"]
