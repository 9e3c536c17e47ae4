"""Cache files of tensors (decoded datasets, resized splits): written atomically with a checksum, read back
only when it matches, and never a reason for a run to fail (a cache that cannot be written is only slower)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch

from ..core.errors import first_line
from ..core.processes import pid_alive


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"resizelab: warning: {message}", file=sys.stderr, flush=True)


def tensors_checksum(payload: dict) -> str:
    """SHA-256 over a cache payload's tensors (names, dtypes, shapes, bytes): what a cache read is checked against."""
    h = hashlib.sha256()
    for name in sorted(payload):
        value = payload[name]
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
        elif name != "checksum":
            h.update(f"{name}={value!r}\n".encode())
    return h.hexdigest()


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of writers that died (kill -9, power cut) are named .tmp<PID>: remove those whose process is gone."""
    for tmp in folder.glob("*.tmp*"):
        pid = tmp.suffix.removeprefix(".tmp")
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def save_tensors(path: Path, payload: dict) -> bool:
    """Write a cache file atomically with its checksum; True when written. A cache that cannot be written (disk
    full, read-only) is only slower next time: the temporary file is removed and the run goes on."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        torch.save({**payload, "checksum": tensors_checksum(payload)}, tmp)
        os.replace(tmp, path)
        return True
    # torch.save reports a failed write (ENOSPC, EFBIG) as a RuntimeError from its zip writer.
    except (OSError, RuntimeError) as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # no folder to hold it (a cache "folder" that is a file): nothing was written
            pass
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder: point RESIZELAB_CACHE_DIR (or XDG_CACHE_HOME) at a folder"
        else:
            reason = first_line(e)
        warn_once(f"cache file {path} not written ({reason}); the run goes on, and the next one recomputes it")
        return False


def load_tensors(path: Path) -> dict | None:
    """A cache file's payload, or None when it is missing, unreadable or fails its checksum (then it is removed)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a corrupt cache is only a cache: rebuild it
        payload = None
    if not isinstance(payload, dict) or payload.get("checksum") != tensors_checksum(payload):
        if isinstance(payload, dict) and "checksum" in payload:  # a file of an older version has none: no news
            warn_once(f"cache file {path} is damaged (checksum mismatch); recomputing it")
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return None
    payload.pop("checksum")
    return payload
