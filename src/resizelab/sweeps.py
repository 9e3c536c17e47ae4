"""Sweeps: a grid of run configs, executed against the store so that re-running one resumes it.

Each config is named by the hash of what it runs (planning.plan); a run already done is skipped, one
held by a live process is left to it, and one whose owner died is taken over. Every run is trained
under a store.Lease through `run_claimed`, whether `resizelab run` asks for it, the local executor
trains it in this process, or the Ray executor trains it on a cluster while this process (the only
writer) holds its lease and stores its result.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import CONFIG_FIELDS, GridSpec, RunConfig, options, preflight
from .errors import ConfigError, DataUnavailable, ResizelabError, WeightsError
from .optional import require
from .progress import SweepProgress, logger, plural
from .store import DEFAULT_DB, DEFAULT_LEASE_SECONDS, Lease, LeaseLost, ResultNotStored, Store, new_owner_id

SWEEP_FILE_KEYS = ("name", "seeds", "base", "grid", "variants")
EXECUTORS = ("auto", "local", "packed", "ray")
# A plan is built in memory and listed by --dry-run: beyond this many runs it is refused outright (a typo in
# --seeds, not a study), and beyond CONFIRM_RUNS it runs only with --yes.
MAX_RUNS = 100_000
CONFIRM_RUNS = 1_000


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will run: configs in order, plus combinations that were refused and why."""

    name: str
    configs: tuple[RunConfig, ...]
    invalid: tuple[tuple[dict, str], ...] = ()


def expand(base: dict[str, Any], grid: dict[str, list] | None = None, seeds: list[int] | None = None,
           variants: list[dict[str, Any]] | None = None, name: str = "sweep", *, max_runs: int | None = None) -> SweepPlan:
    """The product variants x grid x seeds over `base` (a variant's values beat the grid's); duplicates once."""
    check_sweep_name(name)
    grid = grid or {}
    for key in list(base) + list(grid) + [k for v in (variants or []) for k in v]:
        if key not in CONFIG_FIELDS:
            raise ConfigError(f"unknown run option {key!r}; valid options: {', '.join(CONFIG_FIELDS)}")
    for key, values in grid.items():
        _check_axis(key, values)
    # A value wrong on its own (a number for device, a string for test_sizes) is wrong in every run: one error
    # now, not a grid of refused combinations. Only pairings (lanczos with the tensor backend) are per run.
    kinds = dict(options())
    for where, values in [("base", base.items()), *((f"grid {k}", [(k, v) for v in vs]) for k, vs in grid.items()),
                          *(("variant", v.items()) for v in (variants or []))]:
        for key, value in values:
            if key == "seed":
                _check_seed(value, f"{where} seed")
                continue
            if key == "channels_last" and value == "auto":
                continue
            try:
                kinds[key].kind.check(key, value)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    seeds = list(seeds) if seeds else [base.get("seed", 0)]
    total = count_runs(grid, seeds, variants)
    if total > MAX_RUNS:
        raise ConfigError(f"this sweep would plan {total:,} runs; the most one sweep takes is {MAX_RUNS:,}: use fewer seeds or a "
                          "smaller grid")
    if max_runs is not None and total > max_runs:
        raise ConfigError(f"this sweep plans {total:,} runs (more than {max_runs:,}); pass --yes to run them all, --dry-run "
                          "to list them, or narrow the grid")
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
                # Duplicates by the resolved config: hashing needs planning, which reads the data (not there yet offline).
                key = json.dumps(cfg.resolved().to_dict(), sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    configs.append(cfg)
    return SweepPlan(name, tuple(configs), tuple(invalid))


def _check_axis(key: str, values: Any) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"grid entry {key!r} must be a non-empty list of values; got {values!r} (a single value goes in base)")


def count_runs(grid: dict[str, list] | None, seeds: list | None, variants: list | None) -> int:
    """How many runs a grid plans (before refusing invalid combinations and merging duplicates)."""
    return max(1, len(variants or [{}])) * math.prod(len(v) for v in (grid or {}).values()) * max(1, len(seeds or [0]))


