"""`resizelab study`, `sweep` and `presets`: a grid of runs planned and run as `resizelab.sweep()` runs it
(api.plan_sweep, sweeps.runner.run_sweep, api.report_folder and api.write_sweep_report), with what only a
command line does around it: --dry-run, the table on stdout (and the train x serve table of runs stored with
--serve), JSON lines, MLflow, SIGTERM."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..api import plan_sweep, report_folder, write_sweep_report
from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.log import logger, plural
from ..sweeps.plan import CONFIRM_RUNS, MAX_RUNS, SweepPlan
from ..sweeps.runner import SweepOptions
from .flags import (Terminated, add_json, add_mlflow, add_options, add_run_options, given_options, interrupted_code,
                    interruption, mlflow_logger, print_json)


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="run a named preset study, print its table and write its report",
                       description="Run a preset study. The defaults shown under 'run options' are a single run's: a "
                       "preset sets its own values (sizes, methods, seeds, ...; `resizelab presets` and --dry-run list "
                       "them), and those win over the defaults shown; a flag given wins over both.")
    p.add_argument("--preset", required=True, metavar="NAME", help="preset name (see `resizelab presets`); required, no default")
    _add_sweep_flags(p)

    p = sub.add_parser("sweep", help="run a grid of configurations from flags or a TOML file, print its table and write "
                       "its report; re-running resumes")
    p.add_argument("file", nargs="?", default=None, help="TOML sweep file (see README); flags override its values")
    _add_sweep_flags(p)

    sub.add_parser("presets", help="list the preset studies with their run counts")


def _add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    add_json(parser)
    add_mlflow(parser)
    add_options(parser, SweepOptions)
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="run seeds 0..N-1 (--seed 3 or --seed 0,5 picks them) "
                        "(default: the preset's or file's seeds, else seed 0 only)")
    parser.add_argument("--name", default=None, help="sweep name in the store (default: from the preset or file)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run and what is already done, then stop")
    parser.add_argument("--yes", action="store_true", help=f"run a sweep of more than {CONFIRM_RUNS:,} runs (refused without it)")
    parser.add_argument("--report-dir", default=None, metavar="DIR", help="where to write the report (default reports/<sweep name>)")
    parser.add_argument("--no-report", action="store_true", help="print the table only")
    add_run_options(parser, grid=True)


def cmd_study(args: argparse.Namespace) -> int:
    return _sweep_and_report(args, plan_sweep(_overrides(args), preset=args.preset, name=args.name, max_runs=_max_runs(args)))


def cmd_sweep(args: argparse.Namespace) -> int:
    # An empty --name is no name: the file's, or one made from what runs.
    plan = plan_sweep(_overrides(args), file=args.file, name=args.name or None, max_runs=_max_runs(args))
    if not plan.configs and not plan.invalid:
        raise ConfigError("the sweep is empty; give a TOML file or run options such as --size 16,32,64")
    return _sweep_and_report(args, plan)


def cmd_presets(args: argparse.Namespace) -> int:
    from ..sweeps.presets import PRESETS

    for preset in PRESETS.values():
        n = len(preset.plan().configs)
        print(f"{preset.name:14s} {n:4d} {'run ' if n == 1 else 'runs'}  {preset.description}")
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Run-option flags as overrides; --seeds N is shorthand for the seeds 0..N-1."""
    overrides = given_options(args, RunConfig, grid=True)
    if args.seeds is not None:
        if "seed" in overrides:
            raise ConfigError("give --seeds N (seeds 0..N-1) or --seed A[,B...], not both")
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1; got {args.seeds}")
        if args.seeds > MAX_RUNS:  # refused before the list of seeds is built
            raise ConfigError(f"--seeds {args.seeds:,} is more runs than one sweep takes ({MAX_RUNS:,}); use fewer seeds")
        overrides["seed"] = list(range(args.seeds))
    return overrides


def _max_runs(args: argparse.Namespace) -> int | None:
    """A sweep of more than CONFIRM_RUNS runs is planned only with --yes (or listed with --dry-run)."""
    return None if args.yes or args.dry_run else CONFIRM_RUNS


def _sweep_and_report(args: argparse.Namespace, plan: SweepPlan) -> int:
    # Checked in a dry run too: the command it lists must be one that would run.
    options = SweepOptions(**given_options(args, SweepOptions), progress=not args.quiet)
    out = None if args.dry_run or args.no_report else report_folder(args.report_dir or True, plan, "--report-dir")
    tracker = None if args.dry_run else mlflow_logger(args, sweep=plan.name)
    code, outcome = _execute(plan, options, args, tracker)
    report = None if outcome is None else write_sweep_report(outcome, out)
    if report is None:
        return code
    if (report / "findings.txt").is_file() and not args.json:
        # On stderr, like the report's path: stdout stays the results (and train x serve) table that scripts read.
        print("\nFindings (definitions in report.md)\n" + (report / "findings.txt").read_text(), end="", file=sys.stderr)
    logger.info("report: %s", report / "report.html")
    if tracker is not None:
        try:
            if tracker.log_report(report):
                logger.info("MLflow: report logged as run 'report: %s'", plan.name)
        except Exception as e:  # noqa: BLE001 - the report is on disk; say so and keep the exit status of the sweep
            logger.warning("MLflow: report not logged (%s: %s); it is in %s", type(e).__name__,
                           str(e).splitlines()[0] if str(e) else "", report)
    return code


