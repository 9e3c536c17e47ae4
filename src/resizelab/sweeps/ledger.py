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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..core.errors import ResizelabError
from ..core.log import logger
from ..core.paths import cache_root
from ..core.processes import pid_alive

# How often a sweep waiting for cores looks again, and how often it says again that it waits.
POLL_SECONDS = 2.0
REMIND_SECONDS = 60.0


class LedgerUnusable(ResizelabError):
    """The ledger's file, its lock or its folder is something else on disk (a folder where a file belongs)."""


def ledger_path() -> Path:
    # Per host: a cache folder in a home shared over NFS must not pool several machines' cores.
    return cache_root() / "machine" / f"threads-{socket.gethostname()}.json"


@dataclass
class Share:
    threads: int
    sweep: str | None = None
    since: float | None = None  # time.time() when it was taken

    def describe(self, pid: int) -> str:
        when = time.strftime("%H:%M:%S UTC", time.gmtime(self.since)) if self.since else "an unknown time"
        name = f"sweep {self.sweep!r}, " if self.sweep else ""
        return f"process {pid} ({name}{self.threads} thread{'s' if self.threads != 1 else ''}, since {when})"


def _unusable(path: Path, what: str) -> LedgerUnusable:
    return LedgerUnusable(f"the machine's thread ledger cannot be used: {path} {what}; remove it (it holds only the "
                          f"shares of running sweeps) or set RESIZELAB_CACHE_DIR to another folder, then run the same "
                          f"command again (nothing was claimed)")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[int, Share]]:
    """The ledger's entries of live processes ({pid: Share}), held under the lock; what the block leaves in it
    is written back. On disk each entry also holds its process's start time, so a reused pid is not mistaken for it."""
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _unusable(path.parent, "is a file, where a folder belongs") from None
    lock_path = path.with_suffix(".lock")
    try:
        lock = open(lock_path, "a+")
    except IsADirectoryError:
        raise _unusable(lock_path, "is a folder, where the ledger's lock file belongs") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = _read(path)
            yield entries
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps({str(pid): [e.threads, _started(pid), e.sweep, e.since]
                                       for pid, e in sorted(entries.items())}))
            try:
                os.replace(tmp, path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                if path.is_dir():
                    raise _unusable(path, "is a folder, where the ledger file belongs") from None
                raise _unusable(path, f"cannot be written ({e.strerror or e})") from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict[int, Share]:
    if path.is_dir():
        raise _unusable(path, "is a folder, where the ledger file belongs")
    try:
        stored = json.loads(path.read_text() or "{}")
        entries = {}
        for pid, fields in stored.items():
            n, started, *rest = fields
            if started is not None and _started(int(pid)) == started:
                sweep, since = (rest + [None, None])[:2]
                entries[int(pid)] = Share(int(n), sweep if isinstance(sweep, str) else None,
                                          float(since) if isinstance(since, (int, float)) else None)
        return entries
    except (OSError, ValueError, TypeError, AttributeError):  # none yet, or damaged: start afresh
        return {}


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
                 poll_seconds: float = POLL_SECONDS, remind_seconds: float = REMIND_SECONDS, sweep: str | None = None,
                 exact: bool = False) -> Iterator[int]:
    """Hold a share of this machine's `cores` for the block: `wanted`, or what other sweeps left (at least one);
    with `exact` (the threads the user asked for), `wanted` once that many cores are free (all of them, when it
    asks for more than the machine has). Until then it waits, saying so again every `remind_seconds` (who holds
    the cores, the ledger's path, how to go on); Ctrl-C while waiting holds nothing. Yields the threads granted;
    the entry is removed at the end."""
    pid, waited, last_said = os.getpid(), False, 0.0
    path = ledger_path()
    while True:
        with _locked(path) as entries:
            entries.pop(pid, None)
            taken = sum(e.threads for e in entries.values())
            left = cores - taken
            if left >= (min(wanted, cores) if exact else 1):
                granted = wanted if exact else min(wanted, left)
                entries[pid] = Share(granted, sweep, time.time())
                break
            holders = "; ".join(e.describe(p) for p, e in sorted(entries.items())) or "processes that are gone"
        now = time.monotonic()
        if not waited:
            say(f"this machine's {cores} cores are taken by other sweeps ({holders}); waiting for "
                f"{f'{wanted} free' if exact else 'a share'} ...")
            waited, last_said = True, now
        elif now - last_said >= remind_seconds:
            say(f"still waiting for {f'{wanted} free' if exact else 'a share'} of this machine's {cores} cores, "
                f"{max(0, left)} free, held by {holders} (ledger {path}). To go on: "
                + (f"give this sweep --threads {max(1, left)} (the cores free), " if exact and left >= 1 else "")
                + "stop the other sweep (kill PID), or Ctrl-C (nothing is held while waiting; the same command resumes)")
            last_said = now
        time.sleep(poll_seconds)
    if granted < wanted:
        say(f"other sweeps on this machine compute with {taken} of its {cores} cores: this one takes the {granted} left")
    elif exact and taken + granted > cores:
        say(f"other sweeps on this machine compute with {taken} of its {cores} cores: this one's {granted} threads "
            "oversubscribe it")
    try:
        yield granted
    finally:
        with contextlib.suppress(OSError, LedgerUnusable), _locked(path) as entries:
            entries.pop(pid, None)


def change_share(by: int, cores: int, holder: int | None = None) -> int:
    """Add `by` threads to the share process `holder` (default: this one) holds; negative gives them back. All of a
    give-back is granted, of more only what no other sweep holds. The change granted (`by` when `holder` holds no
    share: no sweep's ledger to respect)."""
    holder = os.getpid() if holder is None else holder
    with _locked(ledger_path()) as entries:
        share = entries.get(holder)
        if share is None:
            return by
        if by > 0:
            by = max(0, min(by, cores - sum(e.threads for e in entries.values())))
        by = max(by, 1 - share.threads)  # a share is at least one thread while it exists
        share.threads += by
    return by


class SharedThreads:
    """A run's `on_threads` in a sweep (training.engine.train): each thread count the run's policy asks for is
    taken from, or given back to, the ledger share of `holder` (this process, or a packed worker's parent),
    which starts from `held` threads of this worker."""

    def __init__(self, held: int, cores: int, holder: int | None = None):
        self.held, self.cores, self.holder = held, cores, holder

    def __call__(self, threads: int) -> int:
        try:
            self.held += change_share(threads - self.held, self.cores, self.holder)
        except (OSError, LedgerUnusable):  # the ledger broke meanwhile: keep what is held
            pass
        return self.held
