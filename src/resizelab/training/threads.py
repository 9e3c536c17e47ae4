"""Torch threads: the one place that sets them (`set_threads`), and the policy that adapts them to a busy machine.

On a CPU a training step is many small parallel operations; each waits for its slowest thread, so a thread
whose core another process holds makes every step wait for the scheduler. One busy process on a 2-core
machine took a 2-thread run from 824 to 53 images/s, where one thread ran at 549 (issue 27). `ThreadPolicy`
watches the run's own step times and keeps the count that is fastest now: fewer when the steps slow down
well below what the same count achieved, more again when the machine frees up. It is a pure object (it
observes (step, seconds, images) and answers a count), so tests drive it with times they choose;
`MachineLoad` reads how many cores sit idle, which only gates when trying more threads is worth a probe.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Iterator


def set_threads(threads: int) -> int:
    """Compute with `threads` intra-op torch threads from the next operation on; the count now in force. Every
    change of a process's torch threads goes through here (engine, thread policy, sweeps, packed workers)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def current_threads() -> int:
    import torch

    return torch.get_num_threads()


def set_interop_threads(threads: int) -> bool:
    """torch.set_num_interop_threads, which works once per process and only before its first inter-op work
    (RuntimeError after): whether it was set. A fresh worker process calls it first thing; elsewhere the
    count torch chose stays, and only the intra-op count (the one that matters for a training step) changes."""
    import torch

    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def evaluation_threads(threads: int | None, span_seconds: float = 0.2) -> Iterator[int]:
    """Torch threads for a command that only evaluates (serve, probe, spectrum) and has no steps to adapt on: N as
    given; auto (None) the cores other processes leave free as it starts, at least one, at most what torch has. The
    count before is restored after."""
    before = current_threads()
    if threads is None:
        load = MachineLoad(span_seconds=span_seconds)
        time.sleep(span_seconds)
        busy = load.busy_elsewhere()
        threads = before if busy is None else max(1, min(before, int(load.cores - busy + 0.5)))
    try:
        yield set_threads(threads)
    finally:
        set_threads(before)


@dataclass
class ThreadChange:
    step: int  # the first step computed with `threads`
    threads: int
    reason: str  # start, probe (trying a count), machine busy, machine free, fewer faster, probe slower

    def as_list(self) -> list:
        return [self.step, self.threads, self.reason]


MAX_RECORDED_CHANGES = 100
# Reasons of a change the run keeps (said on the progress line); the others are probes and their undoing.
DECISIONS = ("machine busy", "fewer faster", "machine free")


