"""Trained weights kept beside the results store (`--save-weights`), and found again by a run's hash.

A run trained with `save_weights` carries its state_dict back to whoever writes the store; that
writer saves it as `<db folder>/weights/<config hash>-<n>.pt` (n: the attempt, so a forced rerun
keeps the earlier file) before the run is marked done, and the stored result names the file as
`weights_file`, relative to the db's folder so that the folder can be moved as a whole, and its SHA-256 as
`weights_sha256`, so that a file swapped in later is refused rather than probed as this run's weights. The file is
written under a temporary name and renamed into place: a kill leaves either the whole file or none.
The SQLite schema is untouched: the reference lives in the result JSON and its provenance.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..training.digests import file_sha256

WEIGHTS_FOLDER = "weights"


def weights_folder(db: str | os.PathLike) -> Path:
    return Path(db).absolute().parent / WEIGHTS_FOLDER


def save_state_dict(state: dict, db: str | os.PathLike, config_hash: str, attempt: int) -> tuple[str, str]:
    """Write `state` atomically as weights/<hash>-<n>.pt beside the db (n from `attempt`, the next free one
    if a file of a killed attempt is there); returns its path relative to the db's folder and its SHA-256."""
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
        digest = file_sha256(tmp)
        os.replace(tmp, folder / f"{config_hash}-{n}.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"{WEIGHTS_FOLDER}/{config_hash}-{n}.pt", digest


def complete_run(store, result, owner: str) -> None:
    """Store a finished run; when it carries trained weights, save them first so the stored result names them."""
    if result.state_dict is not None:
        attempt = len(store.attempts(result.config_hash)) + 1
        result.weights_file, result.weights_sha256 = save_state_dict(result.state_dict, store.path, result.config_hash, attempt)
        result.provenance["weights_file"] = result.weights_file
        result.state_dict = None  # written; no need to keep a model's worth of tensors around
    store.complete(result, owner)
