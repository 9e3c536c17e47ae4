"""The command line: parses arguments and calls the library. `resizelab --help` lists the commands.

Run options are not declared here: every flag, its metavar, choices and help come from the option
declarations on `RunConfig` (config.py).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import pathlib
import re
import sys
import threading
import time
from typing import Any, Callable

from ..core.config import RunConfig, comma_items, option_default, options, parse_bool, parse_int, parse_sizes
from ..core.errors import ConfigError, ResizelabError
from ..core.log import configure_logging, logger, plural
from ..store.database import DEFAULT_DB, DEFAULT_LEASE_SECONDS
from . import serve as serve_command


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _add_run_options(parser: argparse.ArgumentParser, grid: bool, skip: tuple[str, ...] = (),
                     defaults: dict[str, Any] | None = None) -> None:
    group = parser.add_argument_group("run options" + (" (a comma-separated value makes a grid axis)" if grid else ""))
    for name, opt in options():
        if name in skip:
            continue
        default = (defaults or {}).get(name, option_default(name))
        if name == "size" or name == "test_size":
            shown = "native" if default is None else str(default)
        elif default is None and opt.kind.metavar.startswith("{auto,"):
            shown = "auto"  # None is how the config spells auto for these
        else:
            shown = _default_text(default)
        help_text = opt.help if "(default" in opt.help else f"{opt.help} (default {shown})"
        kwargs: dict[str, Any] = {"dest": f"opt_{name}", "default": None, "metavar": opt.kind.metavar, "help": help_text}
        if opt.kind.metavar == "{true,false}":
            # A bare boolean flag means true, as --compile reads; --compile false still turns it off.
            kwargs.update(nargs="?", const="true")
        group.add_argument(_flag(name), **kwargs)


def _run_options(args: argparse.Namespace, grid: bool) -> dict[str, Any]:
    """Flag values as config fields; with grid=True a comma-separated value becomes a list (an axis)."""
    out: dict[str, Any] = {}
    for name, opt in options():
        text = getattr(args, f"opt_{name}", None)
        if text is None:
            continue
        try:
            if grid and opt.grid and "," in text:
                out[name] = [opt.kind.parse(t) for t in comma_items(text)]
            else:
                out[name] = opt.kind.parse(text)
        except ConfigError as e:
            raise ConfigError(f"{_flag(name)}: {e}") from None
    return out


def _add_sweep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="run seeds 0..N-1 (--seed 3 or --seed 0,5 picks them)")
    parser.add_argument("--name", default=None, help="sweep name in the store (default: from the preset or file)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run and what is already done, then stop")
    parser.add_argument("--yes", action="store_true", help="run a sweep of more than 1,000 runs (refused without it)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the configs that failed before")
    parser.add_argument("--executor", default="auto", choices=("auto", "local", "packed", "ray"),
                        help="local (one run at a time in this process), packed (--pack runs at once on one device, one worker "
                        "process each), ray (a Ray cluster); auto: local until the GPU check says otherwise (sweeps.packed.CUDA_AUTO_PACK)")
    parser.add_argument("--pack", type=int, default=None, metavar="N", help="runs trained at once by --executor packed (default 4)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS", help="Ray cluster address (default: start or join a local one)")
    parser.add_argument("--lease-seconds", type=float, default=DEFAULT_LEASE_SECONDS, metavar="S",
                        help=f"how long a claimed run stays reserved without a heartbeat (default {DEFAULT_LEASE_SECONDS:g})")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite results store (default ./{DEFAULT_DB})")
    parser.add_argument("--json", action="store_true", help="print each result as one JSON object per line on stdout")
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="log each finished run to MLflow (pip install 'resizelab[mlflow]'); URI default: "
                        "$MLFLOW_TRACKING_URI, else sqlite:///<folder of --db>/mlflow.db")
    parser.add_argument("--mlflow-experiment", default=None, metavar="NAME", help="MLflow experiment (default resizelab)")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only on stderr (no progress)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too on stderr")


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report-dir", default=None, metavar="DIR", help="where to write the report (default reports/<sweep name>)")
    parser.add_argument("--no-report", action="store_true", help="print the table only")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="resizelab", description="How does resizing the input change what a ResNet achieves on CIFAR-10, and what does it cost?")
    parser.add_argument("--version", action="version", version=f"resizelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train and evaluate one configuration, store it, print the result")
    _add_common(p)
    p.add_argument("--force", action="store_true", help="train again even if the store holds this configuration as done "
                   "(the earlier result is kept as an earlier attempt)")
    _add_run_options(p, grid=False)

    p = sub.add_parser("study", help="run a named preset study, print its table and write its report")
    p.add_argument("--preset", required=True, metavar="NAME", help="preset name (see `resizelab presets`)")
    _add_common(p)
    _add_sweep_options(p)
    _add_report_options(p)
    _add_run_options(p, grid=True)

    p = sub.add_parser("sweep", help="run a grid of configurations from flags or a TOML file, print its table and write "
                       "its report; re-running resumes")
    p.add_argument("file", nargs="?", default=None, help="TOML sweep file (see README); flags override its values")
    _add_common(p)
    _add_sweep_options(p)
    _add_report_options(p)
    _add_run_options(p, grid=True)

    sub.add_parser("presets", help="list the preset studies with their run counts")

    p = sub.add_parser("export", help="log the stored finished runs to a tracking system (MLflow)")
    p.add_argument("target", choices=("mlflow",), help="where to export: mlflow (pip install 'resizelab[mlflow]')")
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite results store (default ./{DEFAULT_DB})")
    p.add_argument("--sweep", default=None, metavar="NAME", help="only this sweep or preset study (default: every finished run)")
    p.add_argument("--uri", default=None, metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                   "else sqlite:///<folder of --db>/mlflow.db)")
    p.add_argument("--experiment", default="resizelab", metavar="NAME", help="MLflow experiment (default resizelab)")

    p = sub.add_parser("env", help="versions, device, cache paths, and whether data and weights are present")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where to look for CIFAR (default $RESIZELAB_DATA_DIR or the cache)")

    p = sub.add_parser("report", help="write tables and figures (md, html, png, csv) from the store")
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite results store (default ./{DEFAULT_DB})")
    p.add_argument("--sweep", default=None, metavar="NAME", help="only this sweep or preset study (default: every done run)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default reports/<sweep or 'all'>)")
    p.add_argument("--split-on", default="", metavar="KEY[,KEY...]",
                   help="execution settings that make configurations of their own, each finished attempt counted "
                        "(e.g. channels_last,single_window_matmul,device; see EXECUTION_KEYS in results.py)")

    p = sub.add_parser("bench", help="images/s of the plain PIL+DataLoader pipeline vs resizelab vs the model alone")
    p.add_argument("--sizes", default="16,32,64,128,224", metavar="PX[,PX...]", help="input sizes (default 16,32,64,128,224)")
    p.add_argument("--steps", type=int, default=20, metavar="N", help="timed training steps per window at <= 32 px, fewer by area above (default 20)")
    p.add_argument("--windows", type=int, default=7, metavar="N", help="rounds of one timed window per pipeline; medians are reported (default 7)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="DataLoader workers of the plain pipeline (default 2)")
    p.add_argument("--eval-images", type=int, default=1000, metavar="N", help="test images timed for evaluation throughput (default 1000)")
    p.add_argument("--no-ablation", action="store_true", help="skip timing resizelab's pipeline with each of its settings changed")
    p.add_argument("--json-out", default="bench.json", metavar="PATH", help="where to write the JSON record (default bench.json)")
    # The recipe that column b runs, as `resizelab run` takes it; without a download by default.
    _add_run_options(p, grid=False, skip=("size", "test_size", "test_sizes", "test_interpolation", "limit_test", "epochs"),
                     defaults={"data": "synthetic", "weights": "none"})
    _add_table_parser(sub, "spectrum", "what each resize does to the signal: spectra, zone-plate aliasing, round trip",
                      SPECTRUM_OPTIONS)
    _add_table_parser(sub, "probe", "what each resize does inside a ResNet: CKA per stage, residual/skip ratios, conv1 bands",
                      PROBE_OPTIONS)
    serve_command.add_parser(sub)
    for command in sub.choices.values():
        _add_verbosity(command)
    return parser


# --- commands --------------------------------------------------------------------------------

def _print_json(obj: dict) -> None:
    print(json.dumps(obj, default=str), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from ..report.writer import format_run
    from ..store.database import Store, StoreEmpty, check_db_path, new_owner_id
    from ..sweeps.claim import run_claimed
    from ..training.inputs import ensure_inputs
    from ..training.planning import plan

    cfg = RunConfig.from_dict(_run_options(args, grid=False))
    check_db_path(args.db)
    # Inputs are checked (and fetched) first: the run's name is its data's digest, and a missing dataset or
    # weights file leaves no database behind.
    ensure_inputs([cfg])
    cfg = plan(cfg)
    h = cfg.config_hash()
    if os.path.exists(args.db) and not args.force:
        try:
            with Store(args.db, readonly=True) as store:
                row = store.get(h)
        except StoreEmpty:  # being created by another process, or an empty file: nothing stored yet
            row = None
        if row is not None and row["status"] == "done" and row["result_json"]:
            tracker = _mlflow_logger(args, sweep=None)
            if tracker is not None and tracker.catch_up(args.db, {h}):
                logger.info("MLflow: logged the stored run %s", h)
            data = json.loads(row["result_json"])
            if args.json:
                _print_json(data)
            else:
                print(format_run(data, row["label"]))
                print(f"already stored as {h} in {args.db} (finished {time.strftime('%Y-%m-%d %H:%M', time.localtime(row['finished_at']))}); "
                      "--force trains it again and keeps both results")
                if cfg.save_weights and not data.get("weights_file"):
                    print("its weights were not saved; --save-weights --force trains it again and saves them")
            return 0
    tracker = _mlflow_logger(args, sweep=None)
    with Store(args.db) as store:
        store.register([cfg])
        try:
            attempt = run_claimed(store, cfg, new_owner_id(), force=True, record_config_errors=False, progress=not args.quiet)
        except KeyboardInterrupt as e:
            print(f"{_interruption(e)}; nothing stored (the run was given back)", file=sys.stderr)
            return _interrupted_code(e)
        attempts = len(store.attempts(h))
    if attempt.status == "held":
        raise ConfigError(f"run {h} is being trained by another process ({attempt.reason}); wait for it or use another --db")
    if attempt.status in ("failed", "lost"):
        print(f"resizelab: run {h} {'failed' if attempt.status == 'failed' else 'stopped'}: {attempt.reason}", file=sys.stderr)
        return 1
    if tracker is not None:
        tracker.on_result(attempt.result)
    data = attempt.result.to_json_dict()
    if args.json:
        _print_json(data)
    else:
        print(format_run(data, attempt.result.config.label()))
        print(f"stored as {h} in {args.db}" + (f" (attempt {attempts}; earlier results kept)" if attempts > 1 else ""))
        if attempt.result.weights_file:
            print(f"weights saved to {os.path.join(os.path.dirname(os.path.abspath(args.db)), attempt.result.weights_file)} "
                  f"(resizelab probe --run {h} --db {args.db})")
    return 0


def _mlflow_logger(args: argparse.Namespace, sweep: str | None):
    """The MLflow logger `--mlflow` asks for, set up before anything trains; None without the flag."""
    if args.mlflow is None:
        if args.mlflow_experiment is not None:
            raise ConfigError("--mlflow-experiment names where --mlflow logs; add --mlflow (or drop --mlflow-experiment)")
        return None
    # A URI needs a scheme: this also catches `sweep --mlflow FILE.toml`, where the file was taken for the URI.
    if args.mlflow and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", args.mlflow):
        raise ConfigError(f"--mlflow: {args.mlflow!r} is not a tracking URI; give one such as sqlite:///path/mlflow.db or "
                          "http://host:5000, or --mlflow alone for the store beside --db (a sweep file goes before --mlflow)")
    from ..report.tracking import MlflowLogger, resolve_tracking_uri

    uri = resolve_tracking_uri(args.mlflow or None, args.db)
    experiment = args.mlflow_experiment or "resizelab"
    logger.info("MLflow: logging to %s, experiment %s", uri, experiment)
    return MlflowLogger(uri, experiment, sweep=sweep)




class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so a terminated run is given back and says how to resume."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _interruption(error: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"


def _interrupted_code(error: BaseException) -> int:
    return 143 if isinstance(error, Terminated) else 130


def _execute(plan, args: argparse.Namespace, tracker=None) -> tuple[int, Any]:
    from ..report.writer import results_table
    from ..sweeps.plan import describe
    from ..sweeps.runner import SweepOptions, run_sweep

    if args.dry_run:
        problems: list[str] = []
        for h, status, label in describe(plan, args.db, problems):
            print(f"{h}  {status:8s}  {label}")
        for values, reason in plan.invalid:
            print(f"{'-' * 16}  invalid   {reason}")
        for problem in problems:  # runs named by their data's digest cannot be named before the data is here
            logger.info("not named yet (no hash before its inputs are here): %s", problem)
        logger.info("%s in sweep %s", plural(len(plan.configs), "run"), plan.name)
        return 0, None
    options = SweepOptions(db=args.db, executor=args.executor, pack=args.pack, retry_failed=args.retry_failed,
                           lease_seconds=args.lease_seconds, progress=not args.quiet, ray_address=args.ray_address)
    callbacks = ([lambda r: _print_json(r.to_json_dict())] if args.json else []) + ([tracker.on_result] if tracker else [])
    try:
        outcome = run_sweep(plan, options, quiet=args.quiet,
                            on_result=(lambda r: [callback(r) for callback in callbacks]) if callbacks else None)
    except Terminated:  # between runs, outside any claim: nothing to give back
        print("terminated (SIGTERM) between runs; run the same command again to resume", file=sys.stderr)
        return 143, None
    if tracker is not None and not outcome.interrupted:
        caught_up = tracker.catch_up(args.db)
        if caught_up:
            logger.info("MLflow: logged %s finished before this session", plural(caught_up, "run"))
    if args.json:
        # Runs finished before this invocation are reported too, from the store.
        ran = {r.config_hash for r in outcome.ran}
        for row in outcome.rows:
            if row["status"] == "done" and row["config_hash"] not in ran and row["result_json"]:
                _print_json(json.loads(row["result_json"]))
    else:
        print(results_table(outcome.rows))
    done = sum(1 for r in outcome.rows if r["status"] == "done")
    if outcome.interrupted:
        how = _interruption(outcome.interrupted) if isinstance(outcome.interrupted, BaseException) else "interrupted"
        print(f"{how}: {done} of {plural(outcome.planned, 'run')} done, the current one given back; run the same command again to resume",
              file=sys.stderr)
        return (_interrupted_code(outcome.interrupted) if isinstance(outcome.interrupted, BaseException) else 130), outcome
    failed = len(outcome.failed) + outcome.invalid
    if failed:
        logger.warning("%s failed (reasons in the store: resizelab report)", plural(failed, "run"))
    if outcome.held_elsewhere:
        held = len(outcome.held_elsewhere)
        logger.warning("%s %s being trained by another process", plural(held, "run"), "is" if held == 1 else "are")
    return (1 if failed else 0), outcome


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Run-option flags as overrides; --seeds N is shorthand for the seeds 0..N-1."""
    overrides = _run_options(args, grid=True)
    if args.seeds is not None:
        if "seed" in overrides:
            raise ConfigError("give --seeds N (seeds 0..N-1) or --seed A[,B...], not both")
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1; got {args.seeds}")
        from ..sweeps.plan import MAX_RUNS

        if args.seeds > MAX_RUNS:  # refused before the list of seeds is built
            raise ConfigError(f"--seeds {args.seeds:,} is more runs than one sweep takes ({MAX_RUNS:,}); use fewer seeds")
        overrides["seed"] = list(range(args.seeds))
    return overrides


