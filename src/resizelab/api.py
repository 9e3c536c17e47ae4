"""The Python API: `sweep()` (what `resizelab sweep` and `study` run), and the results store as pandas
DataFrames: one row per run, per run x test size, per run x epoch.

The frames read the store through `store.read` (one read-only snapshot, never blocking a sweep that writes).
pandas is an optional extra (`pip install 'resizelab[pandas]'`) imported only when a frame is built, and
reading results never imports torch.
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .core.config import CONFIG_FIELDS, GridSpec, RunConfig, declared_default
from .core.errors import ConfigError
from .core.log import console_logging
from .core.optional import require
from .core.paths import check_out_dir
from .training.threads import describe_changes
from .store.read import StoredRuns, read_runs, serving_rows
from .sweeps.claim import SweepOutcome
from .sweeps.plan import SweepPlan, check_axis, default_name, expand_spec, load_sweep_file, seed_list
from .sweeps.presets import get_preset
from .sweeps.runner import SweepOptions, run_sweep

if TYPE_CHECKING:
    import pandas as pd

# Run metrics kept in their own store columns, then those read from the stored result JSON.
RUN_METRIC_COLUMNS = ("test_accuracy", "train_seconds", "images_per_second", "macs_per_image", "params", "peak_memory_bytes")
RESULT_COLUMNS = ("effective_precision", "weights_tag", "peak_memory_kind", "prepare_seconds", "time_to_first_step_seconds",
                  "eval_seconds")
# Config fields that say which evaluations a run has: in load_evals each row is one evaluation and
# carries its own test_size_px and test_interpolation instead.
EVAL_CONFIG_FIELDS = ("test_size", "test_size_px", "test_sizes", "test_interpolation")


# --- DataFrames ------------------------------------------------------------------------------

def _pandas():
    return require("pandas", "pandas", "resizelab's DataFrame API (load_runs, load_evals, load_epochs)")


def _column_kinds() -> dict[str, str]:
    """Every column's kind, so a column's dtype never depends on which rows were selected: a filter
    that leaves out every native run must not turn size_px into float, nor an empty frame into objects.

    Config fields take theirs from RunConfig's annotations: whole numbers become nullable Int64 (<NA>
    for None, never float), booleans nullable boolean (channels_last None means auto), text "text".
    """
    hints = typing.get_type_hints(RunConfig)
    kinds = {name: "text" for name in ("config_hash", "sweep", "status", "label", "effective_precision", "weights_tag",
                                       "peak_memory_kind", "error")}
    for f in fields(RunConfig):
        args = set(typing.get_args(hints[f.name])) - {type(None)} or {hints[f.name]}
        kinds[f.name] = {frozenset({bool}): "boolean", frozenset({int}): "Int64", frozenset({float}): "float64",
                         frozenset({str}): "text"}.get(frozenset(args), "object")
    # size and test_size become text ("native" or "16"); their numbers are size_px and test_size_px.
    kinds.update(size="text", test_size="text")
    for name in ("size_px", "test_size_px", "macs_per_image", "params", "peak_memory_bytes", "input_height_px", "input_width_px",
                 "attempts", "epoch", "images", "threads_ran"):
        kinds[name] = "Int64"
    for name in ("test_accuracy", "train_seconds", "images_per_second", "prepare_seconds", "time_to_first_step_seconds",
                 "eval_seconds", "accuracy", "train_loss", "train_accuracy", "epoch_seconds"):
        kinds[name] = "float64"
    kinds.update(test_interpolation="text", threads_adapted="text", headline="boolean", finished_at="datetime64[ns, UTC]")
    return kinds


def _size_text(value: Any) -> Any:
    return "native" if value is None else str(value)


def _run_record(row: dict, sweep: str | None, sweeps: dict[str, list[str]], config_names: list[str]) -> dict:
    cfg = json.loads(row["config_json"])
    result = json.loads(row["result_json"]) if row["result_json"] else {}
    record: dict[str, Any] = {
        "config_hash": row["config_hash"],
        # A run can belong to several sweeps; one row per run, so without a sweep filter the names are joined.
        "sweep": sweep if sweep is not None else (", ".join(sweeps.get(row["config_hash"], [])) or None),
        "status": row["status"],
        "label": row["label"],
    }
    for name in config_names:
        value = cfg.get(name)
        if name in ("size", "test_size"):
            record[name] = _size_text(value)
            record[f"{name}_px"] = value
        elif name == "test_sizes":
            record[name] = tuple(value) if isinstance(value, list) else value  # hashable, so groupby works
        else:
            record[name] = value
    for name in RUN_METRIC_COLUMNS:
        record[name] = row[name]
    for name in RESULT_COLUMNS:
        record[name] = result.get(name)
    # What ran beside what was asked (threads: None asks for the cores the run may use; threads_ran says how many).
    execution = result.get("execution") or {}
    record["threads_ran"] = execution.get("threads")
    record["threads_adapted"] = describe_changes(execution.get("thread_changes"))
    shape = result.get("input_shape") or [None, None]
    record["input_height_px"], record["input_width_px"] = shape[0], shape[1]
    record["error"] = row["error"]
    record["attempts"] = row["attempts"]
    record["finished_at"] = row["finished_at"]
    return record


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    pd = _pandas()
    # Whatever dtype this pandas gives text (str from pandas 3, object before): the same for empty columns.
    text = pd.Series(["text"]).dtype
    for column, kind in _column_kinds().items():
        if column not in frame.columns or kind == "object":
            continue
        if kind == "datetime64[ns, UTC]":
            frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True).astype(kind)
            continue
        try:
            frame[column] = frame[column].astype(text if kind == "text" else kind)
        except (TypeError, ValueError):
            # Only a refused grid combination ('invalid combination' rows, status failed) stores
            # values that are not of the field's type; its column stays as stored.
            pass
    return frame


def _runs_frame(stored: StoredRuns, sweep: str | None) -> pd.DataFrame:
    pd = _pandas()
    config_names = [f.name for f in fields(RunConfig)]
    records = [_run_record(row, sweep, stored.sweeps, config_names) for row in stored.runs]
    if records:
        frame = pd.DataFrame.from_records(records)
    else:  # still the full set of columns and dtypes, so code written against a full store runs on an empty one
        empty = {"config_json": "{}", "result_json": None, **{k: None for k in ("config_hash", "status", "label", "error",
                                                                                  "attempts", "finished_at", *RUN_METRIC_COLUMNS)}}
        frame = pd.DataFrame(columns=list(_run_record(empty, sweep, {}, config_names)))
    return _typed(frame)


def load_runs(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run: identity, every config field as a typed column, metrics, cost.

    `sweep` keeps the runs of one sweep (in sweep order); `status` keeps runs in that state
    ('done' by default; None for every run, failed ones with their `error`).

    Columns: config_hash, sweep (with no sweep filter: the names of the sweeps holding the run, joined
    by ', '), status, label; each RunConfig field (integers as nullable Int64, booleans as nullable
    boolean, test_sizes as a tuple); test_accuracy (percent), train_seconds, images_per_second,
    macs_per_image, params, peak_memory_bytes, effective_precision, weights_tag, peak_memory_kind,
    prepare_seconds, time_to_first_step_seconds, eval_seconds, input_height_px, input_width_px
    (what the model was fed), threads_ran (the torch threads most of its steps trained with), threads_adapted
    (what the thread policy changed and why, "2 → 1 at step 5 (machine busy)"; empty when nothing), error, attempts, finished_at (UTC).

    Sizes come twice. `size_px` is the number (Int64, <NA> for native): sort, plot and compute with it.
    `size` is text, "native" or the number ("16"): group by it. pandas' groupby drops NA keys by default,
    so grouping on size_px would silently leave the native runs out of every table; a text column keeps
    them as a group of their own. The same holds for test_size / test_size_px. A native run's actual
    pixels are in input_height_px / input_width_px.
    """
    _check_read_args(db, sweep, status)
    return _runs_frame(read_runs(db, sweep, status), sweep)


