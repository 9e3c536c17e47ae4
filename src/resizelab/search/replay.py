"""Replay: a study answered from a full grid measured before (per-epoch validation and test accuracies, measured
epoch times) instead of training, so the search's quality is checked against the truth in seconds.

A grid is a small JSON file exported from a sweep of the store (`export_grid`). A job of k epochs is answered
with the first k epochs of the grid's run: with a constant learning rate and the same seed, the first k
epochs of a longer run are the k-epoch run (the grids are measured that way, and the file says so).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.stats import pareto_front, t_interval
from .driver import Job, Observation, SearchResult
from .space import Point, SearchSpace

GRID_FORMAT = 1


def observation_from_result(result: dict, epochs: int | None = None, trained: bool = False) -> Observation:
    """An Observation from a stored result's JSON (its first `epochs` epochs when given)."""
    history = result["epoch_history"][:epochs] if epochs else result["epoch_history"]
    if any(e.get("val_accuracy") is None for e in history):
        raise ConfigError(f"run {result['config_hash']} has no per-epoch validation accuracy; it was trained without --val-fraction")
    serving, serving_val = {}, {}
    test_size = result["evals"][0]["size_px"] if result.get("evals") else None
    for s in result.get("serving") or []:
        if s["size_px"] == test_size:
            serving[s["recipe"]] = s["accuracy"]
    for s in result.get("serving_val") or []:
        serving_val[s["recipe"]] = s["accuracy"]
    return Observation([e["val_accuracy"] for e in history], result["test_accuracy"], sum(e["seconds"] for e in history),
                       serving, serving_val, result.get("images_per_second") or float("nan"), result["config_hash"], trained,
                       history[0]["images"] if history else 0, serve_throughput(result))


def serve_throughput(result: dict) -> float:
    """Test images per second of the run's headline test pass (resize and forward pass), NaN when not measured."""
    first = (result.get("evals") or [{}])[0]
    seconds, images = first.get("seconds") or 0.0, first.get("images") or 0
    return images / seconds if seconds > 0 and images else float("nan")


def point_of(config: dict) -> Point:
    return Point(config["size"], config["interpolation"], bool(config["antialias"]), config["backend"])


def export_grid(db: str, sweep: str) -> dict:
    """The done runs of `sweep` in `db` as a grid: per run its point, seed, per-epoch validation accuracy and
    seconds, test accuracy and serving accuracies; and the settings every run shares."""
    from ..store.read import read_runs

    stored = read_runs(db, sweep=sweep)
    results = [row["result_json"] if isinstance(row["result_json"], dict) else json.loads(row["result_json"]) for row in stored.runs]
    # A grid is one fidelity: an advise study's cheap runs (fewer epochs) are left out.
    epochs = max((r["config"]["epochs"] for r in results), default=0)
    runs, shared = [], None
    for result in (r for r in results if r["config"]["epochs"] == epochs):
        cfg = result["config"]
        fixed = {k: v for k, v in cfg.items() if k not in ("size", "interpolation", "antialias", "backend", "seed", "test_size",
                                                            "test_interpolation", "data", "data_dir")}
        shared = shared or fixed
        runs.append({"point": point_of(cfg).options(), "seed": cfg["seed"], "config_hash": result["config_hash"],
                     "val_by_epoch": [round(e["val_accuracy"], 4) for e in result["epoch_history"]],
                     "epoch_seconds": [round(e["seconds"], 4) for e in result["epoch_history"]],
                     "test_accuracy": result["test_accuracy"], "images_per_second": round(result["images_per_second"], 2),
                     "serve_images_per_second": round(serve_throughput(result), 2),
                     "serving": {s["recipe"]: s["accuracy"] for s in result.get("serving") or []
                                 if s["size_px"] == result["evals"][0]["size_px"]}})
    if not runs:
        raise ConfigError(f"sweep {sweep!r} in {db} has no finished runs to export")
    fraction, trained = shared.get("val_fraction") or 0, results[0]["epoch_history"][0]["images"]
    val_images = round(trained * fraction / (1 - fraction))
    return {"format": GRID_FORMAT, "sweep": sweep, "settings": shared, "val_images": val_images,
            "note": "measured with resizelab sweep; every run has the same settings but its point and seed", "runs": runs}


