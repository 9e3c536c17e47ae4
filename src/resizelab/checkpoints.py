"""Trained weights kept beside the results store (`--save-weights`), and found again by a run's hash.

A run trained with `save_weights` carries its state_dict back to whoever writes the store; that
writer saves it as `<db folder>/weights/<config hash>-<n>.pt` (n: the attempt, so a forced rerun
keeps the earlier file) before the run is marked done, and the stored result names the file as
`weights_file`, relative to the db's folder so that the folder can be moved as a whole. The file is
written under a temporary name and renamed into place: a kill leaves either the whole file or none.
The SQLite schema is untouched: the reference lives in the result JSON and its provenance.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

WEIGHTS_FOLDER = "weights"


def weights_folder(db: str | os.PathLike) -> Path:
    return Path(db).absolute().parent / WEIGHTS_FOLDER


def save_state_dict(state: dict, db: str | os.PathLike, config_hash: str, attempt: int) -> str:
    """Write `state` atomically as weights/<hash>-<n>.pt beside the db (n from `attempt`, the next free one
    if a file of a killed attempt is there); returns its path relative to the db's folder."""
    import torch

    folder = weights_folder(db)
    folder.mkdir(exist_ok=True)
    n = max(1, attempt)
    while (folder / f"{config_hash}-{n}.pt").exists():
        n += 1
    fd, tmp = tempfile.mkstemp(prefix=f".{config_hash}-{n}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{config_hash}-{n}.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"{WEIGHTS_FOLDER}/{config_hash}-{n}.pt"


def complete_run(store, result, owner: str) -> None:
    """Store a finished run; when it carries trained weights, save them first so the stored result names them."""
    if result.state_dict is not None:
        attempt = len(store.attempts(result.config_hash)) + 1
        result.weights_file = save_state_dict(result.state_dict, store.path, result.config_hash, attempt)
        result.provenance["weights_file"] = result.weights_file
        result.state_dict = None  # written; no need to keep a model's worth of tensors around
    store.complete(result, owner)


@dataclass(frozen=True)
class StoredRun:
    config_hash: str
    config: dict  # the resolved run config, as stored
    weights_path: str  # absolute


def find_run(db: str | os.PathLike, run: str) -> StoredRun:
    """A finished run with saved weights, by its hash or a unique prefix of it (at least 4 hex digits)."""
    from .store import Store, require_store

    require_store(db, f"pass --db PATH of the store that holds run {run}")
    if not isinstance(run, str) or not re.fullmatch(r"[0-9a-fA-F]{4,16}", run):
        raise ConfigError(f"run must be a config hash (16 hex digits, or a unique prefix of at least 4); got {run!r}")
    run = run.lower()  # hashes are written in lower case; a prefix copied in upper case names the same run
    with Store(db) as store:
        rows = [r for r in store.runs() if r["config_hash"].startswith(run)]
    if not rows:
        raise ConfigError(f"no run {run} in {db}; `resizelab report --db {db}` lists the stored runs (runs.csv)")
    if len(rows) > 1:
        raise ConfigError(f"run {run} is ambiguous in {db}: {', '.join(r['config_hash'] for r in rows[:5])}; give more digits")
    row = rows[0]
    h = row["config_hash"]
    if row["status"] != "done" or not row["result_json"]:
        raise ConfigError(f"run {h} is {row['status']}, not done; only a finished run has trained weights")
    weights_file = json.loads(row["result_json"]).get("weights_file")
    if not weights_file:
        raise ConfigError(f"run {h} was trained without --save-weights; train it again with "
                          f"`resizelab run ... --save-weights --force` to keep its weights")
    path = os.path.join(os.path.dirname(os.path.abspath(db)), weights_file)
    if not os.path.isfile(path):
        raise ConfigError(f"run {h}'s weights file {path} is missing; it is kept beside the db in {WEIGHTS_FOLDER}/, "
                          "move the db together with that folder")
    return StoredRun(h, json.loads(row["config_json"]), path)
