"""The machine's thread ledger: how many cores each sweep on this machine computes with, so two do not oversubscribe it.

Torch threads beyond the cores do not share them, they collapse (BENCHMARKS.md, "CPU sweeps"). Each sweep that
trains here writes its share into one small JSON file per machine in the cache folder ({pid: threads}),
under an advisory lock (fcntl.flock on a file beside it); a later sweep takes the cores left, or waits until
some are free, and says so in one line. Advisory: a process that does not ask (a plain `resizelab run`, another
program) is not counted. An entry of a process that is gone (killed, crashed) is dropped by the next reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from ..core.log import logger
from ..core.paths import cache_root
from ..core.processes import pid_alive

# How often a sweep waiting for cores looks again.
POLL_SECONDS = 2.0


def ledger_path() -> Path:
    # Per host: a cache folder in a home shared over NFS must not pool several machines' cores.
    return cache_root() / "machine" / f"threads-{socket.gethostname()}.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[int, int]]:
    """The ledger's entries of live processes ({pid: threads}), held under the lock; what the block leaves in it
    is written back. On disk each entry also holds its process's start time, so a reused pid is not mistaken for it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                stored = {int(pid): (int(n), started) for pid, (n, started) in json.loads(path.read_text() or "{}").items()}
            except (OSError, ValueError, TypeError, AttributeError):  # none yet, or damaged: start afresh
                stored = {}
            entries = {pid: n for pid, (n, started) in stored.items() if started is not None and _started(pid) == started}
            yield entries
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps({str(pid): [n, _started(pid)] for pid, n in sorted(entries.items())}))
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None when it is gone or a zombie (killed,
    not yet reaped: it computes nothing). Without /proc: "alive" for a process that signals reach, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return None if fields[0] in ("Z", "X") else fields[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    return "alive" if pid_alive(pid) else None


@contextlib.contextmanager
def thread_share(wanted: int, cores: int, *, say: Callable[[str], None] = logger.info,
                 poll_seconds: float = POLL_SECONDS) -> Iterator[int]:
    """Hold a share of this machine's `cores` for the block: `wanted`, or what other sweeps left (at least one);
    with nothing left, wait until some is. Yields the threads granted; the entry is removed at the end."""
    pid, waited = os.getpid(), False
    path = ledger_path()
    while True:
        with _locked(path) as entries:
            entries.pop(pid, None)
            taken = sum(entries.values())
            left = cores - taken
            if left >= 1:
                granted = min(wanted, left)
                entries[pid] = granted
                break
        if not waited:
            say(f"this machine's {cores} cores are taken by other sweeps (process {', '.join(map(str, sorted(entries)))}: "
                f"{taken} threads); waiting for a share ...")
            waited = True
        time.sleep(poll_seconds)
    if granted < wanted:
        say(f"other sweeps on this machine compute with {taken} of its {cores} cores: this one takes the {granted} left")
    try:
        yield granted
    finally:
        with contextlib.suppress(OSError), _locked(path) as entries:
            entries.pop(pid, None)
