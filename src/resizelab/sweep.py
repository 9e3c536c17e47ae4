"""Sweeps: a grid of run configs, executed against the store so that re-running one resumes it.

Each config is named by its hash; a run already done is skipped, one held by a live process is left
to it, and one whose owner died is taken over. The local executor trains in this process; the Ray
executor trains on a cluster while this process (the only writer) claims, renews leases and stores.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoints import complete_run
from .config import CONFIG_FIELDS, GridSpec, RunConfig, preflight
from .errors import ConfigError, DataUnavailable, ResizelabError, WeightsError
from .optional import require
from .progress import SweepProgress, logger, plural
from .store import DEFAULT_DB, DEFAULT_LEASE_SECONDS, Store, new_owner_id

SWEEP_FILE_KEYS = ("name", "seeds", "base", "grid", "variants")
EXECUTORS = ("auto", "local", "packed", "ray")


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will run: configs in order, plus combinations that were refused and why."""

    name: str
    configs: tuple[RunConfig, ...]
    invalid: tuple[tuple[dict, str], ...] = ()


def expand(base: dict[str, Any], grid: dict[str, list] | None = None, seeds: list[int] | None = None,
           variants: list[dict[str, Any]] | None = None, name: str = "sweep") -> SweepPlan:
    """The product variants x grid x seeds over `base` (a variant's values beat the grid's); duplicates once."""
    grid = grid or {}
    for key in list(base) + list(grid) + [k for v in (variants or []) for k in v]:
        if key not in CONFIG_FIELDS:
            raise ConfigError(f"unknown run option {key!r}; valid options: {', '.join(CONFIG_FIELDS)}")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"grid entry {key!r} must be a non-empty list; got {values!r}")
    seeds = list(seeds) if seeds else [base.get("seed", 0)]
    configs, invalid, seen = [], [], set()
    keys = list(grid)
    for variant in variants or [{}]:
        for combo in itertools.product(*(grid[k] for k in keys)):
            for seed in seeds:
                values = {**base, **dict(zip(keys, combo)), **variant, "seed": seed}
                try:
                    cfg = RunConfig.from_dict(values)
                except ConfigError as e:
                    invalid.append((values, str(e)))
                    continue
                h = cfg.config_hash()
                if h not in seen:
                    seen.add(h)
                    configs.append(cfg)
    return SweepPlan(name, tuple(configs), tuple(invalid))


def expand_spec(spec: GridSpec, name: str) -> SweepPlan:
    return expand(spec.base, spec.grid, spec.seeds, spec.variants or None, name=name)


def seed_list(value: Any, where: str) -> list[int]:
    """Seeds from a count (N: seeds 0..N-1) or an explicit list of distinct seeds."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, list) and value)):
        raise ConfigError(f"{where} must be a count of at least 1 or a non-empty list of seeds; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where} must be at least 1; got {value}")
        return list(range(value))
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ConfigError(f"{where}: each seed must be a whole number from 0 to 2^31-1; got {seed!r}")
    return list(dict.fromkeys(value))


def load_sweep_file(path: str | Path) -> tuple[GridSpec, str]:
    """Read a TOML sweep file: name, seeds, [base], [grid], [[variants]]. Unknown keys are errors."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(doc) - set(SWEEP_FILE_KEYS))
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SWEEP_FILE_KEYS)}")
    seeds = seed_list(doc["seeds"], f"sweep file {path}: seeds") if "seeds" in doc else None
    base, grid = doc.get("base", {}), doc.get("grid", {})
    variants = doc.get("variants", [])
    if not isinstance(base, dict) or not isinstance(grid, dict) or not (isinstance(variants, list) and all(isinstance(v, dict) for v in variants)):
        raise ConfigError(f"sweep file {path}: [base] and [grid] must be tables and [[variants]] an array of tables")
    if not base and not grid and not variants:
        raise ConfigError(f"sweep file {path} defines no runs; give [base] options and/or a [grid], see the README")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"sweep file {path}: name must be a non-empty string; got {name!r}")
    return GridSpec(base, grid, variants, seeds), name


# --- execution -------------------------------------------------------------------------------

@dataclass
class SweepOptions:
    db: str = DEFAULT_DB
    executor: str = "auto"  # auto | local | packed | ray
    pack: int | None = None  # runs trained at once by the packed executor (default packing.DEFAULT_PACK)
    retry_failed: bool = False
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    progress: bool = True
    ray_address: str | None = None

    def __post_init__(self) -> None:
        import math

        from .packing import check_pack

        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {self.executor!r}")
        if self.pack is not None:
            check_pack(self.pack)
            if self.executor != "packed":
                raise ConfigError(f"pack applies to the packed executor, not {self.executor!r}; add --executor packed")
        # A lease shorter than a few heartbeats would lapse under a busy machine and let another sweep take
        # over a run that is still training (the heartbeat renews every third of it).
        if isinstance(self.lease_seconds, bool) or not isinstance(self.lease_seconds, (int, float)) \
                or not math.isfinite(self.lease_seconds) or not 3 <= self.lease_seconds <= 86_400:
            raise ConfigError(f"lease seconds must be between 3 and 86400; got {self.lease_seconds!r}")


