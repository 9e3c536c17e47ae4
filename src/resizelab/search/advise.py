"""`advise`: the search run for real (each job an ordinary stored run, trained by the sweep executors unless the
store holds it) or replayed from a grid, and the answer a user acts on.

The store is the only state: a study killed and run again asks the same jobs in the same order (the driver is
deterministic in its seed and the answers), finds the finished ones in the store and trains only the rest.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.choices import SERVE_RECIPES, effective_antialias
from ..core.config import RunConfig, choice, declared_options, option, text, whole
from ..core.errors import ConfigError
from ..core.optional import require
from ..store.database import Store, new_owner_id
from .budget import Budget, parse_budget
from .driver import STRATEGIES, Job, Observation, SearchResult, SearchSettings, search
from .replay import Grid, ReplayOracle, observation_from_result
from .space import SearchSpace

OBJECTIVES = ("accuracy", "pareto")
DEFAULT_VAL_FRACTION = 0.2


def _check_budget(name: str, value: Any) -> None:
    parse_budget(value)


@dataclass(frozen=True)
class AdviseConfig:
    """What a search may spend and what it optimises; the run options (data, model, training) are a RunConfig."""

    budget: str = option("20%", text("BUDGET", _check_budget), "what the search may spend: compute time (30m, 4h, 900s), "
                         "a number of full runs (12), or a share of the full grid's estimated cost (20%)")
    serve: str | None = option(None, choice(SERVE_RECIPES, optional=True), "the serving recipe whose validation accuracy "
                               "is maximised (default: the training recipe of each pipeline); every recipe is evaluated on "
                               "each trained model and read from the store, not searched")
    objective: str = option("accuracy", choice(OBJECTIVES), "accuracy: the most accurate pipeline; pareto: accuracy "
                            "against training time (NSGA-II), the front and its most accurate point")
    seed: int = option(0, whole(0, 2**31 - 1), "the sampler's seed: the same seed and store give the same recommendation")
    final_seeds: int = option(3, whole(2, 10), "seeds each finalist gets, for its 95% interval")
    low_epochs: int = option(1, whole(1), "epochs of a pipeline's first, cheap run (its validation accuracy decides "
                             "whether it trains the full epochs)")
    strategy: str = option("advise", choice(STRATEGIES[:3]), "advise (TPE, cheap runs first, seeds for the finalists); "
                           "tpe or random: full runs of one seed each, the baselines of the replay benchmark")
    replay: str | None = option(None, text("GRID.json", optional=True), "answer from a stored full grid instead of "
                                "training (benchmarks/advise_grid_*.json); nothing is trained or stored (default: train for real)")
    pareto: bool = False  # set from objective

    def __post_init__(self) -> None:
        for name, opt in declared_options(AdviseConfig):
            opt.kind.check(name, getattr(self, name))

    @property
    def parsed_budget(self) -> Budget:
        return parse_budget(self.budget)


@dataclass
class Advice:
    """The answer: what to train and serve with, how sure, what it cost, against the grid."""

    result: SearchResult
    grid_seconds: float  # what the full grid (every pipeline × final_seeds) costs, measured or estimated
    serve: str | None
    space: SearchSpace
    budget: str
    replay: str | None = None
    sweep: str | None = None
    db: str | None = None
    truth: dict = field(default_factory=dict)  # replay: the grid's mean test accuracy per pipeline label
    report: Any = None  # the Advice page, when one was written

    def serving_recipe(self) -> str:
        from ..training.recipes import training_recipe

        rec = self.result.recommended
        if self.serve:
            return self.serve
        p = rec.point
        return training_recipe(p.interpolation, effective_antialias(p.interpolation, p.backend, p.antialias), p.backend) or \
            f"{p.backend}-{p.interpolation} (as trained)"

    def to_dict(self) -> dict:
        r = self.result
        rec, runner = r.recommended, r.runner_up
        out: dict[str, Any] = {
            "recommended": rec.to_dict() if rec else None, "serving_recipe": self.serving_recipe() if rec else None,
            "runner_up": runner.to_dict() if runner else None, "objective": "pareto" if r.settings.strategy == "pareto" else "accuracy",
            "serve": self.serve, "strategy": r.settings.strategy, "seed": r.settings.seed, "budget": self.budget,
            "budget_seconds": r.settings.budget_seconds, "spent_seconds": r.spent_seconds, "trained_seconds": r.trained_seconds,
            "grid_seconds": self.grid_seconds, "spent_share_of_grid": r.spent_seconds / self.grid_seconds if self.grid_seconds else None,
            "noise_sd": r.noise_sd, "trials": r.trials, "jobs": len(r.jobs), "space": self.space.describe(),
            "candidates": [c.to_dict() for c in r.candidates], "front": [c.point.label() for c in r.front],
            "best_so_far": [{"spent_seconds": s, "leader": label} for s, label in r.best_so_far],
            "replay": self.replay, "sweep": self.sweep, "db": self.db,
        }
        if rec and rec.serving:
            base = rec.serving.get(self.serving_recipe())
            base = sum(base) / len(base) if base else rec.test_interval()[0]
            out["mismatch_cost"] = {k: base - sum(v) / len(v) for k, v in sorted(rec.serving.items())}
        return out

    def text(self) -> str:
        r = self.result
        rec = r.recommended
        if rec is None:
            return "advise: no pipeline finished at full fidelity within the budget; give a larger --budget"
        p = rec.point
        mean, lo, hi = rec.test_interval()
        ci = f"95% CI {lo:.1f}-{hi:.1f}, n={rec.n} seeds" if rec.n >= 2 else "n=1 seed: no interval, give a larger --budget"
        if rec.n >= 2 and hi - lo < 0.05:
            # Seeds that agree exactly (on a small test split each scores the same count) make an interval of zero
            # width: it says the seeds agreed, not that the accuracy is known to the decimal.
            ci += " that agree exactly: an interval of zero width is not a precise accuracy; more test images would tell"
        d = rec.to_dict()
        lines = [
            f"Recommendation ({'replayed from ' + self.replay if self.replay else 'measured'}; selected on the validation split, "
            "test accuracy reported)",
            f"  train at {p.size} px, {p.interpolation}, antialias {str(p.antialias).lower()}, backend {p.backend}; "
            f"serve with {self.serving_recipe()}",
            f"  test accuracy {mean:.2f}% ({ci}); validation {rec.mean:.2f}%",
            f"  training {d['train_seconds']:.1f} s per run, {d['images_per_second']:.0f} img/s; "
            + serving_speed(d, "the grid's machine" if self.replay else "this machine"),
        ]
        runner = r.runner_up
        if runner is not None:
            rd = runner.to_dict()
            saves = 1 - rd["train_seconds"] / d["train_seconds"] if d["train_seconds"] else 0
            lines.append(f"  runner-up within seed noise: {runner.point.label()}, test {rd['test_accuracy']:.2f}% (n={runner.n}), "
                         + (f"saves {100 * saves:.0f}% of training time" if saves > 0 else f"costs {100 * -saves:.0f}% more training time"))
        else:
            lines.append("  no other pipeline is within seed noise of it")
        cost = self.to_dict().get("mismatch_cost")
        if cost and max(cost.values()) - min(cost.values()) < 0.005:
            lines.append(f"  serving mismatch: none measured, all {len(cost)} recipes score alike (no resize at this size)")
        elif cost:
            worst = max(cost, key=cost.get)
            lines.append(f"  serving mismatch: the worst recipe measured, {worst}, costs {cost[worst]:+.2f} points "
                         f"(of {len(cost)} recipes; table in --json)")
        share = r.spent_seconds / self.grid_seconds if self.grid_seconds else float("nan")
        lines.append(f"  search spent {r.spent_seconds:.0f} s of training ({100 * share:.0f}% of the full grid's "
                     f"{self.grid_seconds:.0f} s: {self.space.describe()} × {r.settings.final_seeds} seeds); "
                     f"{len(r.jobs)} runs asked, {r.trials} pipelines proposed by the sampler, {len(r.candidates)} measured at full "
                     f"fidelity (stored earlier ones included), seed noise sd {r.noise_sd:.2f} points")
        if self.sweep:
            lines.append(f"  runs stored in {self.db} as sweep {self.sweep}")
        return "\n".join(lines)


def serving_speed(candidate: dict, where: str) -> str:
    speed = candidate.get("serve_images_per_second", float("nan"))
    if speed is None or not math.isfinite(speed):
        return "serving throughput not recorded (a grid exported before it was)"
    return f"serving {speed:.0f} img/s (resize and forward pass of the test split, {where})"


# --- the real loop: jobs are stored runs ------------------------------------------------------------


class StoreOracle:
    """Answers jobs from the store, training (on one executor kept for the whole study) what it does not hold."""

    def __init__(self, base: RunConfig, db: str, sweep: str, options: Any, quiet: bool):
        self.base, self.db, self.sweep, self.options, self.quiet = base, db, sweep, options, quiet
        self.owner = new_owner_id()
        self.executor = None
        self.seconds_per_px: float | None = None  # training seconds per image, epoch and pixel, measured here
        self.trained_hashes: set[str] = set()
        self.representative: list[RunConfig] = []  # what the executor is sized for: one run of each pipeline

    def config(self, job: Job) -> RunConfig:
        return dataclasses.replace(self.base, **job.point.options(), seed=job.seed, epochs=job.epochs)

    def estimate(self, job: Job) -> float:
        # Training time scales with epochs and with pixels per image (the convolutions' work); the constant is
        # measured on this machine, by the study's first run.
        return (self.seconds_per_px or 0.0) * job.epochs * job.point.size ** 2

    def calibrate(self, row: dict) -> None:
        """Seconds per epoch and pixel from a finished run's row."""
        import json

        res = json.loads(row["result_json"])
        size = res["config"]["size"] or 32
        self.seconds_per_px = res["train_seconds"] / (len(res["epoch_history"]) * size ** 2)

    def answer(self, jobs: list[Job]) -> list[Observation | None]:
        import json

        from ..sweeps.claim import SweepOutcome, claim_loop
        from ..training.inputs import ensure_inputs
        from ..training.planning import many, plan

        configs = [self.config(j) for j in jobs]
        ensure_inputs(configs)
        with many(len(configs)):
            planned = [plan(c) for c in configs]
        hashes = [c.config_hash() for c in planned]
        with Store(self.db) as store:
            store.register(list({h: c for h, c in zip(hashes, planned)}.values()), sweep=self.sweep)
            while True:
                todo = list({h: c for h, c in zip(hashes, planned) if store.get(h)["status"] not in ("done", "failed")}.values())
                free = [c for c in todo if not store.held_by_another(c.config_hash(), self.owner)]
                if not todo:
                    break
                if not free:  # another advise (or sweep) trains them: theirs is this study's answer too
                    time.sleep(2.0)
                    continue
                outcome = SweepOutcome(self.sweep, len(free), db=self.db)
                if self.executor is None:
                    from ..sweeps.runner import make_executor

                    self.executor = make_executor(self.options, self.representative or free, self.quiet)
                claim_loop(free, store, self.owner, self.executor, outcome, lease_seconds=self.options.lease_seconds,
                           quiet=self.quiet, close=False)
                self.trained_hashes.update(r.config_hash for r in outcome.ran)
                if outcome.interrupted:
                    self.executor = None  # closed by the loop
                    raise outcome.interrupted if isinstance(outcome.interrupted, BaseException) else KeyboardInterrupt()
            rows = {h: store.get(h) for h in hashes}
        out = []
        for h in hashes:
            row = rows[h]
            if row["status"] != "done":
                out.append(None)
                continue
            out.append(observation_from_result(json.loads(row["result_json"]), trained=h in self.trained_hashes))
        return out

    def stored_elsewhere(self, points: list, epochs: int) -> list[tuple[Any, Observation]]:
        """Full-fidelity seed-0 runs of these pipelines that another sweep stored: the study's warm start. Runs only
        this study stored are left out, so a resumed study starts from the same trials as the first session."""
        import json

        from ..store.read import read_runs
        from ..training.planning import many, plan

        stored = read_runs(self.db, status="done")
        by_hash = {r["config_hash"]: r for r in stored.runs}
        out = []
        with many(len(points)):
            for p in points:
                h = plan(self.config(Job(p, 0, epochs))).config_hash()
                if h in by_hash and any(name != self.sweep for name in stored.sweeps.get(h, [])):
                    out.append((p, observation_from_result(json.loads(by_hash[h]["result_json"]))))
        return out

    def known(self, points: list, epochs: int, seeds: int) -> dict[str, dict]:
        """What the store already holds of the full grid (any sweep's runs, by content name): per pipeline with at
        least one finished seed, its mean test accuracy, 95% interval and mean training seconds."""
        import json

        from ..core.stats import t_interval
        from ..training.planning import many, plan

        out = {}
        with many(len(points) * seeds), Store(self.db) as store:
            for p in points:
                rows = [store.get(plan(self.config(Job(p, seed, epochs))).config_hash()) for seed in range(seeds)]
                results = [json.loads(r["result_json"]) for r in rows if r and r["status"] == "done"]
                if results:
                    mean, lo, hi = t_interval([r["test_accuracy"] for r in results])
                    out[p.label()] = {"test": mean, "lo": lo, "hi": hi, "n": len(results),
                                      "seconds": sum(r["train_seconds"] for r in results) / len(results)}
        return out

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None