def _check_read_args(db: Any, sweep: Any, status: Any) -> None:
    """The arguments every load_* function takes, refused in one line before the store is opened."""
    if db is None or not isinstance(db, (str, os.PathLike)):
        raise ConfigError(f"db must be the path of the results store; got {db!r}")
    if sweep is not None and not isinstance(sweep, str):
        raise ConfigError(f"sweep must be a sweep's name or None (every sweep); got {sweep!r}")
    if status is not None and not isinstance(status, str):
        raise ConfigError(f"status must be a run status such as 'done', or None (every run); got {status!r}")


def load_evals(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run x evaluation (test size): the run's identity and config, then test_size_px,
    test_interpolation, accuracy (percent), headline (this evaluation is the run's test_accuracy) and
    per_class_accuracy (dict of class -> percent).

    The config fields that only list evaluations (test_size, test_sizes, test_interpolation) are left
    out: each row is one evaluation and says its own size. Train-at-A, test-at-B tables come from
    `load_evals(db).pivot_table(index="size", columns="test_size_px", values="accuracy")`.
    """
    pd = _pandas()
    _check_read_args(db, sweep, status)
    stored = read_runs(db, sweep, status)
    runs = _runs_frame(stored, sweep)
    keep = ["config_hash", "sweep", "status", "label"] + [
        c for c in runs.columns if c in {f.name for f in fields(RunConfig)} | {"size_px"} and c not in EVAL_CONFIG_FIELDS]
    headline = {}
    for row in stored.runs:
        result = json.loads(row["result_json"]) if row["result_json"] else {}
        first = (result.get("evals") or [None])[0]
        if first:  # train() evaluates the headline size first
            headline[row["config_hash"]] = (first["size_px"], first["interpolation"])
    records = [{"config_hash": h, "test_size_px": ev["test_size_px"], "test_interpolation": ev["interpolation"],
                "accuracy": ev["accuracy"], "headline": headline.get(h) == (ev["test_size_px"], ev["interpolation"]),
                "per_class_accuracy": json.loads(ev["per_class_json"]) if ev["per_class_json"] else None}
               for h in (r["config_hash"] for r in stored.runs) for ev in stored.evals.get(h, [])]
    columns = ["config_hash", "test_size_px", "test_interpolation", "accuracy", "headline", "per_class_accuracy"]
    evals = _typed(pd.DataFrame.from_records(records, columns=columns))
    return runs[keep].merge(evals, on="config_hash", how="inner", validate="one_to_many")


def load_serving(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run x serving recipe x size, for runs trained with --serve: the run's identity and config, then
    train_recipe (the recipe that is exactly the run's own test resize; <NA> when none is), serve_recipe,
    serve_size_px, accuracy (percent), baseline (the row of the train recipe), change_points (accuracy minus the
    train recipe's at that size, in points), library (what ran, with its version), images, per_class_accuracy.

    The train x serve matrix of a sweep: `load_serving(db, sweep).pivot_table(index="train_recipe",
    columns="serve_recipe", values="change_points")`.
    """
    pd = _pandas()
    stored = read_runs(db, sweep, status)
    runs = _runs_frame(stored, sweep)
    keep = ["config_hash", "sweep", "status", "label"] + [
        c for c in runs.columns if c in {f.name for f in fields(RunConfig)} | {"size_px", "test_size_px"} and c != "serve"]
    columns = ["config_hash", "train_recipe", "serve_recipe", "serve_size_px", "accuracy", "baseline", "change_points",
               "library", "images", "per_class_accuracy"]
    frame = pd.DataFrame.from_records(serving_rows(stored), columns=columns)
    text = pd.Series(["text"]).dtype
    frame = frame.astype({"train_recipe": text, "serve_recipe": text, "library": text, "serve_size_px": "Int64",
                          "accuracy": "float64", "baseline": "boolean", "change_points": "float64", "images": "Int64"})
    return runs[keep].merge(frame, on="config_hash", how="inner", validate="one_to_many")


def load_epochs(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run x epoch: the run's identity and config, then epoch (from 1), train_loss,
    train_accuracy (percent, on the batches as trained), epoch_seconds and images."""
    pd = _pandas()
    _check_read_args(db, sweep, status)
    stored = read_runs(db, sweep, status)
    runs = _runs_frame(stored, sweep)
    keep = ["config_hash", "sweep", "status", "label"] + [
        c for c in runs.columns if c in {f.name for f in fields(RunConfig)} | {"size_px", "test_size_px"}]
    records = [{"config_hash": h, "epoch": e["epoch"], "train_loss": e["train_loss"], "train_accuracy": e["train_accuracy"],
                "epoch_seconds": e["seconds"], "images": e["images"]}
               for h in (r["config_hash"] for r in stored.runs) for e in stored.epochs.get(h, [])]
    columns = ["config_hash", "epoch", "train_loss", "train_accuracy", "epoch_seconds", "images"]
    epochs = _typed(pd.DataFrame.from_records(records, columns=columns))
    return runs[keep].merge(epochs, on="config_hash", how="inner", validate="one_to_many")


# --- sweeps ----------------------------------------------------------------------------------

def _sweep_default(name: str) -> Any:
    return declared_default(SweepOptions, name)


def sweep(base: Mapping[str, Any] | RunConfig | None = None, grid: Mapping[str, Sequence] | None = None, *,
          seeds: int | Sequence[int] | None = None, variants: Sequence[Mapping[str, Any]] | None = None,
          preset: str | None = None, name: str | None = None, db: str | os.PathLike = _sweep_default("db"),
          executor: str = _sweep_default("executor"), pack: int | None = _sweep_default("pack"),
          retry_failed: bool = _sweep_default("retry_failed"), lease_seconds: float = _sweep_default("lease_seconds"),
          ray_address: str | None = _sweep_default("ray_address"),
          report: bool | str | os.PathLike = False, progress: bool = True,
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
    folder given. `progress` (on by default, as `train` logs) logs through the `resizelab` logger, to stderr unless logging is configured.
    Runs that fail are recorded and listed in `outcome.failed`, refused combinations in `outcome.invalid_reasons`;
    a Ctrl-C gives the current run back to the store and is raised again.
    """
    if not (base or grid or variants or preset):
        raise ConfigError("the sweep is empty; give base run options and a grid (e.g. grid={'size': [16, 32, 64]}), or a preset")
    base = _option_dict(base, "base")
    grid = _option_dict(grid, "grid")
    for key, values in grid.items():
        values = list(values) if isinstance(values, range) else values
        check_axis(key, values)  # here too: a preset would take a value that is not a list as a fixed one
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
    if on_result is not None and not callable(on_result):
        # Checked here: otherwise the first run trains and is stored before calling it fails.
        raise ConfigError(f"on_result must be a function called with each RunResult, or None; got {on_result!r}")
    _report_folder(report)  # a value that is no folder is refused before anything is planned
    if preset is not None:
        if variants:
            raise ConfigError(f"variants cannot be laid over preset {preset!r}; give base and grid overrides, or no preset")
        plan = plan_sweep({**base, **grid, **({"seed": seed_values} if seed_values else {})}, preset=preset, name=name)
    else:
        plan = plan_sweep(spec=GridSpec(base, grid, variants, seed_values), name=name)
    options = SweepOptions(db=os.fspath(db), executor=executor, pack=pack, retry_failed=retry_failed,
                           lease_seconds=lease_seconds, progress=progress, ray_address=ray_address)
    out = report_folder(report, plan, "report")
    with console_logging(progress):
        outcome = run_sweep(plan, options, quiet=not progress, on_result=on_result)
    if isinstance(outcome.interrupted, BaseException):
        raise outcome.interrupted
    outcome.report = write_sweep_report(outcome, out)
    return outcome


def plan_sweep(overrides: Mapping[str, Any] | None = None, *, preset: str | None = None, file: str | os.PathLike | None = None,
               spec: GridSpec | None = None, name: str | None = None, max_runs: int | None = None) -> SweepPlan:
    """The plan of a sweep, as `resizelab study`, `resizelab sweep` and `sweep()` ask for one: a preset's runs, a
    sweep file's or `spec`'s, with `overrides` laid over them (GridSpec.override: a list makes an axis, a scalar
    fixes the option, `seed` sets the seeds). Without `name`, the sweep is named by the preset, by the file, or
    after what it runs (`sweep-<digest>`), so that two different unnamed sweeps never share a report.
    `max_runs` refuses a larger sweep (the command line's confirmation)."""
    overrides = dict(overrides or {})
    if preset is not None:
        if file is not None or spec is not None:
            raise ConfigError(f"preset {preset!r} is the sweep's starting point; give it, a sweep file or a grid, not several")
        return get_preset(preset).plan(overrides, name=name, max_runs=max_runs)
    named_by = overrides if spec is None else {"base": spec.base, "grid": spec.grid, "seeds": spec.seeds,
                                                 "variants": spec.variants}
    if file is not None:
        if spec is not None:
            raise ConfigError("give a sweep file or a grid, not both")
        spec, file_name = load_sweep_file(file)
        name = file_name if name is None else name
    spec = (spec or GridSpec()).override(overrides)
    return expand_spec(spec, name=default_name("sweep", named_by) if name is None else name, max_runs=max_runs)


def report_folder(report: Any, plan: SweepPlan, what: str = "report") -> str | None:
    """Where a sweep's report goes (True: reports/<sweep name>; False or None: no report), checked before
    anything trains: a folder that cannot be written is a one-line error now, not after the sweep."""
    out = _report_folder(report)
    if out is None:
        return None
    out = os.path.join("reports", plan.name) if out is True else out
    check_out_dir(Path(out), what, create=False)
    return out


def write_sweep_report(outcome: SweepOutcome, out: str | os.PathLike | None) -> Path | None:
    """The report of a finished sweep into `out` (report_folder); None without a folder or a finished run."""
    if out is None or not any(r["status"] == "done" for r in outcome.rows):
        return None
    from .report.writer import ReportConfig, write_report

    return write_report(ReportConfig(db=outcome.db, sweep=outcome.name, out=os.fspath(out)))


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


def advise(base: Mapping[str, Any] | RunConfig | None = None, *, budget: str = "20%", serve: str | None = None,
           objective: str = "accuracy", seed: int = 0, sizes: Sequence[int] | None = None,
           interpolations: Sequence[str] | None = None, antialias: Sequence[bool] | None = None,
           backends: Sequence[str] | None = None, space_file: str | os.PathLike | None = None,
           replay: str | os.PathLike | None = None, final_seeds: int = 3, low_epochs: int = 1, strategy: str = "advise",
           db: str | os.PathLike = _sweep_default("db"), executor: str = _sweep_default("executor"),
           pack: int | None = _sweep_default("pack"), report: str | os.PathLike | None = None, progress: bool = False):
    """Search the resize pipelines (size × method × antialias × backend) for the best one under a budget, on
    Optuna, and return an `Advice` (`.text()`, `.to_dict()`): what `resizelab advise` prints.

        advice = resizelab.advise({"data": "imagefolder:imgs", "weights": "none", "epochs": 3, "limit_train": 1250},
                                  budget="20%", sizes=[16, 24, 32], db="runs.db")

    `base` holds the run options every trial shares (a dict, or a RunConfig; val_fraction 0.2 unless given). Each
    trial is a stored run (sweep `advise-...` in `db`): calling it again with the same seed answers from the store
    and makes the same recommendation. `replay` answers from a grid file instead of training. `report`: a folder
    for the study's report led by its Advice section (report.html, report.md, runs.csv), the Advice page alone
    (advice.html) and advice.json; a replay writes the last two.
    """
    from .search.advise import AdviseConfig, run_advise
    from .search.space import make_space, space_from_file

    config = AdviseConfig(budget=str(budget), serve=serve, objective=objective, seed=seed, final_seeds=final_seeds,
                          low_epochs=low_epochs, strategy=strategy, replay=None if replay is None else os.fspath(replay))
    values = _option_dict(base, "base")
    axes = {"sizes": sizes, "interpolations": interpolations, "antialias": antialias, "backends": backends}
    if space_file is not None:
        space, others = space_from_file(os.fspath(space_file), **axes)
        values = {**others, **values}
    elif replay is not None and not any(v is not None for v in axes.values()):
        space = None  # the grid's own
    else:
        space = make_space(**axes)
    run_base = RunConfig(**{k: v for k, v in values.items() if k not in ("size", "interpolation", "antialias", "backend")})
    options = SweepOptions(db=os.fspath(db), executor=executor, pack=pack, progress=progress)
    if report is not None:
        check_out_dir(Path(report), "report", create=False)
    with console_logging(progress):
        answer = run_advise(run_base, space, config, options=options, quiet=not progress)
    if report is not None:
        from .report.advice import write_advice_report

        answer.report = write_advice_report(answer, report)
    return answer
