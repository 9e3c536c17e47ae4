"""Where resizelab keeps things (cache, data), and the check that an output folder can be written."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def cache_root() -> Path:
    """Where decoded and resized tensors are cached: $RESIZELAB_CACHE_DIR, else the user cache."""
    env = os.environ.get("RESIZELAB_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "resizelab"


def default_data_dir() -> Path:
    """Where CIFAR is looked for and downloaded to: $RESIZELAB_DATA_DIR, else <cache>/data."""
    env = os.environ.get("RESIZELAB_DATA_DIR")
    return Path(env) if env else cache_root() / "data"


def check_out_dir(out: Path, option: str = "--out", *, create: bool = True, what: str = "report folder") -> None:
    """Make sure the report can be written to `out` (created if missing, unless `create` is False: a check made
    before a sweep runs, which must leave nothing behind if the sweep is refused); `option` is how it was set."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{what} {out} is a file; give {option} a folder")
    if not create:
        existing = next(p for p in (out, *out.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"cannot create the {what} {out} ({existing} is a file); give {option} a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot create the {what} {out} ({existing} is not writable); give {option} a writable folder")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the {what} {out} ({e.strerror}); give {option} a writable folder") from None
    probe = out / ".resizelab-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{what} {out} is not writable ({e.strerror}); give {option} a writable folder") from None
