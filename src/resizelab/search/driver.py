"""The search itself, on Optuna's ask-and-tell: which runs to ask for, in what order, and what to recommend.

The driver never trains. It hands batches of jobs (a pipeline, a seed, a number of epochs) to an oracle and is
told what each measured: a replay answers from a stored grid, the real loop from the store, training whatever
the store lacks. Every decision is a function of the seed and the answers, and a batch is told back in the
order it was asked, never the order it finished; so a study killed and run again, answering its first jobs
from the store, takes the same decisions and makes the same recommendation.

Strategy `advise`: TPE proposes pipelines; each first trains `low_epochs` (one seed) and reports its validation
accuracy to a successive-halving pruner; the survivors train the full epochs; the finalists (the best, and
those within seed noise of it) get seeds until each has `final_seeds`, so the answer comes with an interval.
A difference inside seed noise neither prunes a pipeline nor ranks two apart. `tpe` and `random` are the
baselines (full runs, one seed each, best validation accuracy wins), and `pareto` runs NSGA-II on accuracy
against training time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from ..core.errors import ConfigError
from ..core.optional import require
from ..core.stats import pareto_front, t_interval
from .space import Point, SearchSpace

STRATEGIES = ("advise", "tpe", "random", "pareto")
OBJECTIVES = ("accuracy", "pareto")
# The share of the budget exploration leaves for the finalists' seeds. Half: on the measured grids (validation
# splits of a few hundred images, seed noise of 1.5 points) confirming the leaders is worth more than trying more
# pipelines once (replay benchmark, 20 seeds: median regret 0.77 and 1.07 points at a half, 0.87 and 2.55 at 0.3).
RESERVE_FOR_FINALISTS = 0.5


@dataclass(frozen=True)
class Job:
    point: Point
    seed: int
    epochs: int


@dataclass
class Observation:
    """What one run measured: validation accuracy after each epoch, test accuracy, training time."""

    val_by_epoch: list[float]
    test_accuracy: float
    train_seconds: float
    serving: dict[str, float] = field(default_factory=dict)  # test accuracy under each --serve recipe
    serving_val: dict[str, float] = field(default_factory=dict)  # validation accuracy under each recipe
    images_per_second: float = float("nan")
    config_hash: str | None = None
    trained: bool = False  # trained by this call (False: read from the store or the grid)
    train_images: int = 0  # images in the training split (one epoch's)
    # Serving throughput: test images per second, resized and classified at the test size (the run's own test pass).
    serve_images_per_second: float = float("nan")


class Oracle(Protocol):
    def estimate(self, job: Job) -> float:
        """Seconds of training `job` is expected to cost, before it runs."""

    def answer(self, jobs: list[Job]) -> list[Observation | None]:
        """What each job measured (None: the run failed), in the order asked."""


@dataclass(frozen=True)
class SearchSettings:
    budget_seconds: float
    epochs: int
    seed: int = 0
    strategy: str = "advise"
    serve: str | None = None  # the recipe whose validation accuracy is the objective; None: the training recipe
    low_epochs: int = 1
    final_seeds: int = 3
    finalists: int = 3
    batch: int = 1  # jobs asked at once (runs in flight)
    reduction_factor: int = 3
    noise_z: float = 1.96  # two-sided 95%: the width within which two pipelines are not told apart
    val_images: int = 0  # size of the validation split, for the noise prior before seeds are repeated
    # What a job costs against the budget: its measured seconds (a budget of compute time), or the cost model's
    # estimate (a budget of runs or a share of the grid: then the machine's speed cancels out, and the same seed
    # takes the same decisions on any machine, however its timings vary).
    charge: str = "measured"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if not (1 <= self.low_epochs <= self.epochs):
            raise ConfigError(f"low_epochs must be between 1 and epochs ({self.epochs}); got {self.low_epochs}")


@dataclass
class Candidate:
    """A pipeline trained at full fidelity, over the seeds it got."""

    point: Point
    objective: list[float]  # per seed: validation accuracy (under the objective's recipe)
    test: list[float]  # per seed: test accuracy with the training recipe
    train_seconds: list[float]
    serving: dict[str, list[float]] = field(default_factory=dict)
    images_per_second: list[float] = field(default_factory=list)
    serve_images_per_second: list[float] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.objective)

    @property
    def mean(self) -> float:
        return sum(self.objective) / len(self.objective)

    def test_interval(self) -> tuple[float, float, float]:
        return t_interval(self.test)

    def to_dict(self) -> dict:
        mean, lo, hi = self.test_interval()
        return {"point": self.point.options(), "label": self.point.label(), "n": self.n, "val_accuracy": self.mean,
                "val_by_seed": self.objective, "test_accuracy": mean, "test_ci95": [lo, hi], "test_by_seed": self.test,
                "train_seconds": sum(self.train_seconds) / self.n,
                "images_per_second": _mean(self.images_per_second),
                "serve_images_per_second": _mean(self.serve_images_per_second),
                "serving": {k: _mean(v) for k, v in self.serving.items()}, "runs": self.hashes}


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else float("nan")


@dataclass
class SearchResult:
    settings: SearchSettings
    candidates: list[Candidate]  # ranked, best first
    recommended: Candidate | None
    runner_up: Candidate | None  # the next best within noise of the recommendation
    spent_seconds: float
    trained_seconds: float  # of which trained by this call (the rest was answered by the store or the grid)
    jobs: list[tuple[Job, Observation | None, float]]  # every job in order, with the budget spent after it
    best_so_far: list[tuple[float, str]]  # (spent seconds, the leading pipeline's label) after each job
    front: list[Candidate]  # accuracy against training time
    noise_sd: float
    trials: int


def objective_value(obs: Observation, serve: str | None) -> float:
    if serve is None:
        return obs.val_by_epoch[-1]
    if serve not in obs.serving_val:
        raise ConfigError(f"run {obs.config_hash} has no validation accuracy under {serve!r}; train with --serve {serve}")
    return obs.serving_val[serve]


class Search:
    """One study: its Optuna study, what it has been told, what it has spent."""

    def __init__(self, space: SearchSpace, oracle: Oracle, settings: SearchSettings,
                 warm: list[tuple[Point, Observation]] | None = None):
        require("optuna", "advise", "resizelab advise")
        self.space, self.oracle, self.settings = space, oracle, settings
        self.warm = list(warm or [])  # full-fidelity seed-0 runs stored before the study: free trials, told first
        self.points = space.points()
        self.spent = self.trained = 0.0
        self.jobs: list[tuple[Job, Observation | None, float]] = []
        self.best_so_far: list[tuple[float, str]] = []
        self.full: dict[Point, dict[int, Observation]] = {}
        self.low: dict[Point, float | None] = {}  # what each tried pipeline scored at low fidelity (None: failed)
        self.trials = 0

    # --- spending -------------------------------------------------------------------------------

    def fits(self, jobs: list[Job]) -> bool:
        return self.spent + sum(self.oracle.estimate(j) for j in jobs) <= self.settings.budget_seconds + 1e-9

    def run(self, jobs: list[Job]) -> list[Observation | None]:
        answers = self.oracle.answer(jobs)
        for job, obs in zip(jobs, answers):
            cost = obs.train_seconds if obs is not None and self.settings.charge == "measured" else self.oracle.estimate(job)
            self.spent += cost
            if obs is not None and obs.trained:
                self.trained += obs.train_seconds
            if obs is not None and job.epochs == self.settings.epochs:
                self.full.setdefault(job.point, {})[job.seed] = obs
            self.jobs.append((job, obs, self.spent))
            leader = self.leader()
            self.best_so_far.append((self.spent, leader.point.label() if leader else ""))
        return answers

    # --- statistics -----------------------------------------------------------------------------

    def noise_sd(self) -> float:
        """Seed-to-seed spread of one run's objective: pooled over pipelines with repeated seeds once there are
        any, before that the binomial spread of an accuracy on the validation split (a floor: seeds add to it)."""
        pooled, df = 0.0, 0
        for c in self.candidates():
            if c.n >= 2:
                m = c.mean
                pooled += sum((v - m) ** 2 for v in c.objective)
                df += c.n - 1
        prior = 2.0
        if self.settings.val_images:
            accs = [c.mean for c in self.candidates()] or [50.0]
            p = min(max(sum(accs) / len(accs) / 100, 0.05), 0.95)
            prior = 100 * math.sqrt(p * (1 - p) / self.settings.val_images)
        if df >= 2:
            return max(math.sqrt(pooled / df), 0.5 * prior)
        return prior

    def apart(self, a: Candidate, b: Candidate) -> bool:
        """Whether a's objective is above b's by more than seed noise (two-sided 95%)."""
        margin = self.settings.noise_z * self.noise_sd() * math.sqrt(1 / a.n + 1 / b.n)
        return a.mean - b.mean > margin

    def candidates(self) -> list[Candidate]:
        out = []
        for point, by_seed in self.full.items():
            seeds = sorted(by_seed)
            obs = [by_seed[s] for s in seeds]
            c = Candidate(point, [objective_value(o, self.settings.serve) for o in obs], [o.test_accuracy for o in obs],
                          [o.train_seconds for o in obs], images_per_second=[o.images_per_second for o in obs],
                          serve_images_per_second=[o.serve_images_per_second for o in obs], hashes=[o.config_hash for o in obs if o.config_hash])
            for o in obs:
                for recipe, acc in o.serving.items():
                    c.serving.setdefault(recipe, []).append(acc)
            out.append(c)
        return out

    def leader(self) -> Candidate | None:
        """The pipeline to recommend: among those within seed noise of the best mean, the one measured over the
        most seeds (then the better mean): a lucky single seed does not beat a mean over three it cannot be told from."""
        ranked = self.ranked()
        if not ranked:
            return None
        tied = [c for c in ranked if not self.apart(ranked[0], c)]
        return max(tied, key=lambda c: (c.n, c.mean))

    def ranked(self) -> list[Candidate]:
        # Ties (within noise or not) go to the better mean, then the cheaper pipeline, then the point's order.
        return sorted(self.candidates(), key=lambda c: (-c.mean, sum(c.train_seconds) / c.n, c.point))

    # --- the study ----------------------------------------------------------------------------------

    def study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        if s.strategy == "pareto":
            sampler = optuna.samplers.NSGAIISampler(seed=s.seed, population_size=max(4, min(10, len(self.points) // 3)))
            return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        if s.strategy == "random":
            sampler = optuna.samplers.RandomSampler(seed=s.seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=min(4, len(self.points)), multivariate=True)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=s.low_epochs, reduction_factor=s.reduction_factor)
        return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)

    def tell_full(self, study, trial, point: Point) -> None:
        import optuna

        obs = self.full.get(point, {}).get(0)
        if obs is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif self.settings.strategy == "pareto":
            study.tell(trial, [objective_value(obs, self.settings.serve), obs.train_seconds])
        else:
            for epoch, v in enumerate(obs.val_by_epoch[self.settings.low_epochs:], start=self.settings.low_epochs + 1):
                trial.report(v, epoch)
            study.tell(trial, objective_value(obs, self.settings.serve))

    def tell_known(self, study, trial, point: Point) -> None:
        """A pipeline asked again (by TPE, or by a parallel ask in the same batch): a free trial with its answer."""
        import optuna

        if point in self.full:
            self.tell_full(study, trial, point)
        elif self.low.get(point) is not None:
            trial.report(self.low[point], self.settings.low_epochs)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def warm_start(self, study) -> None:
        """Tell the study what the store already holds (optuna.trial.create_trial + study.add_trial), so TPE starts
        from it and never asks for it: a run stored by any earlier sweep is a free trial."""
        import optuna

        axes = self.space.axes()
        for point, obs in self.warm:
            if point in self.low or point not in self.points:
                continue
            self.low[point] = obs.val_by_epoch[-1]
            self.full.setdefault(point, {})[0] = obs
            params = point.options()
            if not all(params[k] in axes[k] for k in axes):  # antialias folded to a value the axis does not offer
                continue
            value = objective_value(obs, self.settings.serve)
            values = {"values": [value, obs.train_seconds]} if self.settings.strategy == "pareto" else {"value": value}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.space.distributions(), **values,
                intermediate_values={} if self.settings.strategy == "pareto" else dict(enumerate(obs.val_by_epoch, start=1))))

    def explore(self) -> None:
        import optuna

        s = self.settings
        study = self.study()
        self.warm_start(study)
        fidelity = s.strategy == "advise" and s.low_epochs < s.epochs
        limit = s.budget_seconds * (1 - RESERVE_FOR_FINALISTS) if s.strategy == "advise" else s.budget_seconds
        asks = 0
        while len(self.low) < len(self.points) and asks < 50 * len(self.points):
            batch: list[tuple[object, Point]] = []
            repeats: list[tuple[object, Point]] = []
            while len(batch) < s.batch and asks < 50 * len(self.points) and len(self.low) + len(batch) < len(self.points):
                trial = study.ask(self.space.distributions())
                asks += 1
                point = self.space.canonical(**trial.params)
                if point is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                elif point in self.low or any(point == p for _, p in batch):
                    repeats.append((trial, point))
                else:
                    batch.append((trial, point))
            if not batch:
                for trial, point in repeats:
                    self.tell_known(study, trial, point)
                break
            epochs = s.low_epochs if fidelity else s.epochs
            first = [Job(p, 0, epochs) for _, p in batch]
            if self.spent + sum(self.oracle.estimate(j) for j in first) > limit:
                for trial, _ in batch + repeats:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            self.trials += len(batch)
            answers = self.run(first)
            promote = []
            for (trial, point), obs in zip(batch, answers):
                self.low[point] = None if obs is None else objective_value(obs, None) if fidelity else obs.val_by_epoch[-1]
                if obs is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                elif not fidelity:
                    self.tell_full(study, trial, point)
                else:
                    value = obs.val_by_epoch[s.low_epochs - 1]
                    trial.report(value, s.low_epochs)
                    if trial.should_prune() and self.clearly_below(value):
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    else:
                        promote.append((trial, point))
            if promote:
                full = [Job(p, 0, s.epochs) for _, p in promote]
                if self.fits(full):
                    self.run(full)
                for trial, point in promote:
                    self.tell_full(study, trial, point)
            for trial, point in repeats:
                self.tell_known(study, trial, point)

    def clearly_below(self, value: float) -> bool:
        """Whether a low-fidelity score is below the best one seen by more than one run's seed noise (95%)."""
        seen = [v for v in self.low.values() if v is not None]
        return bool(seen) and max(seen) - value > self.settings.noise_z * math.sqrt(2) * self.noise_sd()

    def finalize(self) -> None:
        """Seeds for the finalists, best first, until each has final_seeds or the budget is spent."""
        s = self.settings
        while True:
            ranked = self.ranked()
            if not ranked:
                return
            best = ranked[0]
            finalists = [best] + [c for c in ranked[1:] if not self.apart(best, c)][: s.finalists - 1]
            need = [Job(c.point, seed, s.epochs) for seed in range(1, s.final_seeds) for c in finalists
                    if seed not in self.full[c.point]]
            batch = []
            for job in need:
                if len(batch) < s.batch and self.fits(batch + [job]):
                    batch.append(job)
            if not batch:
                return
            self.run(batch)

    def result(self) -> SearchResult:
        ranked = self.ranked()
        best = self.leader()
        runner = next((c for c in ranked if best is not None and c.point != best.point and not self.apart(best, c)
                       and not self.apart(c, best)), None)
        front_idx = pareto_front([(sum(c.train_seconds) / c.n, c.mean) for c in ranked])
        return SearchResult(self.settings, ranked, best, runner, self.spent, self.trained, self.jobs, self.best_so_far,
                            [ranked[i] for i in front_idx], self.noise_sd(), self.trials)


def search(space: SearchSpace, oracle: Oracle, settings: SearchSettings,
           warm: list[tuple[Point, Observation]] | None = None) -> SearchResult:
    """Run one study to its budget and say what it found; `warm`: runs stored before it, told as free trials."""
    study = Search(space, oracle, settings, warm)
    study.explore()
    if settings.strategy == "advise":
        study.finalize()
    return study.result()