@dataclass
class SweepOutcome:
    name: str
    planned: int
    already_done: int = 0
    ran: list = field(default_factory=list)  # RunResult
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (hash, label, reason)
    held_elsewhere: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    invalid: int = 0
    interrupted: bool = False
    rows: list[dict] = field(default_factory=list)  # the store rows of the plan, in plan order


class Heartbeat(threading.Thread):
    """Renews a claim's lease from a thread (with its own connection) while the run trains."""

    def __init__(self, db: str, config_hash: str, owner: str, lease_seconds: float):
        super().__init__(daemon=True)
        self.db, self.config_hash, self.owner, self.lease_seconds = db, config_hash, owner, lease_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        with Store(self.db) as store:
            while not self._stop_event.wait(self.lease_seconds / 3):
                store.heartbeat(self.config_hash, self.owner, self.lease_seconds)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        logger.info(message)


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if not isinstance(error, ResizelabError) else text


def ensure_inputs(configs) -> None:
    """Fetch (or find) every dataset and set of weights the configs need, before any training starts.

    Offline, this is where a study stops: one error with a line per missing input, each naming where
    it was looked for, where it is downloaded from and how to point resizelab at a copy.
    """
    from .data import load_dataset
    from .models import ensure_imagenet_weights

    problems = []
    for cfg in configs:
        preflight(cfg)
    if any(c.backend == "opencv" for c in configs):
        from .resize import _cv2

        _cv2()  # without OpenCV every opencv run would fail alike: stop here, once, naming the install command
    logger.info("checking data and weights")
    for data, data_dir in dict.fromkeys((c.resolved().data, c.data_dir) for c in configs):
        try:
            load_dataset(data, data_dir)
        except DataUnavailable as e:
            problems.append(str(e))
    for arch in dict.fromkeys(c.arch for c in configs if c.weights == "imagenet"):
        try:
            ensure_imagenet_weights(arch)
        except WeightsError as e:
            problems.append(str(e))
    if problems:
        raise DataUnavailable("\n".join(problems))


def run_sweep(plan: SweepPlan, options: SweepOptions, *, quiet: bool = False,
              on_result: Callable[[Any], None] | None = None) -> SweepOutcome:
    """Run every config of `plan` that the store does not already hold as done."""
    outcome = SweepOutcome(plan.name, len(plan.configs), invalid=len(plan.invalid))
    if options.executor == "ray":
        require("ray", "ray", "executor 'ray'")
    # Inputs are checked before the store is touched: offline, a new sweep leaves no database behind.
    ready = {"done"} if options.retry_failed else {"done", "failed"}
    unfinished = [cfg for cfg, (_, status, _) in zip(plan.configs, describe(plan, options.db)) if status not in ready]
    if unfinished:
        ensure_inputs(unfinished)
    with Store(options.db) as store:
        store.register(list(plan.configs), sweep=plan.name)
        for values, reason in plan.invalid:
            store.record_invalid(values, reason, sweep=plan.name)
            _log(f"invalid combination, recorded as failed: {reason}", quiet)
        owner = new_owner_id()
        todo = []
        for cfg in plan.configs:
            row = store.get(cfg.config_hash())
            if row["status"] == "done":
                outcome.already_done += 1
            elif row["status"] == "failed" and not options.retry_failed:
                outcome.skipped_failed.append(cfg.config_hash())
            else:
                todo.append(cfg)
        _log(f"sweep {plan.name}: {plural(len(plan.configs), 'run')}, {outcome.already_done} already done, {len(todo)} to run"
             + (f", {len(outcome.skipped_failed)} failed before (--retry-failed to run them again)" if outcome.skipped_failed else ""), quiet)
        if any(cfg not in unfinished for cfg in todo):  # another process gave runs back since the check above
            ensure_inputs(todo)
        try:
            from .packing import resolve_executor, run_packed

            executor, pack = resolve_executor(options.executor, options.pack, todo)
            if executor == "ray":
                _run_ray(todo, store, owner, options, outcome, quiet, on_result)
            elif executor == "packed":
                run_packed(todo, store, owner, options, outcome, quiet, on_result, pack)
            else:
                _run_local(todo, store, owner, options, outcome, quiet, on_result)
        finally:
            rows = {r["config_hash"]: r for r in store.runs(sweep=plan.name)}
            outcome.rows = [rows[c.config_hash()] for c in plan.configs if c.config_hash() in rows]
    return outcome


