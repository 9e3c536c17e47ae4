"""`resizelab runs`, `report`, `export` and `env`: what the store holds, written out or sent on, and what this machine has."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.log import plural
from ..report.tracking import DEFAULT_EXPERIMENT
from ..core.config import RunConfig
from .flags import add_db, add_options, comma_flag, db_path, given_options


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="log the stored finished runs to a tracking system (MLflow)")
    p.add_argument("target", choices=("mlflow",), help="where to export: mlflow (pip install 'resizelab[mlflow]')")
    add_db(p)
    p.add_argument("--sweep", default=None, metavar="NAME", help="only this sweep or preset study (default: every finished run)")
    p.add_argument("--uri", default=None, metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                   "else sqlite:///<folder of --db>/mlflow.db)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, metavar="NAME", help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")

    p = sub.add_parser("env", help="versions, device, cache paths, and whether data and weights are present")
    add_options(p, RunConfig, only=("data_dir",))  # where a run looks for CIFAR, so where env looks too

    p = sub.add_parser("runs", help="list the stored runs with their hashes (for serve --run, probe --run)")
    add_db(p)
    p.add_argument("--sweep", default=None, metavar="NAME", help="only this sweep or preset study (default: every run)")

    p = sub.add_parser("models", help="the models --arch can name here (torchvision's classifiers; timm's with --timm), "
                       "with parameter counts and their pinned ImageNet weights")
    p.add_argument("--filter", default=None, metavar="PATTERN", help="a shell-style pattern on the name, e.g. 'efficientnet*' "
                   "or 'timm:*vit_tiny*' (a timm: pattern lists timm's models); default: every model")
    p.add_argument("--timm", action="store_true", help="list timm's models too (pip install 'resizelab[timm]'; over a thousand)")

    p = sub.add_parser("report", help="write tables and figures (md, html, png, csv) from the store")
    add_db(p)
    p.add_argument("--sweep", default=None, metavar="NAME", help="only this sweep or preset study (default: every done run)")
    p.add_argument("--report-dir", "--out", dest="out", default=None, metavar="DIR",
                   help="output folder (default reports/<sweep or 'all'>)")
    p.add_argument("--split-on", default="", metavar="KEY[,KEY...]",
                   help="execution settings that make configurations of their own, each finished attempt counted "
                        "(e.g. channels_last,single_window_matmul,device; see EXECUTION_KEYS in results.py); default: none, "
                        "attempts that differ only in how they executed are one configuration")


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.writer import ReportConfig, write_report

    from ..store.database import require_store

    db = db_path(args)
    require_store(db)
    out = write_report(ReportConfig(db=db, sweep=args.sweep,
                                    out=os.path.join("reports", args.sweep or "all") if args.out is None else args.out,
                                    split_on=tuple(comma_flag("--split-on", args.split_on))))
    print(out / "report.md")
    print(f"report: {out / 'report.html'} (open it in a browser; report.md and the figures beside it)", file=sys.stderr)
    from ..search.advise import is_advise_study

    if is_advise_study(args.sweep):
        # The Advice section is the search's answer, not something the stored runs alone hold; the command that
        # asked it gives it again from the store without training anything.
        print(f"{args.sweep} is an advise study: this report has its runs; for its Advice section (the recommendation, "
              "best so far, the front) run the same `resizelab advise ...` command with --report-dir DIR: it answers "
              "from this store and trains nothing", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ..report.writer import runs_table
    from ..store.database import require_store
    from ..store.read import read_runs, stored_weights

    db = db_path(args)
    require_store(db)
    rows = read_runs(db, args.sweep, status=None).runs
    if not rows:
        print(f"no runs in {db}" + (f" for sweep {args.sweep}" if args.sweep else ""))
        return 0
    print(runs_table(rows))
    saved = sum(1 for r in rows if stored_weights(r))
    print(f"{plural(len(rows), 'run')}, {saved} with saved weights: resizelab serve --run HASH"
          + ("" if db == "resizelab.db" else f" --db {db}") + " (any unique prefix of 4 or more digits)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..report.tracking import export_store_to_mlflow, resolve_tracking_uri

    from ..store.database import require_store

    db = db_path(args)
    require_store(db)
    uri = resolve_tracking_uri(args.uri, db)
    count = export_store_to_mlflow(db, uri, args.experiment, sweep=args.sweep)
    print(f"logged {plural(count, 'run')} to {uri}, experiment {args.experiment}"
          + (" (every finished run was there already)" if count == 0 else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..core.optional import require
    from ..training.sources import available

    with_timm = args.timm or (args.filter or "").startswith("timm:")
    if with_timm:
        require("timm", "timm", "resizelab models --timm")
    listed = available(args.filter, with_timm=with_timm)
    if not listed:
        print(f"no model matches {args.filter!r}")
        return 1
    width = max(len(m.spec) for m in listed)
    print(f"{'arch':{width}s}  {'params':>9s}  pinned ImageNet weights")
    for m in listed:
        params = "?" if m.params is None else f"{m.params / 1e6:.2f} M"
        print(f"{m.spec:{width}s}  {params:>9s}  {m.weights or '-'}")
    print(f"{plural(len(listed), 'model')}; also package.module:callable or path/file.py:callable, your own factory")
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

    data_dir = given_options(args, RunConfig).get("data_dir")
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
        f"data dir       {data_dir or default_data_dir()}  ($RESIZELAB_DATA_DIR, --data-dir)",
        f"weights dir    {torch.hub.get_dir()}/checkpoints  ($TORCH_HOME)",
    ]
    for name, status in data_status(data_dir).items():
        lines.append(f"data {name:9s} {status}")
    for arch in IMAGENET_WEIGHTS:
        lines.append(f"weights {arch:12s} {imagenet_weights_status(arch)}")
    for module, status, purpose in optional_status():
        lines.append(f"optional {module:10s} {status} ({purpose})")
    print("\n".join(lines))
    return 0
