"""The packed executor: several runs trained at once on one device, one worker process each.

Small runs leave most of a large GPU idle (batch 32 at 16 px is a few milliseconds of work per step), so
packing several into one device raises a sweep's throughput without changing what any run measures: each
worker trains one run at a time with its own model, optimizer and seeded streams, so a run's result does
not depend on what shares the device (in deterministic mode it is bit for bit the same; tests compare).
This process stays the only writer to the store: `claim_loop` holds each run's lease while a worker trains
it and ends it with what the worker sends back, as it does for every executor.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any, Hashable

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..store.lease import Lease
from .claim import train_outcome

# --executor packed without --pack: runs trained at once on CUDA. On a CPU the default is one run per core
# (cpu_pack), each with one thread: small runs scale poorly across threads, so the cores go further as several runs.
DEFAULT_PACK = 4
# Runs `--executor auto` trains at once on one CUDA device; 1 is one at a time (the local executor). Kept at
# today's behaviour until the GPU check has measured packing (benchmarks/gpu.sh; BENCHMARKS.md, "GPU").
CUDA_AUTO_PACK = 1
MAX_PACK = 64
# `--executor auto` on a CPU packs sweeps of at least CPU_AUTO_PACK_MIN_RUNS runs to do that all train at
# CPU_AUTO_PACK_MAX_PX or less (cpu_auto_packs): what was measured. Fewer runs stay local: each worker first
# spends seconds importing torch and loading the data, which a handful of short runs would not earn back.
CPU_AUTO_PACK_MAX_PX = 32
CPU_AUTO_PACK_MIN_RUNS = 12
# Resized splits a worker keeps in memory: the usual cache, shared out among the workers of one device.
WORKER_CACHE_BYTES = 6 << 30


def resolve_executor(executor: str, pack: int | None, configs: list[RunConfig], cores: int | None = None) -> tuple[str, int]:
    """(executor, runs at once) a sweep uses. packed without a pack: DEFAULT_PACK on CUDA, one run per core on a
    CPU. auto: packed by CUDA_AUTO_PACK when every run is on CUDA; on a CPU packed one run per core when
    `cpu_auto_packs` says it is measured faster for these runs; else local."""
    if executor not in ("auto", "packed"):
        return executor, 1
    cpu = any(on_cpu(c) for c in configs)
    cores = cores or machine_cores()
    if executor == "packed":
        return "packed", pack or (cpu_pack(cores) if cpu else DEFAULT_PACK)
    if not configs:
        return "local", 1
    if cpu:
        return ("packed", cpu_pack(cores)) if cpu_auto_packs(configs, cores) else ("local", 1)
    if CUDA_AUTO_PACK > 1:
        return "packed", CUDA_AUTO_PACK
    return "local", 1


def any_on_cpu(configs: list[RunConfig]) -> bool:
    return any(on_cpu(c) for c in configs)


def on_cpu(cfg: RunConfig) -> bool:
    from ..training.runtime import resolve_device

    return resolve_device(cfg.device).type == "cpu"


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this OS
        return max(1, os.cpu_count() or 1)


def cpu_pack(cores: int) -> int:
    """Runs at once on a CPU by default: one per core (at least one), up to MAX_PACK."""
    return max(1, min(cores, MAX_PACK))


def cpu_auto_packs(configs: list[RunConfig], cores: int) -> bool:
    """Whether `--executor auto` packs these CPU runs: with two cores or more, at least CPU_AUTO_PACK_MIN_RUNS
    runs, every one trained at CPU_AUTO_PACK_MAX_PX or less (a native size is not known before the data is
    read: not packed). Measured (BENCHMARKS.md, "CPU sweeps"), 12 runs at 8-32 px on 2 cores: packed (2 x 1 thread)
    1.05x sooner than local (1 x 2 threads) on an idle machine and 8-11x on a loaded one, where a process of two
    threads on taken cores collapses; it never lost, so small sweeps pack. At 16-64 px it was 1.02x idle: larger
    inputs stay local until a busy machine is measured there too."""
    return (cores >= 2 and len(configs) >= CPU_AUTO_PACK_MIN_RUNS
            and all(c.size is not None and c.size <= CPU_AUTO_PACK_MAX_PX for c in configs))


def check_pack(pack: Any) -> None:
    if isinstance(pack, bool) or not isinstance(pack, int) or not 1 <= pack <= MAX_PACK:
        raise ConfigError(f"pack (runs trained at once) must be a whole number from 1 to {MAX_PACK}; got {pack!r}")


def end_with_parent(parent: int) -> None:
    """End this process when process `parent` ends, however it ends (kill -9 included): a worker left behind
    holds its memory (about a gigabyte) and may keep computing on a core. On Linux the kernel sends SIGKILL
    (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread looks every second whether the parent is still there."""
    import ctypes
    import ctypes.util
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before the prctl: nothing would signal this process now
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="resizelab-parent-watch", daemon=True).start()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_main(index: int, tasks, results, threads: int, cache_bytes: int, parent: int | None = None,
                ledger_cores: int | None = None) -> None:
    """A worker process: train each config it is sent until it gets None; report (index, status, payload).
    `parent`: the sweep's process, whose end ends this one; `ledger_cores`: the machine's cores when the
    sweep's share is in the thread ledger (each run's adapted threads then move the parent's share)."""
    if parent is not None:
        end_with_parent(parent)
    # Ctrl-C reaches every process of the terminal's group; the parent decides what happens to the runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..training.resize import ResizeCache
    from ..training.threads import set_interop_threads, set_threads
    from .local import DatasetMemo

    # First thing, before any op: the inter-op count can only be set in a process that has not computed yet.
    set_threads(threads)
    set_interop_threads(threads)
    cache = ResizeCache(max_bytes=cache_bytes)
    train_fn = DatasetMemo().train_fn()
    on_threads = None
    if ledger_cores is not None and parent is not None:
        from .ledger import SharedThreads

        on_threads = SharedThreads(threads, ledger_cores, holder=parent)
    while True:
        item = tasks.get()
        if item is None:
            return
        values, pack = item
        status, payload = train_outcome(train_fn, RunConfig.from_dict(values), cache=cache, progress=False,
                                        on_threads=on_threads)
        if status == "done":
            # Its timings were taken beside pack - 1 other runs on the same device: said with the result.
            payload.provenance["pack"] = pack
        elif status == "unavailable":
            payload = str(payload)  # an exception of this process's classes travels as its message
        results.put((index, status, payload))


def threads_per_worker(configs: list[RunConfig], pack: int, cores: int | None = None) -> int:
    """Each worker's torch threads: the cores shared out, so that pack x threads <= cores (at least one thread
    each). Threads running beyond the cores do not share them, they collapse: four processes of two threads on
    two cores trained at 15 images/s what one trains at several hundred. The thread count is an execution
    setting (a run's `threads` overrides this share, and what ran is recorded): it changes oneDNN's summation
    order, so a deterministic run is bit-equal between packed and local at the same thread count, not across counts."""
    return max(1, (cores or machine_cores()) // pack)


@dataclass
class Slot:
    process: Any
    tasks: Any
    busy: bool = False


class PackedExecutor:
    """`pack` worker processes on this machine; a ticket is a worker's index. A worker that dies (killed for
    memory, a crash in native code) fails the run it held and is replaced."""

    name = "worker"

    def __init__(self, todo: list[RunConfig], pack: int, cores: int | None = None, ledger_cores: int | None = None):
        import multiprocessing

        check_pack(pack)
        self.slots = max(1, min(pack, len(todo)))
        # Shared out by the pack asked for, not by the runs left: a short sweep does not give a worker more threads
        # than a long one would, so a run's thread count does not depend on how many runs were still to do.
        self.threads = threads_per_worker(todo, pack, cores)
        # What each run computes with: its --threads when given (it overrides the worker's share), else the share.
        self.run_threads = next((c.threads for c in todo if c.threads is not None), self.threads)
        self._ledger_cores = ledger_cores
        self._adaptive = all(c.threads is None for c in todo) and any_on_cpu(todo)
        # spawn, not fork: a forked child inherits this process's CUDA state, which CUDA does not allow.
        self._ctx = multiprocessing.get_context("spawn")
        self._results = self._ctx.Queue()
        self._cache_bytes = max(1 << 30, WORKER_CACHE_BYTES // self.slots)
        self._workers = [self._spawn(i) for i in range(self.slots)]

    def _spawn(self, index: int) -> Slot:
        tasks = self._ctx.Queue()
        process = self._ctx.Process(target=worker_main, args=(index, tasks, self._results, self.threads, self._cache_bytes,
                                                              os.getpid(), self._ledger_cores),
                                    daemon=True, name=f"resizelab-pack-{index}")
        process.start()
        return Slot(process, tasks)

    def describe(self) -> str:
        n = self.run_threads
        adapts = " at most, fewer while the machine is busy" if n == self.threads and self._adaptive else ""
        return (f"packed: {self.slots} runs at a time, one worker process each "
                f"({n} torch thread{'s' if n != 1 else ''} each{adapts}: {self.slots * n} in all)")

    def start(self, cfg: RunConfig, lease: Lease) -> Hashable:
        index = next(i for i, w in enumerate(self._workers) if not w.busy)
        self._workers[index].busy = True
        self._workers[index].tasks.put((cfg.to_dict(), self.slots))
        return index

    def wait(self, timeout: float) -> list[tuple[Hashable, str, Any]]:
        try:
            index, status, payload = self._results.get(timeout=timeout)
        except queue.Empty:
            return self._dead()
        if not self._workers[index].busy:  # the answer of a worker stopped meanwhile
            return []
        self._workers[index].busy = False
        return [(index, status, payload)]

    def _dead(self) -> list[tuple[Hashable, str, Any]]:
        out = []
        for index, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            if worker.busy:
                out.append((index, "failed", f"worker process died (exit code {worker.process.exitcode}) while training this run"))
            self._workers[index] = self._spawn(index)
        return out

    def stop(self, ticket: Hashable) -> None:
        worker = self._workers[ticket]
        worker.process.terminate()
        worker.process.join(timeout=5)
        self._workers[ticket] = self._spawn(ticket)

    def close(self) -> None:
        """Ask every idle worker to finish, then end the ones still busy (their runs were given back)."""
        for worker in self._workers:
            if not worker.busy and worker.process.is_alive():
                try:
                    worker.tasks.put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 10
        for worker in self._workers:
            if not worker.busy:
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