def missing_for(plan: SweepPlan) -> list[str]:
    """What a real run of the plan needs that this install lacks (a dry run says it; the run would stop on it)."""
    import importlib.util

    from ..core.choices import unavailable_recipes

    if importlib.util.find_spec("cv2") is not None:
        return []
    backend = sum(1 for cfg in plan.configs if cfg.backend == "opencv")
    recipes = sorted({r for cfg in plan.configs for r in unavailable_recipes(cfg.serve)})
    if not backend and not recipes:
        return []
    uses = ([f"{plural(backend, 'run')} with --backend opencv"] if backend else []) + \
        ([f"serving recipes {', '.join(recipes)}"] if recipes else [])
    return [f"a real run needs OpenCV ({'; '.join(uses)}), which is not installed here: pip install 'resizelab[opencv]'"]


def native_px(data: str) -> int | None:
    """The images' own size where the data name says it (CIFAR and the synthetic task: 32 px, or @PX); else None."""
    if data in ("cifar10", "cifar100") or data.startswith("synthetic"):
        return int(data.rsplit("@", 1)[1]) if "@" in data else 32
    return None


def same_computations(plan: SweepPlan) -> list[str]:
    """Runs that resize nothing and differ only in the resize method: one computation, trained once per method."""
    import dataclasses

    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in plan.configs:
        if cfg.size != native_px(cfg.data) or cfg.test_sizes:
            continue
        rest = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("interpolation", "antialias", "test_interpolation", "seed")}
        groups.setdefault(tuple(sorted((k, repr(v)) for k, v in rest.items())), []).append(cfg)
    lines = []
    for same in groups.values():
        methods = sorted({c.interpolation for c in same})
        if len(methods) > 1:
            seeds = len({c.seed for c in same})
            lines.append(f"{plural(len(same), 'run')} at {same[0].size} px on {same[0].size} px images ({', '.join(methods)}; "
                         f"{plural(seeds, 'seed')}) resize nothing: per seed, the same computation, trained once per method "
                         "so that each method's line has its native point")
    return lines


def print_dry_run(plan: SweepPlan, db: str, what: str = "sweep") -> int:
    """--dry-run: each planned run's hash, its status in `db` (or new) and its label; what a real run needs
    that is not here. Trains nothing, fetches nothing, creates no store."""
    from ..sweeps.plan import describe

    problems: list[str] = []
    for h, status, label in describe(plan, db, problems):
        print(f"{h}  {status:8s}  {label}")
    for values, reason in plan.invalid:
        print(f"{'-' * 16}  invalid   {reason}")
    for problem in problems:  # runs named by their data's digest cannot be named before the data is here
        logger.info("not named yet (no hash before its inputs are here): %s", problem)
    if what == "sweep":
        logger.info("%s in sweep %s", plural(len(plan.configs), "run"), plan.name)
    for line in missing_for(plan):
        logger.warning("%s", line)
    for line in same_computations(plan):
        logger.info("%s", line)
    return 0


def _execute(plan: SweepPlan, options: SweepOptions, args: argparse.Namespace, tracker=None) -> tuple[int, Any]:
    from ..report.writer import results_table, serving_table
    from ..sweeps.runner import run_sweep

    db = options.db
    if args.dry_run:
        return print_dry_run(plan, db), None
    callbacks = ([lambda r: print_json(r.to_json_dict())] if args.json else []) + ([tracker.on_result] if tracker else [])
    try:
        outcome = run_sweep(plan, options, quiet=args.quiet,
                            on_result=(lambda r: [callback(r) for callback in callbacks]) if callbacks else None)
    except Terminated:  # between runs, outside any claim: nothing to give back
        print("terminated (SIGTERM) between runs; run the same command again to resume", file=sys.stderr)
        return 143, None
    if tracker is not None and not outcome.interrupted:
        caught_up = tracker.catch_up(db)
        if caught_up:
            logger.info("MLflow: logged %s finished before this session", plural(caught_up, "run"))
    if args.json:
        # Runs finished before this invocation are reported too, from the store.
        ran = {r.config_hash for r in outcome.ran}
        for row in outcome.rows:
            if row["status"] == "done" and row["config_hash"] not in ran and row["result_json"]:
                print_json(json.loads(row["result_json"]))
    else:
        print(results_table(outcome.rows))
        # Runs stored with --serve (study --preset serve): the report section's train x serve table under it.
        matrix = serving_table(outcome.rows)
        if matrix:
            print("\n" + matrix)
    done = sum(1 for r in outcome.rows if r["status"] == "done")
    if outcome.interrupted:
        how = interruption(outcome.interrupted) if isinstance(outcome.interrupted, BaseException) else "interrupted"
        print(f"{how}: {done} of {plural(outcome.planned, 'run')} done, the current one given back; run the same command again to resume",
              file=sys.stderr)
        return (interrupted_code(outcome.interrupted) if isinstance(outcome.interrupted, BaseException) else 130), outcome
    failed = len(outcome.failed) + outcome.invalid
    if failed:
        logger.warning("%s failed (reasons in the store: resizelab report)", plural(failed, "run"))
    return (1 if failed else 0), outcome
