"""`resizelab run`: train and evaluate one configuration, store it, print the result."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.log import logger
from .flags import (add_db, add_json, add_mlflow, add_run_options, db_path, given_options, interrupted_code, interruption,
                    mlflow_logger, print_json)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate one configuration, store it, print the result")
    add_db(p)
    add_json(p)
    add_mlflow(p)
    p.add_argument("--force", action="store_true", help="train again even if the store holds this configuration as done "
                   "(the earlier result is kept as an earlier attempt)")
    p.add_argument("--dry-run", action="store_true", help="say the run's name (hash), whether the store holds it and "
                   "what a real run needs that is not here, then stop: trains nothing, downloads nothing")
    add_run_options(p, grid=False)


def cmd_run(args: argparse.Namespace) -> int:
    from ..report.writer import format_run
    from ..store.database import Store, StoreEmpty, check_db_path, new_owner_id
    from ..sweeps.claim import run_claimed
    from ..training.inputs import ensure_inputs
    from ..training.planning import plan

    given = given_options(args, RunConfig)
    cfg = RunConfig.from_dict(given)
    db = db_path(args)
    check_db_path(db)
    if args.dry_run:
        from ..sweeps.plan import expand
        from .sweep import print_dry_run

        return print_dry_run(expand(given, name="run"), db, what="run")
    # Inputs are checked (and fetched) first: the run's name is its data's digest, and a missing dataset or
    # weights file leaves no database behind.
    ensure_inputs([cfg])
    cfg = plan(cfg)
    h = cfg.config_hash()
    if os.path.exists(db) and not args.force:
        try:
            with Store(db, readonly=True) as store:
                row = store.get(h)
        except StoreEmpty:  # being created by another process, or an empty file: nothing stored yet
            row = None
        if row is not None and row["status"] == "done" and row["result_json"]:
            tracker = mlflow_logger(args, sweep=None)
            if tracker is not None and tracker.catch_up(db, {h}):
                logger.info("MLflow: logged the stored run %s", h)
            data = json.loads(row["result_json"])
            if args.json:
                print_json(data)
            else:
                print(format_run(data, row["label"]))
                print(f"already stored as {h} in {db} (finished {time.strftime('%Y-%m-%d %H:%M', time.localtime(row['finished_at']))}); "
                      "--force trains it again and keeps both results")
                if cfg.save_weights and not data.get("weights_file"):
                    print("its weights were not saved; --save-weights --force trains it again and saves them")
            return 0
    tracker = mlflow_logger(args, sweep=None)
    with Store(db) as store:
        store.register([cfg])
        try:
            attempt = run_claimed(store, cfg, new_owner_id(), force=True, record_config_errors=False, progress=not args.quiet)
        except KeyboardInterrupt as e:
            print(f"{interruption(e)}; nothing stored (the run was given back)", file=sys.stderr)
            return interrupted_code(e)
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
        print_json(data)
    else:
        print(format_run(data, attempt.result.config.label()))
        print(f"stored as {h} in {db}" + (f" (attempt {attempts}; earlier results kept)" if attempts > 1 else ""))
        if attempt.result.weights_file:
            print(f"weights saved to {os.path.join(os.path.dirname(os.path.abspath(db)), attempt.result.weights_file)} "
                  f"(resizelab probe --run {h} --db {db})")
    return 0