def _check_seed(seed: Any, where: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConfigError(f"{where}: each seed must be a whole number from 0 to 2^31-1; got {seed!r}")


def expand_spec(spec: GridSpec, name: str, *, max_runs: int | None = None) -> SweepPlan:
    return expand(spec.base, spec.grid, spec.seeds, spec.variants or None, name=name, max_runs=max_runs)


def seed_list(value: Any, where: str) -> list[int]:
    """Seeds from a count (N: seeds 0..N-1) or an explicit list of distinct seeds."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, list) and value)):
        raise ConfigError(f"{where} must be a count of at least 1 or a non-empty list of seeds; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where} must be at least 1; got {value}")
        if value > MAX_RUNS:
            raise ConfigError(f"{where}: {value:,} seeds is more runs than one sweep takes ({MAX_RUNS:,})")
        return list(range(value))
    for seed in value:
        _check_seed(seed, where)
    return list(dict.fromkeys(value))


def load_sweep_file(path: str | Path) -> tuple[GridSpec, str]:
    """Read a TOML sweep file: name, seeds, [base], [grid], [[variants]]. Unknown keys are errors."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {path} is a folder; give the path of a TOML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"sweep file {path} is not UTF-8 text (byte {e.start}: {e.reason}); TOML files are UTF-8") from None
    except OSError as e:
        raise ConfigError(f"sweep file {path} cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(doc) - set(SWEEP_FILE_KEYS))
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(SWEEP_FILE_KEYS)}")
    seeds = seed_list(doc["seeds"], f"sweep file {path}: seeds") if "seeds" in doc else None
    base, grid = doc.get("base", {}), doc.get("grid", {})
    variants = doc.get("variants", [])
    if not isinstance(base, dict) or not isinstance(grid, dict) or not (isinstance(variants, list) and all(isinstance(v, dict) for v in variants)):
        raise ConfigError(f"sweep file {path}: [base] and [grid] must be tables and [[variants]] an array of tables")
    if not base and not grid and not variants:
        raise ConfigError(f"sweep file {path} defines no runs; give [base] options and/or a [grid], see the README")
    name = doc.get("name", path.stem)
    try:
        check_sweep_name(name)
    except ConfigError as e:
        raise ConfigError(f"sweep file {path}: {e}") from None
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
                raise ConfigError(f"pack applies to the packed executor, not {self.executor!r}; choose executor 'packed'")
        if self.ray_address is not None:
            if self.executor != "ray":
                raise ConfigError(f"a Ray address applies to the ray executor, not {self.executor!r}; choose executor 'ray'")
            if not isinstance(self.ray_address, str) or not self.ray_address.strip():
                raise ConfigError(f"the Ray address must be host:port, ray://host:port or auto; got {self.ray_address!r}")
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
    invalid_reasons: list[str] = field(default_factory=list)  # why each refused grid combination was refused
    interrupted: BaseException | bool = False  # the KeyboardInterrupt (or SIGTERM) that stopped it
    rows: list[dict] = field(default_factory=list)  # the store rows of the plan, in plan order
    db: str | None = None  # the store it ran against: resizelab.load_runs(outcome.db, sweep=outcome.name)
    report: Path | None = None  # the report folder, when one was written


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        logger.info(message)


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if not isinstance(error, ResizelabError) else text


def ensure_inputs(configs, checked: set | None = None) -> None:
    """Fetch (or find) every dataset and set of weights the configs need, before any is planned or trained.

    Offline, this is where a study stops: one error with a line per missing input, each naming where
    it was looked for, where it is downloaded from and how to point resizelab at a copy. `checked` holds
    the inputs found already (by an earlier call of the same sweep), which are not looked for again.
    """
    from .data import load_dataset
    from .models import ensure_imagenet_weights

    problems = []
    for cfg in configs:
        preflight(cfg)
    if any(c.backend == "opencv" for c in configs):
        from .resize import _cv2

        _cv2()  # without OpenCV every opencv run would fail alike: stop here, once, naming the install command
    checked = set() if checked is None else checked
    datasets = [k for k in dict.fromkeys(("data", c.resolved().data, c.data_dir) for c in configs if c.data != "synthetic")
                if k not in checked]
    weights = [k for k in dict.fromkeys(("weights", c.arch) for c in configs if c.weights == "imagenet") if k not in checked]
    if not datasets and not weights:
        return
    logger.info("checking data and weights")
    for key in datasets:
        try:
            load_dataset(key[1], key[2])
            checked.add(key)
        except DataUnavailable as e:
            problems.append(str(e))
    for key in weights:
        try:
            ensure_imagenet_weights(key[1])
            checked.add(key)
        except WeightsError as e:
            problems.append(str(e))
    if problems:
        raise DataUnavailable("\n".join(problems))


@dataclass
class Attempt:
    """How one claimed run ended: done (result), failed (reason), lost (taken over), or not claimed (held/done)."""

    status: str  # done | failed | lost | held | finished-before | failed-before
    result: Any = None
    reason: str = ""


def run_claimed(store: Store, cfg: RunConfig, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, *,
                force: bool = False, retry_failed: bool = False, record_config_errors: bool = True,
                train_fn: Callable | None = None, **train_kwargs) -> Attempt:
    """Claim `cfg`'s run, train it while the lease is renewed, and end the claim: the one protocol.

    A run that fails (diverged, out of memory, a bug) is recorded as failed with its reason; a bad option
    found only now (ConfigError) likewise, unless record_config_errors is False (`resizelab run`: the input
    was wrong, nothing is stored). Missing inputs and Ctrl-C/SIGTERM give the claim back and propagate.
    """
    from .engine import train

    h = cfg.config_hash()
    lease = Lease(store, h, owner, lease_seconds)
    try:
        if not lease.acquire(retry_failed=retry_failed, force=force):
            row = store.get(h)
            if row["status"] == "done":
                return Attempt("finished-before")
            if row["status"] == "failed":
                return Attempt("failed-before", reason=row["error"] or "")
            return Attempt("held", reason=row["owner"] or "")
        with lease:
            try:
                result = (train_fn or train)(cfg, check=lease.check, **train_kwargs)
            except LeaseLost as e:
                return Attempt("lost", reason=str(e))
            except (DataUnavailable, WeightsError):
                lease.release()
                raise
            except ConfigError as e:
                if not record_config_errors:
                    lease.release()
                    raise
                return _fail(lease, _reason(e))
            except Exception as e:  # a failing run is recorded, and whoever called goes on
                return _fail(lease, _reason(e))
            try:
                lease.complete(result)
            except LeaseLost as e:
                return Attempt("lost", result, str(e))
            except ResultNotStored:
                try:  # the disk may refuse this too; then the dead-owner rule frees the run later
                    lease.release()
                except ResizelabError:
                    pass
                raise
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM wherever it lands (just claimed, mid-step, mid-commit): the claim goes back unless
        # it was completed (release is guarded by the owner and the 'running' status).
        lease.release()
        raise
    return Attempt("done", result)


def _fail(lease: Lease, reason: str) -> Attempt:
    try:
        lease.fail(reason)
    except LeaseLost as e:  # taken over while failing: the new holder's outcome stands
        return Attempt("lost", reason=str(e))
    return Attempt("failed", reason=reason)


def plan_and_register(plan: SweepPlan, store: Store, checked: set | None = None) -> list[RunConfig]:
    """Plan every config (its hash needs the inputs, so they are fetched first), register them, record the
    invalid combinations; the planned configs, one per hash, in plan order."""
    ensure_inputs(plan.configs, checked)
    planned = list({c.config_hash(): c.planned() for c in plan.configs}.values())
    store.register(planned, sweep=plan.name)
    for values, reason in plan.invalid:
        store.record_invalid(values, reason, sweep=plan.name)
    return planned


def sweep(base: Mapping[str, Any] | RunConfig | None = None, grid: Mapping[str, Sequence] | None = None, *,
          seeds: int | Sequence[int] | None = None, variants: Sequence[Mapping[str, Any]] | None = None,
          preset: str | None = None, name: str | None = None, db: str | os.PathLike = DEFAULT_DB,
          executor: str = "auto", pack: int | None = None, retry_failed: bool = False,
          lease_seconds: float = DEFAULT_LEASE_SECONDS, ray_address: str | None = None,
          report: bool | str | os.PathLike = False, progress: bool = False,
          on_result: Callable[[Any], None] | None = None) -> SweepOutcome:
    """Run a sweep from Python: what `resizelab sweep` (or, with `preset`, `resizelab study`) runs, on the same
    engine and store, so calling it again resumes it and a run the store holds is not trained twice.

        outcome = resizelab.sweep({"data": "synthetic", "epochs": 1}, grid={"size": [16, 32, 64]}, seeds=3, db="runs.db")
        frame = resizelab.load_runs(outcome.db, sweep=outcome.name)

    `base` holds fixed run options (a dict, or a RunConfig) and `grid` the axes as lists (every combination
    runs), both by RunConfig field name; `seeds` is a count (seeds 0..N-1) or a list; `variants` are option sets
    laid over every grid point. With `preset`, the preset's plan is the starting point and `base`, `grid` and
    `seeds` override it as the command's flags do. Without `name`, the sweep is named after what it runs
    (`sweep-<digest>`, or the preset's name). `report` writes the report into reports/<name> (True) or the
    folder given. `progress` logs through the `resizelab` logger, to stderr unless logging is configured.
    Runs that fail are recorded and listed in `outcome.failed`, refused combinations in `outcome.invalid_reasons`;
    a Ctrl-C gives the current run back to the store and is raised again.
    """
    from .presets import get_preset
    from .progress import console_logging

    if not (base or grid or variants or preset):
        raise ConfigError("the sweep is empty; give base run options and a grid (e.g. grid={'size': [16, 32, 64]}), or a preset")
    base = _option_dict(base, "base")
    grid = _option_dict(grid, "grid")
    for key, values in grid.items():
        values = list(values) if isinstance(values, range) else values
        _check_axis(key, values)  # here too: a preset would take a value that is not a list as a fixed one
        grid[key] = list(values)
    if variants is not None and (isinstance(variants, (str, Mapping)) or not isinstance(variants, Sequence)):
        raise ConfigError(f"variants must be a list of dicts of run options; got {variants!r}")
    variants = [_option_dict(v, "each variant") for v in variants or []]
    if seeds is not None and "seed" in base:
        raise ConfigError(f"give seed in base ({base['seed']!r}) or seeds ({seeds!r}), not both")
    if seeds is None or isinstance(seeds, int):
        seed_values = None if seeds is None else seed_list(seeds, "seeds")
    elif isinstance(seeds, (list, tuple, range)):
        seed_values = seed_list(list(seeds), "seeds")
    else:
        raise ConfigError(f"seeds must be a count or a list of seeds; got {seeds!r}")
    if db is None or not isinstance(db, (str, os.PathLike)):
        raise ConfigError(f"db must be the path of the results store; got {db!r}")
    out = _report_folder(report)
    if preset is not None:
        if variants:
            raise ConfigError(f"variants cannot be laid over preset {preset!r}; give base and grid overrides, or no preset")
        overrides = {**base, **grid, **({"seed": seed_values} if seed_values else {})}
        plan = get_preset(preset).plan(overrides, name=name)
    else:
        name = name if name is not None else default_name("sweep", {"base": base, "grid": grid, "seeds": seed_values,
                                                                     "variants": variants})
        plan = expand(base, grid, seed_values, variants or None, name=name)
    options = SweepOptions(db=os.fspath(db), executor=executor, pack=pack, retry_failed=retry_failed,
                           lease_seconds=lease_seconds, progress=progress, ray_address=ray_address)
    if out is not None:
        from .report import check_out_dir

        out = os.path.join("reports", plan.name) if out is True else out
        check_out_dir(Path(out), "report", create=False)
    with console_logging(progress):
        outcome = run_sweep(plan, options, quiet=not progress, on_result=on_result)
    if isinstance(outcome.interrupted, BaseException):
        raise outcome.interrupted
    if out is not None and any(r["status"] == "done" for r in outcome.rows):
        from .report import ReportConfig, write_report

        outcome.report = write_report(ReportConfig(db=options.db, sweep=plan.name, out=out))
    return outcome


def _option_dict(values: Any, where: str) -> dict[str, Any]:
    """Run options as a dict: from a mapping, or from a RunConfig's options (its derived fields are planned anew)."""
    if values is None:
        return {}
    if isinstance(values, RunConfig):
        return {name: getattr(values, name) for name in CONFIG_FIELDS}
    if not isinstance(values, Mapping):
        what = "a dict of run options and their lists of values" if where == "grid" else "a dict of run options (or a RunConfig)"
        raise ConfigError(f"{where} must be {what}; got {values!r}")
    return dict(values)


def _report_folder(report: Any) -> bool | str | None:
    """None (no report), True (reports/<sweep name>) or the folder asked for."""
    if report is None or report is False:
        return None
    if report is True:
        return True
    if isinstance(report, (str, os.PathLike)) and os.fspath(report):
        return os.fspath(report)
    raise ConfigError(f"report must be True (reports/<sweep name>), False or a folder path; got {report!r}")


def default_name(prefix: str, values: Any) -> str:
    """`prefix-<digest>`: a sweep named after what it runs, so two different unnamed sweeps never share a report."""
    tag = json.dumps(values, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"


def check_sweep_name(name: Any) -> str:
    """A sweep's name is also its report folder (reports/<name>): one printable path component."""
    if not isinstance(name, str) or not name.strip() or name != name.strip() or name in (".", "..") \
            or "/" in name or "\\" in name or not name.isprintable():
        raise ConfigError(f"a sweep name must be non-empty text without '/', '\\', surrounding spaces or control characters "
                          f"(it names the folder reports/<name>); got {name!r}")
    return name


def run_sweep(plan: SweepPlan, options: SweepOptions, *, quiet: bool = False,
              on_result: Callable[[Any], None] | None = None) -> SweepOutcome:
    """Run every config of `plan` that the store does not already hold as done."""
    outcome = SweepOutcome(plan.name, len(plan.configs), invalid=len(plan.invalid), db=str(options.db))
    if options.executor == "ray":
        require("ray", "ray", "executor 'ray'")
        if options.ray_address:
            check_ray_address(options.ray_address)
    # Inputs are checked before the store is touched: offline, a new sweep leaves no database behind.
    ready = {"done"} if options.retry_failed else {"done", "failed"}
    unfinished = [cfg for cfg, (_, status, _) in zip(plan.configs, describe(plan, options.db)) if status not in ready]
    checked: set = set()  # inputs found, so that each is looked for once
    if unfinished:
        ensure_inputs(unfinished, checked)
    with Store(options.db) as store:
        planned = plan_and_register(plan, store, checked)
        outcome.planned = len(planned)
        for values, reason in plan.invalid:
            outcome.invalid_reasons.append(reason)
            _log(f"invalid combination, recorded as failed: {reason}", quiet)
        owner = new_owner_id()
        todo = []
        for cfg in planned:
            row = store.get(cfg.config_hash())
            if row["status"] == "done":
                outcome.already_done += 1
            elif row["status"] == "failed" and not options.retry_failed:
                outcome.skipped_failed.append(cfg.config_hash())
            else:
                todo.append(cfg)
        _log(f"sweep {plan.name}: {plural(len(planned), 'run')}, {outcome.already_done} already done, {len(todo)} to run"
             + (f", {len(outcome.skipped_failed)} failed before (--retry-failed to run them again)" if outcome.skipped_failed else ""), quiet)
        ensure_inputs(todo, checked)  # another process may have given runs back since the check above
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
            outcome.rows = [rows[c.config_hash()] for c in planned if c.config_hash() in rows]
    return outcome


def _record(attempt: Attempt, cfg: RunConfig, outcome: SweepOutcome, quiet: bool, on_result, prefix: str,
            progress: SweepProgress | None = None) -> None:
    """What the sweep learns from one attempt, and what it says about it."""
    h = cfg.config_hash()
    if attempt.status == "done":
        result = attempt.result
        outcome.ran.append(result)
        _log(f"{prefix}{result.test_accuracy:.2f}% test accuracy, {result.train_seconds:.1f} s, {result.images_per_second:.0f} img/s", quiet)
        if on_result is not None:
            on_result(result)
    elif attempt.status == "failed":
        outcome.failed.append((h, cfg.label(), attempt.reason))
        _log(f"{prefix}failed: {attempt.reason}", quiet)
    elif attempt.status == "finished-before":
        outcome.already_done += 1
    elif attempt.status == "failed-before":
        outcome.skipped_failed.append(h)
    else:  # held by a live process, or taken over while training: the other process's result will stand
        outcome.held_elsewhere.append(h)
        _log(f"{prefix}{'held by ' + attempt.reason + ', left to it' if attempt.status == 'held' else attempt.reason}", quiet)
    if progress is not None:  # after the run's own line: the sweep's count includes it
        if attempt.status in ("done", "failed"):
            progress.finished(ok=attempt.status == "done")
        else:
            progress.left_to_another()


def _run_local(todo, store: Store, owner: str, options: SweepOptions, outcome: SweepOutcome, quiet: bool, on_result) -> None:
    from .resize import ResizeCache

    cache = ResizeCache()
    datasets: dict = {}
    progress = SweepProgress(outcome.name, len(todo), quiet)
    for i, cfg in enumerate(todo, 1):
        _log(f"[{i}/{len(todo)}] {cfg.label()} ...", quiet)
        try:
            attempt = run_claimed(store, cfg, owner, options.lease_seconds, retry_failed=options.retry_failed,
                                  train_fn=_train_with_dataset(datasets), cache=cache, progress=options.progress and not quiet)
        except KeyboardInterrupt as e:
            outcome.interrupted = e
            return
        _record(attempt, cfg, outcome, quiet, on_result, "    ", progress)


def _dataset_for(cfg: RunConfig, datasets: dict):
    """The dataset of `cfg`, loaded once per sweep (or packed worker) and kept while its runs follow."""
    from .data import load_dataset

    key = (cfg.data, cfg.data_dir, cfg.data_digest)
    if key not in datasets:
        datasets.clear()  # one dataset at a time: a sweep over several would otherwise hold them all
        datasets[key] = load_dataset(cfg.data, cfg.data_dir)
    return datasets[key]


def _train_with_dataset(datasets: dict) -> Callable:
    """train(), given the dataset this sweep already loaded for the config's data (loaded once per sweep)."""
    from .engine import train

    def train_fn(cfg: RunConfig, **kwargs):
        return train(cfg, dataset=_dataset_for(cfg, datasets), **kwargs)
    return train_fn


def _train_remote(cfg_dict: dict):
    """Runs on a Ray worker: train one planned config and hand the result (or the failure) back."""
    from .engine import train

    cfg = RunConfig.from_dict(cfg_dict)
    try:
        return "done", train(cfg, progress=False)
    except (DataUnavailable, WeightsError) as e:
        return "unavailable", str(e)
    except Exception as e:
        return "failed", _reason(e)


# A Ray worker that dies (killed, out of memory, node lost) is a system failure: Ray runs the task again.
RAY_TASK_RETRIES = 2


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray address nothing answers at, at once: ray.init retries an unreachable one without end."""
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return  # Ray resolves these itself (a running local cluster, or a new one)
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({reason}); start one with `ray start --head`, "
                          "or leave the address out to start a local one") from None


def _run_ray(todo, store: Store, owner: str, options: SweepOptions, outcome: SweepOutcome, quiet: bool, on_result) -> None:
    """Train on a Ray cluster. This process claims each run through a store.Lease (renewed by its thread while the
    task runs), so a lease lost mid-task cancels the task; it alone writes results, through the same lease."""
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
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else node_cpus, max_retries=RAY_TASK_RETRIES,
                        retry_exceptions=False)(_train_remote)
    limit = max(1, gpus or len(nodes))
    queue = list(todo)
    in_flight: dict = {}  # ObjectRef -> (cfg, Lease)
    claiming = None  # a lease between its claim and its task's submission, given back if interrupted there
    progress = SweepProgress(outcome.name, len(todo), quiet)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                cfg = queue.pop(0)
                claiming = Lease(store, cfg.config_hash(), owner, options.lease_seconds)
                if not claiming.acquire(retry_failed=options.retry_failed):
                    claiming = None
                    row = store.get(cfg.config_hash())
                    status = {"done": "finished-before", "failed": "failed-before"}.get(row["status"], "held")
                    _record(Attempt(status, reason=row["owner"] or ""), cfg, outcome, quiet, on_result, "", progress)
                    continue
                in_flight[remote.remote(cfg.to_dict())] = (cfg, claiming)
                claiming = None
                _log(f"submitted {cfg.label()}", quiet)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref, (cfg, lease) in list(in_flight.items()):
                if ref not in ready and lease.lost.is_set():
                    ray.cancel(ref, force=True)
                    in_flight.pop(ref)
                    lease.stop_renewing()
                    _record(Attempt("lost", reason=_lost_reason(lease)), cfg, outcome, quiet, on_result, "")
            for ref in ready:
                cfg, lease = in_flight.pop(ref)
                try:
                    status, payload = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task failed past its retries
                    status, payload = "failed", f"Ray task failed: {_reason(e)}"
                if status == "unavailable":
                    lease.release()
                    raise DataUnavailable(payload)
                if status == "done":
                    try:
                        lease.complete(payload)
                        attempt = Attempt("done", payload)
                    except LeaseLost as e:
                        attempt = Attempt("lost", reason=str(e))
                else:
                    try:
                        lease.fail(payload)
                        attempt = Attempt("failed", reason=payload)
                    except LeaseLost as e:
                        attempt = Attempt("lost", reason=str(e))
                _record(attempt, cfg, outcome, quiet, on_result, f"{cfg.label()}: ", progress)
    except KeyboardInterrupt as e:
        outcome.interrupted = e
    finally:
        if claiming is not None:
            claiming.release()
        for ref, (cfg, lease) in in_flight.items():
            ray.cancel(ref, force=True)
            lease.release()


def _lost_reason(lease: Lease) -> str:
    try:
        lease.check()
    except LeaseLost as e:
        return str(e)
    return "lease lost"


def describe(plan: SweepPlan, db: str, problems: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(hash, status in the store or 'new', label) for each planned run: what --dry-run prints. A run whose
    inputs are not here yet cannot be named (its hash is its data's digest): '-' * 16 and 'new', with the
    reason added to `problems`."""

    from .store import StoreEmpty

    statuses = {}
    if os.path.exists(db):
        try:
            with Store(db, readonly=True) as store:
                statuses = {r["config_hash"]: r["status"] for r in store.runs()}
        except StoreEmpty:  # another process is creating it this moment
            pass
    out = []
    for c in plan.configs:
        try:
            planned = c.planned()
        except (DataUnavailable, WeightsError, ConfigError) as e:
            if problems is not None and _reason(e) not in problems:
                problems.append(_reason(e))
            out.append(("-" * 16, "new", c.label()))
            continue
        h = planned.config_hash()
        out.append((h, statuses.get(h, "new"), planned.label()))
    return out