def _max_runs(args: argparse.Namespace) -> int | None:
    """A sweep of more than CONFIRM_RUNS runs is planned only with --yes (or listed with --dry-run)."""
    from ..sweeps.plan import CONFIRM_RUNS

    return None if args.yes or args.dry_run else CONFIRM_RUNS


def _write_sweep_report(args: argparse.Namespace, plan, outcome, tracker=None) -> None:
    if outcome is None or getattr(args, "no_report", False) or not any(r["status"] == "done" for r in outcome.rows):
        return
    from ..report.writer import ReportConfig, write_report

    out = write_report(ReportConfig(db=args.db, sweep=plan.name, out=_report_dir(args, plan)))
    if (out / "findings.txt").is_file() and not args.json:
        # On stderr, like the report's path: stdout stays the one results table that scripts read.
        print("\nFindings (definitions in report.md)\n" + (out / "findings.txt").read_text(), end="", file=sys.stderr)
    logger.info("report: %s", out / "report.html")
    if tracker is not None:
        try:
            if tracker.log_report(out):
                logger.info("MLflow: report logged as run 'report: %s'", plan.name)
        except Exception as e:  # noqa: BLE001 - the report is on disk; say so and keep the exit status of the sweep
            logger.warning("MLflow: report not logged (%s: %s); it is in %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "", out)


def _report_dir(args: argparse.Namespace, plan) -> str:
    return args.report_dir or os.path.join("reports", plan.name)


def _sweep_and_report(args: argparse.Namespace, plan) -> int:
    if not args.dry_run and not args.no_report:
        from ..core.paths import check_out_dir

        # Before anything trains: a report folder that cannot be written is a one-line error now, not after the sweep.
        check_out_dir(pathlib.Path(_report_dir(args, plan)), "--report-dir", create=False)
    tracker = None if args.dry_run else _mlflow_logger(args, sweep=plan.name)
    code, outcome = _execute(plan, args, tracker)
    _write_sweep_report(args, plan, outcome, tracker)
    return code


def cmd_study(args: argparse.Namespace) -> int:
    from ..sweeps.presets import get_preset

    preset = get_preset(args.preset)
    return _sweep_and_report(args, preset.plan(_overrides(args), name=args.name, max_runs=_max_runs(args)))


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..core.config import GridSpec
    from ..sweeps.plan import default_name, expand_spec, load_sweep_file

    spec, name = GridSpec(), None
    if args.file:
        spec, name = load_sweep_file(args.file)
    overrides = _overrides(args)
    spec = spec.override(overrides)
    # Without a file or --name, the sweep is named after what it runs: two different flag sweeps never share a report.
    name = args.name or name or default_name("sweep", overrides)
    plan = expand_spec(spec, name=name, max_runs=_max_runs(args))
    if not plan.configs and not plan.invalid:
        raise ConfigError("the sweep is empty; give a TOML file or run options such as --size 16,32,64")
    return _sweep_and_report(args, plan)


def cmd_presets(args: argparse.Namespace) -> int:
    from ..sweeps.presets import PRESETS

    for preset in PRESETS.values():
        n = len(preset.plan().configs)
        print(f"{preset.name:14s} {n:4d} {'run ' if n == 1 else 'runs'}  {preset.description}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import torch
    import torchvision

    from .. import __version__
    from ..training import provenance
    from ..core.paths import cache_root, default_data_dir
    from ..training.data import data_status
    from ..training.models import IMAGENET_WEIGHTS, imagenet_weights_status
    from ..core.optional import optional_status
    from ..training.runtime import resolve_device, resolve_precision

    device = resolve_device("auto")
    auto = resolve_precision("auto", device)
    info = provenance.collect(device)
    lines = [
        f"resizelab      {__version__} (git {info['git_revision']})",
        f"python         {info['python']}",
        f"torch          {torch.__version__} (cuda {torch.version.cuda or 'none'}, available: {torch.cuda.is_available()})",
        f"torchvision    {torchvision.__version__}",
        f"device         {info['device_name']}",
        f"precision auto {auto}",
        f"cache dir      {cache_root()}  ($RESIZELAB_CACHE_DIR)",
        f"data dir       {args.data_dir or default_data_dir()}  ($RESIZELAB_DATA_DIR, --data-dir)",
        f"weights dir    {torch.hub.get_dir()}/checkpoints  ($TORCH_HOME)",
    ]
    for name, status in data_status(args.data_dir).items():
        lines.append(f"data {name:9s} {status}")
    for arch in IMAGENET_WEIGHTS:
        lines.append(f"weights {arch:12s} {imagenet_weights_status(arch)}")
    for module, status, purpose in optional_status():
        lines.append(f"optional {module:10s} {status} ({purpose})")
    print("\n".join(lines))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.writer import ReportConfig, write_report

    from ..store.database import require_store

    require_store(args.db)
    out = write_report(ReportConfig(db=args.db, sweep=args.sweep,
                                    out=os.path.join("reports", args.sweep or "all") if args.out is None else args.out,
                                    split_on=tuple(_comma_flag("--split-on", args.split_on))))
    print(out / "report.md")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..report.tracking import export_store_to_mlflow, resolve_tracking_uri

    from ..store.database import require_store

    require_store(args.db)
    uri = resolve_tracking_uri(args.uri, args.db)
    count = export_store_to_mlflow(args.db, uri, args.experiment, sweep=args.sweep)
    print(f"logged {plural(count, 'run')} to {uri}, experiment {args.experiment}"
          + (" (every finished run was there already)" if count == 0 else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..analysis.bench import BenchConfig, format_bench, run_bench

    folder = os.path.dirname(os.path.abspath(args.json_out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        # Checked before the benchmark, not after its minutes of timing.
        raise ConfigError(f"--json-out {args.json_out}: folder {folder} does not exist or is not writable")
    recipe = RunConfig.from_dict({"data": "synthetic", "weights": "none", **_run_options(args, grid=False)})
    try:
        sizes = tuple(int(t) for t in _comma_flag("--sizes", args.sizes))
    except ValueError:
        raise ConfigError(f"--sizes: expected comma-separated whole numbers; got {args.sizes!r}") from None
    config = BenchConfig(run=recipe, sizes=sizes, steps=args.steps, windows=args.windows, workers=args.workers,
                         eval_images=args.eval_images, ablation=not args.no_ablation)
    result = run_bench(config, progress=logger.info)
    print(format_bench(result))
    with open(args.json_out, "w") as f:
        json.dump(result.to_json_dict(), f, indent=2)
    logger.info("wrote %s", args.json_out)
    return 0


# --- measurement commands without training (spectrum, probe): a flag table each, parsed into their config -------

def _comma_flag(flag: str, text: str) -> list[str]:
    try:
        return comma_items(text)
    except ConfigError as e:
        raise ConfigError(f"{flag}: {e}") from None


def _str_tuple(text: str) -> tuple[str, ...]:
    return tuple(comma_items(text))


def _bool_tuple(text: str) -> tuple[bool, ...]:
    return tuple(parse_bool(t) for t in comma_items(text))


# spectrum and probe measure a dataset's test split; their other flags are their own.
TEST_SPLIT_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--data": ("data", str, "cifar10, cifar100, synthetic or imagefolder:PATH (default cifar10); its test split is used"),
    "--data-dir": ("data_dir", str, "where CIFAR is found or downloaded"),
}

SPECTRUM_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    **TEST_SPLIT_OPTIONS,
    "--size": ("sizes", parse_sizes, "comma-separated sizes in px, shorter edge (default 16,64)"),
    "--interpolation": ("interpolations", _str_tuple, "comma-separated methods (default nearest,bilinear,bicubic)"),
    "--antialias": ("antialias", _bool_tuple, "true, false or true,false (default true,false); the effective value is shown"),
    "--backend": ("backends", _str_tuple, "comma-separated: pil, tensor, opencv (default pil,tensor)"),
    "--limit": ("limit", parse_int, "class-balanced test images to measure (default 500)"),
    "--out": ("out", str, "folder for spectrum.json, spectrum.csv, psd.csv and the figures (default reports/spectrum)"),
}


PROBE_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    **TEST_SPLIT_OPTIONS,
    "--arch": ("arch", str, "resnet18, resnet34 or resnet50 (default resnet18)"),
    "--weights": ("weights", str, "imagenet, none (random init by --seed) or a path to a state_dict file (default imagenet)"),
    "--stem": ("stem", str, "imagenet or cifar (default imagenet)"),
    "--run": ("run", str, "a stored run's config hash (or a unique prefix): probe its saved weights (--save-weights), "
                         "with its arch, stem and data"),
    "--db": ("db", str, f"the results store that holds --run (default ./{DEFAULT_DB})"),
    "--size": ("size", parse_int, "the resized input size S in px, compared with the native images "
                                   "(default 16; with --run, the run's train size if it resized)"),
    "--interpolation": ("interpolations", _str_tuple, "comma-separated methods (default nearest,bilinear,bicubic)"),
    "--antialias": ("antialias", parse_bool, "true or false (default true); the effective value is shown"),
    "--backend": ("backend", str, "pil, tensor or opencv (default pil)"),
    "--limit": ("limit", parse_int, "class-balanced test images (default 500)"),
    "--seed": ("seed", parse_int, "model init with --weights none, and the image subset (default 0)"),
    "--out": ("out", str, "folder for probe.json and probe.csv (default reports/probe)"),
}


TABLE_METAVARS = {"--data": "{cifar10,cifar100,synthetic[:N[:M]],imagefolder:PATH}", "--data-dir": "DIR", "--out": "DIR",
                  "--arch": "{resnet18,resnet34,resnet50}", "--weights": "{imagenet,none,PATH}", "--stem": "{imagenet,cifar}",
                  "--run": "HASH", "--db": "PATH", "--backend": "{pil,tensor,opencv}"}


def _add_table_parser(sub, name: str, help_text: str, options: dict) -> None:
    p = sub.add_parser(name, help=help_text)
    for flag, (field, parse, text) in options.items():
        metavar = {parse_int: "PX" if flag == "--size" else "N", parse_sizes: "PX[,PX...]", parse_bool: "{true,false}",
                   _bool_tuple: "{true,false}[,...]", _str_tuple: "NAME[,NAME...]"}.get(parse) or TABLE_METAVARS[flag]
        p.add_argument(flag, dest=f"opt_{field}", default=None, metavar=metavar, help=text)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout instead of the table")


def _table_options(args: argparse.Namespace, options: dict) -> dict[str, Any]:
    """The flags given, parsed into config fields; the config's defaults stand for the rest."""
    out: dict[str, Any] = {}
    for flag, (field, parse, _) in options.items():
        text = getattr(args, f"opt_{field}")
        if text is not None:
            try:
                out[field] = parse(text)
            except ConfigError as e:
                raise ConfigError(f"{flag}: {e}") from None
    return out


def cmd_spectrum(args: argparse.Namespace) -> int:
    from ..analysis.spectrum import SpectrumConfig, format_spectrum, run_spectrum

    cfg = SpectrumConfig(**_table_options(args, SPECTRUM_OPTIONS))
    return _print_measurement(args, run_spectrum(cfg, progress=logger.info), format_spectrum)


def cmd_probe(args: argparse.Namespace) -> int:
    from ..analysis.probe import ProbeConfig, format_probe, run_probe

    options = _table_options(args, PROBE_OPTIONS)
    clash = [f"--{name.replace('_', '-')}" for name in ("weights", "arch", "stem", "data", "data_dir") if name in options]
    if "run" in options and clash:
        raise ConfigError(f"--run brings the run's own weights, arch, stem and data; drop {', '.join(clash)}")
    if "db" in options and "run" not in options:
        raise ConfigError("--db names the store that holds --run; add --run HASH, or drop --db")
    return _print_measurement(args, run_probe(ProbeConfig(**options), progress=logger.info), format_probe)


def _print_measurement(args: argparse.Namespace, result, format_table) -> int:
    """A spectrum or probe result: its JSON or its table on stdout, the files it wrote on stderr."""
    if args.json:
        _print_json(result.to_json_dict())
    else:
        print(format_table(result))
    logger.info("wrote %s", ", ".join(result.files))
    return 0


COMMANDS = {"run": cmd_run, "study": cmd_study, "sweep": cmd_sweep, "presets": cmd_presets, "env": cmd_env,
            "report": cmd_report, "export": cmd_export, "bench": cmd_bench, "spectrum": cmd_spectrum, "probe": cmd_probe,
            "serve": serve_command.cmd_serve}


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _reject_unknown(parser: argparse.ArgumentParser, command: str, extras: list[str]) -> None:
    """Unknown arguments are answered by the subcommand (its usage, not the top level's), with a suggestion."""
    sub = _subparser(parser, command)
    known = [s for a in sub._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for word in extras:
        match = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
        if word.startswith("-") and match:
            hints.append(f"{word} (did you mean {match[0]}?)")
        else:
            hints.append(word)
    sub.error(f"unrecognized arguments: {', '.join(hints)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else list(argv)
    if words and not words[0].startswith("-") and words[0] not in COMMANDS:
        # argparse (before 3.14) lists the commands without a suggestion: a typo gets one.
        match = difflib.get_close_matches(words[0], list(COMMANDS), n=1)
        parser.error(f"unknown command {words[0]!r}" + (f" (did you mean {match[0]!r}?)" if match else "")
                     + f"; commands: {', '.join(COMMANDS)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        _reject_unknown(parser, args.command, extras)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    import signal

    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        return COMMANDS[args.command](args)
    except ResizelabError as e:
        # One line per problem (offline: one per missing input), each a complete message on its own.
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"resizelab: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(_interruption(e), file=sys.stderr)
        return _interrupted_code(e)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