def check_serve(serve: str | None, base: RunConfig) -> None:
    if serve is not None and base.val_fraction <= 0:
        raise ConfigError("--serve RECIPE selects on the validation split: give --val-fraction above 0")


def study_name(base_hash: str, seed: int) -> str:
    """The sweep name an advise study stores its runs under: its base run's content name and the sampler's seed, so
    the same command resumes the same study and another seed is another study on the same store."""
    return f"advise-{base_hash[:8]}-s{seed}"


def is_advise_study(sweep: str | None) -> bool:
    return bool(sweep) and re.fullmatch(r"advise-[0-9a-f]{8}-s\d+", sweep) is not None


def run_advise(base: RunConfig, space: SearchSpace, config: AdviseConfig, *, options: Any = None, quiet: bool = False) -> Advice:
    """The search: replayed from `config.replay`, or for real on `base`'s data and model, stored in `options.db`."""
    require("optuna", "advise", "resizelab advise")
    budget = config.parsed_budget
    strategy = "pareto" if config.objective == "pareto" else config.strategy
    if config.replay:
        grid = Grid.load(config.replay)
        space = grid.space() if space is None else space
        oracle = ReplayOracle(grid)
        grid_seconds = grid.total_seconds()
        min_run = min(e for e in (oracle.estimate(Job(p, 0, grid.epochs)) for p in space.points()) if e > 0)
        budget.check_affordable(grid_seconds, min_run, grid.mean_run_seconds())
        if config.serve is not None:
            raise ConfigError("a replayed grid has validation accuracy under the training recipe only; leave --serve out")
        settings = SearchSettings(budget.seconds(grid_seconds, grid.mean_run_seconds()), grid.epochs, config.seed, strategy, None,
                                  min(config.low_epochs, grid.epochs), min(config.final_seeds, len(grid.seeds)),
                                  val_images=grid.val_images)
        result = search(space, oracle, settings)
        truth = {p.label(): t for p, t in grid.truth().items()}
        return Advice(result, grid_seconds, None, space, config.budget, replay=config.replay, truth=truth)
    if options is None:
        from ..sweeps.runner import SweepOptions

        options = SweepOptions()
    if base.val_fraction <= 0:
        base = dataclasses.replace(base, val_fraction=DEFAULT_VAL_FRACTION)
    if config.low_epochs > base.epochs:
        raise ConfigError(f"low_epochs {config.low_epochs} is more than the runs' epochs ({base.epochs}); give --low-epochs "
                          f"{base.epochs} or fewer")
    recipes = tuple(r for r in SERVE_RECIPES if not r.startswith("cv2") or _has_cv2())
    if config.serve is not None and config.serve not in recipes:
        raise ConfigError(f"serve recipe {config.serve!r} needs OpenCV: pip install 'resizelab[opencv]'")
    base = dataclasses.replace(base, serve=recipes)
    from ..training.planning import run_hash

    sweep = study_name(run_hash(dataclasses.replace(base, size=space.sizes[0], seed=0)), config.seed)
    oracle = StoreOracle(base, str(options.db), sweep, options, quiet)
    oracle.representative = [oracle.config(Job(p, 0, base.epochs)) for p in space.points()]
    try:
        # One run of the cheapest pipeline prices every job (seconds per image, epoch and pixel): always the same
        # run, stored like the others and answered from the store on a rerun, so a resumed study prices alike.
        cheapest = min(space.points(), key=lambda p: (p.size, p))
        if budget.kind == "runs" and budget.amount < 1:
            raise ConfigError(f"budget {config.budget} is less than one run; the smallest budget that works is 1")
        pilot = oracle.answer([Job(cheapest, 0, base.epochs)])[0]
        if pilot is None:
            raise ConfigError(f"the first run ({cheapest.label()}) failed; see `resizelab report --db {options.db}` for why")
        with Store(options.db) as store:
            oracle.calibrate(store.get(pilot.config_hash))
        per_point = {p: oracle.estimate(Job(p, 0, base.epochs)) for p in space.points()}
        grid_seconds = config.final_seeds * sum(per_point.values())
        mean_run = sum(per_point.values()) / len(per_point)
        budget.check_affordable(grid_seconds, per_point[cheapest], mean_run)
        from ..sweeps.packed import resolve_executor

        # Jobs asked at once: as many as the executor trains at once, decided from the options alone (not from
        # what is already stored) so that a resumed study asks in the same batches.
        name, pack = resolve_executor(options.executor, options.pack, [oracle.config(Job(p, 0, base.epochs)) for p in space.points()])
        settings = SearchSettings(budget.seconds(grid_seconds, mean_run), base.epochs, config.seed, strategy, config.serve,
                                  config.low_epochs, config.final_seeds, batch=pack if name == "packed" else 1,
                                  val_images=_val_images(base, pilot), charge="measured" if budget.kind == "seconds" else "estimated")
        result = search(space, oracle, settings, oracle.stored_elsewhere(space.points(), base.epochs))
        truth = oracle.known(space.points(), base.epochs, config.final_seeds)
    finally:
        oracle.close()
    return Advice(result, grid_seconds, config.serve, space, config.budget, sweep=sweep, db=str(options.db), truth=truth)


def _val_images(base: RunConfig, pilot: Observation) -> int:
    """Images in the validation split, from the pilot run's training images (the held-out share of the rest)."""
    trained = pilot.train_images
    return round(trained * base.val_fraction / (1 - base.val_fraction)) if trained else 0


def _has_cv2() -> bool:
    import importlib.util

    return importlib.util.find_spec("cv2") is not None