def _run_local(todo, store: Store, owner: str, options: SweepOptions, outcome: SweepOutcome, quiet: bool, on_result) -> None:
    from .resize import ResizeCache
    from .engine import train

    cache = ResizeCache()
    datasets: dict = {}
    progress = SweepProgress(outcome.name, len(todo), quiet)
    for i, cfg in enumerate(todo, 1):
        h = cfg.config_hash()
        if not store.claim(h, owner, options.lease_seconds, retry_failed=options.retry_failed):
            row = store.get(h)
            progress.left_to_another()
            if row["status"] == "done":
                outcome.already_done += 1
            else:
                outcome.held_elsewhere.append(h)
                _log(f"[{i}/{len(todo)}] {cfg.label()}: held by {row['owner']}, left to it", quiet)
            continue
        # From here the claim is ours: every way out gives it back, records it, or completes it.
        try:
            _log(f"[{i}/{len(todo)}] {cfg.label()} ...", quiet)
            beat = Heartbeat(options.db, h, owner, options.lease_seconds)
            beat.start()
            try:
                dataset = _dataset_for(cfg, datasets)
                result = train(cfg, dataset=dataset, cache=cache, progress=options.progress and not quiet)
            finally:
                beat.stop()
        except KeyboardInterrupt:
            store.release(h, owner)
            outcome.interrupted = True
            return
        except (DataUnavailable, WeightsError):
            # Missing data or weights fail every run alike: stop and say so once.
            store.release(h, owner)
            raise
        except Exception as e:  # a failing run is recorded and the sweep goes on
            store.fail(h, owner, _reason(e))
            outcome.failed.append((h, cfg.label(), _reason(e)))
            _log(f"    failed: {_reason(e)}", quiet)
            progress.finished(ok=False)
            continue
        complete_run(store, result, owner)
        outcome.ran.append(result)
        _log(f"    {result.test_accuracy:.2f}% test accuracy, {result.train_seconds:.1f} s, {result.images_per_second:.0f} img/s", quiet)
        progress.finished(ok=True)
        if on_result is not None:
            on_result(result)


def _dataset_for(cfg: RunConfig, datasets: dict):
    from .data import load_dataset

    key = (cfg.resolved().data, cfg.data_dir)
    if key not in datasets:
        datasets[key] = load_dataset(cfg.resolved().data, cfg.data_dir)
    return datasets[key]


def _train_remote(cfg_dict: dict):
    """Runs on a Ray worker: train one config and hand the result (or the failure) back."""
    from .engine import train

    cfg = RunConfig.from_dict(cfg_dict)
    try:
        return "done", train(cfg, progress=False)
    except (DataUnavailable, WeightsError) as e:
        return "unavailable", str(e)
    except Exception as e:
        return "failed", _reason(e)


def _run_ray(todo, store: Store, owner: str, options: SweepOptions, outcome: SweepOutcome, quiet: bool, on_result) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'resizelab[ray]' (or use --executor local)") from None
    if not ray.is_initialized():
        ray.init(address=options.ray_address, ignore_reinit_error=True, log_to_driver=not quiet)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    # Without GPUs a run takes a whole node's cores (Ray sets its torch threads to match); asking
    # for the cluster's total would never schedule on a cluster of several nodes.
    node_cpus = max(1, int(min((r.get("CPU", 1) for r in nodes), default=1)))
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else node_cpus)(_train_remote)
    limit = max(1, gpus or len(nodes))
    queue = list(todo)
    in_flight: dict = {}
    progress = SweepProgress(outcome.name, len(todo), quiet)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                cfg = queue.pop(0)
                h = cfg.config_hash()
                if store.claim(h, owner, options.lease_seconds, retry_failed=options.retry_failed):
                    in_flight[remote.remote(cfg.to_dict())] = cfg
                    _log(f"submitted {cfg.label()}", quiet)
                else:
                    outcome.held_elsewhere.append(h)
                    progress.left_to_another()
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=options.lease_seconds / 3)
            for cfg in in_flight.values():
                store.heartbeat(cfg.config_hash(), owner, options.lease_seconds)
            for ref in ready:
                cfg = in_flight.pop(ref)
                status, payload = ray.get(ref)
                if status == "done":
                    complete_run(store, payload, owner)
                    outcome.ran.append(payload)
                    _log(f"done {cfg.label()}: {payload.test_accuracy:.2f}%", quiet)
                    progress.finished(ok=True)
                    if on_result is not None:
                        on_result(payload)
                elif status == "unavailable":
                    store.release(cfg.config_hash(), owner)
                    raise DataUnavailable(payload)
                else:
                    store.fail(cfg.config_hash(), owner, payload)
                    outcome.failed.append((cfg.config_hash(), cfg.label(), payload))
                    _log(f"failed {cfg.label()}: {payload}", quiet)
                    progress.finished(ok=False)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        for ref, cfg in in_flight.items():
            ray.cancel(ref, force=True)
            store.release(cfg.config_hash(), owner)


def describe(plan: SweepPlan, db: str) -> list[tuple[str, str, str]]:
    """(hash, status in the store or 'new', label) for each planned run: what --dry-run prints."""
    import os

    statuses = {}
    if os.path.exists(db):
        with Store(db) as store:
            statuses = {r["config_hash"]: r["status"] for r in store.runs()}
    return [(c.config_hash(), statuses.get(c.config_hash(), "new"), c.label()) for c in plan.configs]

