"""`resizelab advise`: the best training size, resize method, antialias, backend and serving recipe for the given
data and model under a budget (resizelab.advise, on Optuna); the answer on one screen, or --json."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.config import RunConfig, comma_items, parse_bool, parse_sizes
from ..core.errors import ConfigError
from ..sweeps.runner import SweepOptions
from .flags import add_json, add_options, add_run_options, given_options

SPACE_AXES = ("size", "interpolation", "antialias", "backend")


def add_parser(sub) -> None:
    sub.add_parser("advise", flags=_add_flags, help="search the resize pipelines for the best one under a budget (Optuna), "
                   "and say how sure, what it costs and what the grid would have cost")


def _add_flags(p: argparse.ArgumentParser) -> None:
    from ..search.advise import AdviseConfig
    from ..search.space import DEFAULT_SIZES, domain

    p.add_argument("file", nargs="?", default=None, help="TOML file in the sweep format: its [grid] axes narrow the search "
                   "space, its [base] options are the runs' options (flags win)")
    add_json(p, help="print the answer as one JSON object on stdout")
    p.add_argument("--report-dir", default=None, metavar="DIR", help="write the study's report there, led by its Advice section "
                   "(report.html, report.md, runs.csv, advice.html, advice.json, figures; a replay writes advice.html and "
                   "advice.json); default: no report, the answer on the terminal only")
    add_options(p, AdviseConfig)
    add_options(p, SweepOptions, only=("db", "executor", "pack"))
    space = p.add_argument_group("search space (default: every value the options declare; sizes 16,24,32)")
    space.add_argument("--size", dest="space_size", default=None, metavar="PX[,PX...]",
                       help=f"training sizes to search (default {','.join(map(str, DEFAULT_SIZES))})")
    space.add_argument("--interpolation", dest="space_interpolation", default=None, metavar="METHOD[,METHOD...]",
                       help=f"resize methods to search (default {','.join(domain('interpolation'))})")
    space.add_argument("--antialias", dest="space_antialias", default=None, metavar="{true,false}[,...]",
                       help="antialias values to search (default true,false)")
    space.add_argument("--backend", dest="space_backend", default=None, metavar="BACKEND[,BACKEND...]",
                       help=f"backends to search (default {','.join(b for b in domain('backend') if b != 'opencv')}, "
                       "and opencv where OpenCV is installed)")
    add_run_options(p, grid=False, skip=(*SPACE_AXES, "seed", "serve", "test_interpolation"))


def cmd_advise(args: argparse.Namespace) -> int:
    from ..api import advise
    from ..search.advise import AdviseConfig

    config = given_options(args, AdviseConfig)
    sweep = given_options(args, SweepOptions)
    base = given_options(args, RunConfig)
    axes = {
        "sizes": parse_sizes(args.space_size) if args.space_size else None,
        "interpolations": comma_items(args.space_interpolation) if args.space_interpolation else None,
        "antialias": [parse_bool(t) for t in comma_items(args.space_antialias)] if args.space_antialias else None,
        "backends": comma_items(args.space_backend) if args.space_backend else None,
    }
    if not config.get("replay") and not base.get("data") and not args.file:
        raise ConfigError("advise needs the data to train on: --data imagefolder:PATH (or cifar10, synthetic), or --replay GRID.json")
    answer = advise(base, **config, **axes, space_file=args.file, report=args.report_dir, progress=not args.quiet, **sweep)
    if args.json:
        print(json.dumps(answer.to_dict(), default=str))
    else:
        print(answer.text())
    if answer.report is not None:
        print(f"report: {answer.report}", file=sys.stderr)
    return 0
