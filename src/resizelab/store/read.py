"""The read side of the store, shared by the DataFrames, the probe and the MLflow export.

Everything here reads the SQLite store through a read-only connection (`mode=ro`) inside one read
transaction: a reader gets a consistent snapshot, can never write, and, the store being in WAL mode,
never blocks a sweep that is writing to the same file. torch is never imported.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..core.errors import ConfigError
from .database import check_rows, check_schema_version, connect_for_reading, require_store
from .weights import WEIGHTS_FOLDER

STATUSES = ("pending", "running", "done", "failed")


@contextmanager
def connect_read_only(db: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a resizelab store, holding one read transaction (one snapshot)."""
    require_store(db, "run a study or sweep first, or pass the path of its database")
    conn = connect_for_reading(db)
    conn.row_factory = sqlite3.Row
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{db} is not a resizelab results store ({e})") from None
        if not {"runs", "epochs", "evals", "sweep_runs"} <= tables:
            raise ConfigError(f"{db} is not a resizelab results store (it has no runs/epochs/evals/sweep_runs tables)")
        check_schema_version(conn, str(db))
        # The SELECTs that follow see one snapshot, even while a sweep commits runs in between.
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass
class StoredRuns:
    """The runs a filter selects, with their sweeps, evaluations and epochs, read in one snapshot."""

    runs: list[dict]  # store rows, in sweep order when a sweep was named, else in order of creation
    sweeps: dict[str, list[str]]  # config_hash -> names of the sweeps that hold it, sorted
    evals: dict[str, list[dict]]  # config_hash -> eval rows, by test size
    epochs: dict[str, list[dict]]  # config_hash -> epoch rows, by epoch


