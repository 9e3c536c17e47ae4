"""The results store as pandas DataFrames: one row per run, per run x test size, per run x epoch.

Everything here reads the SQLite store through a read-only connection (`mode=ro`) inside one read
transaction: a notebook gets a consistent snapshot, can never write, and, the store being in WAL
mode, never blocks a sweep that is writing to the same file. pandas is an optional extra
(`pip install 'resizelab[pandas]'`) imported only when a frame is built; torch is never imported.
"""

from __future__ import annotations

import json
import os
import sqlite3
import typing
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .config import RunConfig
from .errors import ConfigError
from .optional import require
from .store import check_schema_version, require_store

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("pending", "running", "done", "failed")

# Run metrics kept in their own store columns, then those read from the stored result JSON.
RUN_METRIC_COLUMNS = ("test_accuracy", "train_seconds", "images_per_second", "macs_per_image", "params", "peak_memory_bytes")
RESULT_COLUMNS = ("effective_precision", "weights_tag", "peak_memory_kind", "prepare_seconds", "time_to_first_step_seconds",
                  "eval_seconds")
# Config fields that say which evaluations a run has: in load_evals each row is one evaluation and
# carries its own test_size_px and test_interpolation instead.
EVAL_CONFIG_FIELDS = ("test_size", "test_size_px", "test_sizes", "test_interpolation")


@contextmanager
def connect_read_only(db: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a resizelab store, holding one read transaction (one snapshot)."""
    require_store(db, "run a study or sweep first, or pass the path of its database")
    path = Path(db).absolute()
    # as_uri() percent-encodes the path, so a '?' or '#' in a folder name cannot turn into URI syntax.
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
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
        runs = [dict(r) for r in conn.execute(query, args)]
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
                 "attempts", "epoch", "images"):
        kinds[name] = "Int64"
    for name in ("test_accuracy", "train_seconds", "images_per_second", "prepare_seconds", "time_to_first_step_seconds",
                 "eval_seconds", "accuracy", "train_loss", "train_accuracy", "epoch_seconds"):
        kinds[name] = "float64"
    kinds.update(test_interpolation="text", headline="boolean", finished_at="datetime64[ns, UTC]")
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
    (what the model was fed), error, attempts, finished_at (UTC).

    Sizes come twice. `size_px` is the number (Int64, <NA> for native): sort, plot and compute with it.
    `size` is text, "native" or the number ("16"): group by it. pandas' groupby drops NA keys by default,
    so grouping on size_px would silently leave the native runs out of every table; a text column keeps
    them as a group of their own. The same holds for test_size / test_size_px. A native run's actual
    pixels are in input_height_px / input_width_px.
    """
    return _runs_frame(read_runs(db, sweep, status), sweep)


def load_evals(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run x evaluation (test size): the run's identity and config, then test_size_px,
    test_interpolation, accuracy (percent), headline (this evaluation is the run's test_accuracy) and
    per_class_accuracy (dict of class -> percent).

    The config fields that only list evaluations (test_size, test_sizes, test_interpolation) are left
    out: each row is one evaluation and says its own size. Train-at-A, test-at-B tables come from
    `load_evals(db).pivot_table(index="size", columns="test_size_px", values="accuracy")`.
    """
    pd = _pandas()
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


def load_epochs(db: str | os.PathLike, sweep: str | None = None, status: str | None = "done") -> pd.DataFrame:
    """One row per run x epoch: the run's identity and config, then epoch (from 1), train_loss,
    train_accuracy (percent, on the batches as trained), epoch_seconds and images."""
    pd = _pandas()
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