@dataclass
class Grid:
    """A full grid: every point × seed, the truth a replayed study is scored against."""

    runs: dict[tuple[Point, int], dict]
    epochs: int
    val_images: int
    name: str

    @classmethod
    def load(cls, path: str | Path) -> "Grid":
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"grid file {path} does not exist; export one with resizelab.search.replay.export_grid") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"grid file {path} is not JSON: {e}") from None
        return cls.from_dict(doc, Path(path).stem)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], name: str = "grid") -> "Grid":
        if doc.get("format") != GRID_FORMAT:
            raise ConfigError(f"grid {name}: format {doc.get('format')!r}, expected {GRID_FORMAT}")
        runs = {(Point(**r["point"]), r["seed"]): r for r in doc["runs"]}
        return cls(runs, doc["settings"]["epochs"], doc.get("val_images", 0), name)

    @property
    def points(self) -> list[Point]:
        return sorted({p for p, _ in self.runs})

    @property
    def seeds(self) -> list[int]:
        return sorted({s for _, s in self.runs})

    def space(self) -> SearchSpace:
        pts = self.points
        return SearchSpace(tuple(sorted({p.size for p in pts})), tuple(sorted({p.interpolation for p in pts})),
                           tuple(sorted({p.antialias for p in pts}, reverse=True)), tuple(sorted({p.backend for p in pts})))

    def total_seconds(self) -> float:
        return sum(sum(r["epoch_seconds"]) for r in self.runs.values())

    def mean_run_seconds(self) -> float:
        return self.total_seconds() / len(self.runs)

    def truth(self) -> dict[Point, dict]:
        """Per point: mean test accuracy over the grid's seeds, its 95% interval, mean training seconds."""
        out = {}
        for p in self.points:
            rs = [self.runs[(p, s)] for s in self.seeds if (p, s) in self.runs]
            mean, lo, hi = t_interval([r["test_accuracy"] for r in rs])
            out[p] = {"test": mean, "lo": lo, "hi": hi, "seconds": sum(sum(r["epoch_seconds"]) for r in rs) / len(rs)}
        return out

    def best(self) -> Point:
        truth = self.truth()
        return max(truth, key=lambda p: truth[p]["test"])


class ReplayOracle:
    """Answers jobs from a grid: no training, the grid's measured times as the cost."""

    def __init__(self, grid: Grid):
        self.grid = grid

    def estimate(self, job: Job) -> float:
        # The dearest of the grid's seeds: a study priced this way never spends past its budget, whichever seed runs.
        rs = [r for (p, _), r in self.grid.runs.items() if p == job.point]
        return max(sum(r["epoch_seconds"][:job.epochs]) for r in rs) if rs else 0.0

    def answer(self, jobs: list[Job]) -> list[Observation | None]:
        out = []
        for job in jobs:
            r = self.grid.runs.get((job.point, job.seed))
            if r is None:
                out.append(None)
                continue
            k = job.epochs
            out.append(Observation(r["val_by_epoch"][:k], r["test_accuracy"] if k == self.grid.epochs else float("nan"),
                                   sum(r["epoch_seconds"][:k]), dict(r.get("serving", {})), {}, r.get("images_per_second", math.nan),
                                   r.get("config_hash"), trained=False,
                                   serve_images_per_second=r.get("serve_images_per_second", math.nan)))
        return out


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (seconds, accuracy) points (fewer seconds, more accuracy) up to ref = (max seconds, min accuracy)."""
    front = [points[i] for i in pareto_front(points)]
    area, best_y = 0.0, ref[1]
    # Cheapest first: each point of the front adds the strip between the last one's accuracy and its own.
    for x, y in sorted(front, key=lambda p: p[0]):
        if y <= best_y or x >= ref[0]:
            continue
        area += (ref[0] - x) * (y - best_y)
        best_y = y
    return area


@dataclass
class ReplayScore:
    grid: str
    strategy: str
    seed: int
    recommended: str
    regret: float  # grid's best mean test accuracy minus the recommendation's (points)
    hit: bool  # within 0.5 points of the best, or inside its 95% interval
    spent_share: float  # of the full grid's compute
    hv_share: float  # hypervolume of the pipelines found against the grid's


def score(grid: Grid, result: SearchResult) -> ReplayScore:
    truth = grid.truth()
    best = truth[grid.best()]
    rec = result.recommended.point if result.recommended else None
    rec_test = truth[rec]["test"] if rec else float("nan")
    regret = best["test"] - rec_test if rec else float("inf")
    hit = rec is not None and (regret <= 0.5 or best["lo"] <= rec_test <= best["hi"])
    ref = (max(t["seconds"] for t in truth.values()), min(t["test"] for t in truth.values()))
    full = hypervolume([(t["seconds"], t["test"]) for t in truth.values()], ref)
    found = hypervolume([(truth[c.point]["seconds"], truth[c.point]["test"]) for c in result.candidates], ref)
    return ReplayScore(grid.name, result.settings.strategy, result.settings.seed, rec.label() if rec else "-", regret, hit,
                       result.spent_seconds / grid.total_seconds(), found / full if full > 0 else 1.0)