def read_runs(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> StoredRuns:
    """The selected runs as plain rows (no pandas needed): what the frames and the MLflow export read."""
    if status is not None and status not in STATUSES:
        raise ConfigError(f"status must be one of {', '.join(STATUSES)} or None (every run); got {status!r}")
    with connect_read_only(db) as conn:
        query, args, clauses = "SELECT r.* FROM runs r", [], []
        if sweep is not None:
            known = [r[0] for r in conn.execute("SELECT DISTINCT sweep FROM sweep_runs ORDER BY sweep")]
            if sweep not in known:
                raise ConfigError(f"no sweep named {sweep!r} in {db}; sweeps there: {', '.join(known) or 'none'}")
            query += " JOIN sweep_runs s ON s.config_hash = r.config_hash"
            clauses.append("s.sweep = ?")
            args.append(sweep)
        if status is not None:
            clauses.append("r.status = ?")
            args.append(status)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY s.position, r.config_hash" if sweep is not None else " ORDER BY r.created_at, r.config_hash"
        runs = check_rows([dict(r) for r in conn.execute(query, args)], db)
        wanted = {r["config_hash"] for r in runs}
        sweeps: dict[str, list[str]] = {}
        for r in conn.execute("SELECT config_hash, sweep FROM sweep_runs ORDER BY sweep"):
            if r["config_hash"] in wanted:
                sweeps.setdefault(r["config_hash"], []).append(r["sweep"])
        evals: dict[str, list[dict]] = {}
        for r in conn.execute("SELECT * FROM evals ORDER BY config_hash, test_size_px, interpolation"):
            if r["config_hash"] in wanted:
                evals.setdefault(r["config_hash"], []).append(dict(r))
        epochs: dict[str, list[dict]] = {}
        for r in conn.execute("SELECT * FROM epochs ORDER BY config_hash, epoch"):
            if r["config_hash"] in wanted:
                epochs.setdefault(r["config_hash"], []).append(dict(r))
    return StoredRuns(runs, sweeps, evals, epochs)


@dataclass(frozen=True)
class StoredRun:
    config_hash: str
    config: dict  # the resolved run config, as stored
    weights_path: str  # absolute
    result: dict = field(default_factory=dict)  # the stored result JSON (accuracy, effective precision, execution)


def stored_weights(row) -> bool:
    """Whether a stored run's result names saved weights (--save-weights)."""
    try:
        return bool(row["result_json"] and json.loads(row["result_json"]).get("weights_file"))
    except ValueError:  # a damaged row: report and load_runs say so; here it only means no weights to point to
        return False


def find_run(db: str | os.PathLike, run: str) -> StoredRun:
    """A finished run with saved weights, by its hash or a unique prefix of it (at least 4 hex digits)."""
    require_store(db, f"pass --db PATH of the store that holds run {run}")
    if not isinstance(run, str) or not re.fullmatch(r"[0-9a-fA-F]{4,16}", run):
        raise ConfigError(f"run must be a config hash (16 hex digits, or a unique prefix of at least 4); got {run!r}")
    run = run.lower()  # hashes are written in lower case; a prefix copied in upper case names the same run
    with connect_read_only(db) as conn:
        rows = [dict(r) for r in conn.execute("SELECT * FROM runs WHERE config_hash LIKE ? ORDER BY config_hash", (run + "%",))]
    check_rows(rows, db)  # a row edited by hand or cut short: one line naming it, as report and load_runs say
    if not rows:
        raise ConfigError(f"no run {run} in {db}; `resizelab runs --db {db}` lists the stored runs and their hashes")
    if len(rows) > 1:
        raise ConfigError(f"run {run} is ambiguous in {db}: {', '.join(r['config_hash'] for r in rows[:5])}; give more digits")
    row = rows[0]
    h = row["config_hash"]
    if row["status"] != "done" or not row["result_json"]:
        raise ConfigError(f"run {h} is {row['status']}, not done; only a finished run has trained weights")
    result = json.loads(row["result_json"])
    weights_file = result.get("weights_file")
    if not weights_file:
        raise ConfigError(f"run {h} was trained without --save-weights; train it again with "
                          f"`resizelab run ... --save-weights --force` to keep its weights")
    path = os.path.join(os.path.dirname(os.path.abspath(db)), weights_file)
    if not os.path.isfile(path):
        raise ConfigError(f"run {h}'s weights file {path} is missing; it is kept beside the db in {WEIGHTS_FOLDER}/, "
                          "move the db together with that folder")
    expected = result.get("weights_sha256")
    # Stores written before the digest was kept have none to check against; those files are taken as they are.
    if expected:
        from ..training.digests import file_sha256

        actual = file_sha256(path)
        if actual != expected:
            raise ConfigError(f"run {h}'s weights file {path} is not the file that run saved (SHA-256 {actual[:12]}..., stored "
                              f"{expected[:12]}...); restore it, or train the run again with --save-weights --force")
    return StoredRun(h, json.loads(row["config_json"]), path, result)


def serving_rows(stored: StoredRuns) -> list[dict]:
    """One row per run x serving recipe x size (runs stored with --serve), from the stored results: config_hash,
    train_recipe (the recipe that is exactly the run's own test resize, None when none is), serve_recipe,
    serve_size_px, accuracy (percent), baseline (this row is the train recipe), change_points (accuracy minus the
    train recipe's at that size; None without one), library (and version), images, per_class_accuracy."""
    out = []
    for row in stored.runs:
        serving = (json.loads(row["result_json"]) if row["result_json"] else {}).get("serving") or []
        train = next((e["recipe"] for e in serving if e.get("baseline")), None)
        base = {e["size_px"]: e["accuracy"] for e in serving if e.get("baseline")}
        for e in serving:
            ref = base.get(e["size_px"])
            out.append({"config_hash": row["config_hash"], "train_recipe": train, "serve_recipe": e["recipe"],
                        "serve_size_px": e["size_px"], "accuracy": e["accuracy"], "baseline": bool(e.get("baseline")),
                        "change_points": None if ref is None or e["accuracy"] is None else e["accuracy"] - ref,
                        "library": e["library"], "images": e["images"], "per_class_accuracy": e["per_class_accuracy"]})
    return out