@dataclass
class ThreadPolicy:
    """Which thread count a run computes its next steps with, from the time its steps took.

    Steps are judged per image, by the median of `window` steps. After two warm-up steps, a run with more
    than one thread tries fewer once (`maximum // 2`) and keeps the faster: a machine busy from the start is
    found within a few steps. Later, when a window at the current count is `busy_ratio` or less of the best that
    count achieved in this run, it tries fewer again. Below `maximum`, it tries more (doubling) every
    `reprobe_steps` steps (doubling the wait after each failed try), only while the machine shows an idle core
    when `observe` is told (`idle_cores`): a failed try up is costly on a busy machine (each step waits for a
    parked thread). A try is abandoned at its first step that is `abort_ratio` times slower than the count it
    left. `adaptive=False` (a fixed --threads) always answers `maximum`.
    """

    maximum: int
    adaptive: bool = True
    window: int = 2
    busy_ratio: float = 0.6
    gain: float = 1.1  # a try must beat the count it left by this factor (a window's noise is not a reason to move)
    abort_ratio: float = 2.0
    reprobe_steps: int = 50
    threads: int = 0
    changes: list[ThreadChange] = field(default_factory=list)
    steps_by_threads: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError(f"a thread policy needs a maximum of at least 1 thread; got {self.maximum}")
        self.threads = self.maximum
        self.changes = [ThreadChange(0, self.maximum, "start")]
        self._samples: list[float] = []
        self._best: dict[int, float] = {}  # threads -> best per-image seconds of a window in this run
        self._probe: tuple[int, float, str] | None = None  # (count left, its per-image seconds, reason if kept)
        # The run's first steps build caches and thread pools (measured: the second is still slow on a quiet
        # machine, which once made one thread look faster than two): not a measure of anything.
        self._warmup = 2
        self._tried_fewer = False
        self._up_wait = self.reprobe_steps
        self._next_up = self.reprobe_steps
        self._next_down = 0
        self._message: str | None = None

    def start_beside(self, busy_elsewhere: float | None, cores: int) -> int:
        """Before the first step: start with the cores that other processes leave free (what `MachineLoad` saw them
        keep busy while this run set up), so a run on a busy machine does not pay for its first slow steps; the
        steps still decide. The count to start with."""
        if not self.adaptive or busy_elsewhere is None:
            return self.threads
        free = max(1, min(self.maximum, int(cores - busy_elsewhere + 0.5)))
        # Seen either way, the first-step try of fewer would only cost steps (measured on a quiet 2-core machine:
        # 0.87x of a fixed count with it); a load that comes later is found by the slowdown rule, and from fewer
        # threads more is tried when the machine shows an idle core.
        self._tried_fewer = True
        if free < self.threads:
            self._message = (f"machine busy: {self.threads} → {free} thread{'s' if free != 1 else ''} (other processes "
                             f"keep {busy_elsewhere:.1f} of {cores} cores busy)")
            self.threads = free
            self.changes.append(ThreadChange(0, free, "machine busy"))
        return self.threads

    def observe(self, step: int, seconds: float, images: int, idle_cores: float | None = None) -> int:
        """Step `step` (counted from 0) took `seconds` for `images` images; the count for the next steps."""
        self.steps_by_threads[self.threads] = self.steps_by_threads.get(self.threads, 0) + 1
        if not self.adaptive or images <= 0:
            return self.threads
        if self._warmup:
            self._warmup -= 1
            return self.threads
        per_image = seconds / images
        if self._probe is not None:
            left, reference, _ = self._probe
            if per_image > self.abort_ratio * reference:
                return self._end_probe(step, kept=False, per_image=per_image)
        self._samples.append(per_image)
        if self._probe is None and not self._tried_fewer and self.threads > 1:
            # The first measured step against a try of fewer: on a contended machine the gap is tenfold, and
            # every step spent finding it out is one of the slow ones.
            self._tried_fewer = True
            self._samples = []
            self._best[self.threads] = per_image
            return self._try(step, max(1, self.threads // 2), per_image, "fewer faster")
        if self._probe is not None and per_image * self.abort_ratio < self._probe[1]:
            return self._end_probe(step, kept=True, per_image=per_image)  # decisively faster: no need to wait
        if len(self._samples) < self.window:
            return self.threads
        now = statistics.median(self._samples)
        self._samples = []
        if self._probe is not None:
            left, reference, _ = self._probe
            # Either way a change must win by `gain`: one noisy window (a step that still warmed a cache, a
            # blip of the machine) would otherwise move a quiet run to fewer threads for the rest of it.
            better = now < reference / self.gain
            return self._end_probe(step, kept=better, per_image=now)
        best = self._best.get(self.threads)
        self._best[self.threads] = now if best is None else min(best, now)
        if self.threads > 1 and best is not None and step >= self._next_down and now * self.busy_ratio > best:
            return self._try(step, max(1, self.threads // 2), now, "machine busy")
        if (self.threads < self.maximum and step >= self._next_up
                and (idle_cores is None or idle_cores >= 0.5)):
            return self._try(step, min(self.maximum, self.threads * 2), now, "machine free")
        return self.threads

    def pop_message(self) -> str | None:
        """What the last decision kept, once ("machine busy: 2 → 1 threads"); None when nothing changed."""
        message, self._message = self._message, None
        return message

    def refused(self, step: int, threads: int) -> None:
        """The count asked for could not be had (the machine's thread ledger gave `threads`): go on with that."""
        if threads != self.threads:
            self._probe = None
            self._samples = []
            self.threads = threads
            self.changes.append(ThreadChange(step + 1, threads, "ledger"))

    def record(self) -> dict:
        """What ran, for the run's execution record: the policy, the count most steps used, every change."""
        most = max(self.steps_by_threads.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.steps_by_threads else self.threads
        return {"threads": most, "threads_policy": "auto" if self.adaptive else "fixed",
                # A long run on a restless machine could change often: the first MAX_RECORDED_CHANGES say how it went.
                "thread_changes": [c.as_list() for c in self.changes[:MAX_RECORDED_CHANGES]],
                "steps_by_threads": {str(k): v for k, v in sorted(self.steps_by_threads.items())}}

    def _try(self, step: int, threads: int, reference: float, reason: str) -> int:
        self._probe = (self.threads, reference, reason)
        self.threads = threads
        self.changes.append(ThreadChange(step + 1, threads, "probe"))
        return threads

    def _end_probe(self, step: int, *, kept: bool, per_image: float) -> int:
        left, reference, reason = self._probe
        self._probe = None
        self._samples = []
        tried = self.threads
        if kept:
            self.changes[-1].reason = reason
            self._best[tried] = per_image if tried not in self._best else min(self._best[tried], per_image)
            if reason == "machine free":
                self._up_wait = self.reprobe_steps
            else:
                self._best.pop(left, None)  # its best was on a quieter machine; measured afresh when tried again
            self._next_up = step + self._up_wait
            self._message = (f"{reason}: {left} → {tried} thread{'s' if tried != 1 else ''} "
                             f"({1e3 * reference:.2f} → {1e3 * per_image:.2f} ms per image)")
            return tried
        self.threads = left
        self.changes.append(ThreadChange(step + 1, left, "probe slower"))
        if tried > left:
            self._up_wait *= 2
            self._next_up = step + self._up_wait
        else:
            # Fewer was no faster: the machine is slower for every count. What this count does now is its measure.
            self._best[left] = reference
            self._next_down = step + self.reprobe_steps
        return left


def describe_changes(changes: list | None) -> str:
    """The thread changes a run kept (its execution record's thread_changes), in words ("2 → 1 at step 5 (machine busy)"); "" when it kept its count.
    Probes (a few steps at another count, then back) are left out: the execution record lists them."""
    kept, threads = [], None
    for step, count, why in changes or []:
        if why in ("start", "probe", "probe slower", "ledger"):
            if why != "probe":
                threads = count
            continue
        kept.append(f"{threads} → {count} at step {step} ({why})")
        threads = count
    return "; ".join(kept)


class MachineLoad:
    """Idle cores among those this process may run on, over the last `span_seconds` or more, and the cores other
    processes kept busy, from /proc/stat (Linux) and this process's CPU time. None where /proc/stat cannot be read."""

    def __init__(self, path: str = "/proc/stat", span_seconds: float = 0.1):
        self.path = path
        try:
            self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        except (AttributeError, OSError):
            self.cpus = None
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.span_ticks = span_seconds * self.tick
        self.cores = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        self._last = self._read()
        self._idle: float | None = None

    def _read(self) -> tuple[float, float, int, float] | None:
        """(idle ticks, all ticks, cores) summed over this process's cores, and this process's CPU ticks."""
        idle = total = 0.0
        cores = 0
        try:
            with open(self.path) as f:
                for line in f:
                    name, *values = line.split()
                    if not name.startswith("cpu") or name == "cpu" or (self.cpus is not None and name not in self.cpus):
                        continue
                    ticks = [float(v) for v in values[:8]]  # guest time is already counted in user
                    idle += ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
                    total += sum(ticks)
                    cores += 1
        except (OSError, ValueError, IndexError):
            return None
        own = os.times()
        return (idle, total, cores, (own.user + own.system) * self.tick) if cores else None

    def idle_cores(self) -> float | None:
        now = self._read()
        if now is None or self._last is None:
            self._last = now
            return None
        idle, total, cores, _ = now
        if total - self._last[1] >= self.span_ticks * cores:
            self._idle = cores * (idle - self._last[0]) / (total - self._last[1])
            self._last = now
        return self._idle

    def busy_elsewhere(self) -> float | None:
        """Cores that other processes kept busy since the last reading (at least `span_seconds` ago, else None),
        and starts a new span: the machine's busy time less this process's own CPU time."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[1] - last[1] < self.span_ticks * now[2]:
            return None
        idle, total, cores, own = now
        wall_ticks = (total - last[1]) / cores
        return max(0.0, cores * (1 - (idle - last[0]) / (total - last[1])) - (own - last[3]) / wall_ticks)
