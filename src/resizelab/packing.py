"""The packed executor: several runs of a sweep trained at once on one device, one worker process each.

A run at batch 32 and 8-64 px leaves a GPU mostly idle: its time goes to launching small kernels one
by one from a single Python thread. Processes, unlike CUDA streams driven from one thread, launch in
parallel, and they also overlap what a run does besides stepping (set-up, evaluation, storing). Each
worker trains whole runs with `engine.train`, exactly as `--executor local` does, so a run's result does
not depend on what shares the device (in deterministic mode it is bit for bit the same; tests compare).
This process stays the only writer to the store: it holds each run's store.Lease (claimed before the
run is handed out, renewed by its thread while a worker trains it) and ends it with what the worker
sends back, as the Ray executor does; a lease lost meanwhile ends that worker's run.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any

from .config import RunConfig
from .errors import ConfigError, DataUnavailable, WeightsError
from .store import Lease, LeaseLost

# --executor packed without --pack: runs trained at once.
DEFAULT_PACK = 4
# Runs `--executor auto` trains at once on one CUDA device; 1 is one at a time (the local executor). Kept at
# today's behaviour until the GPU check has measured packing (benchmarks/gpu.sh; BENCHMARKS.md, "GPU").
CUDA_AUTO_PACK = 1
MAX_PACK = 64
# Resized splits a worker keeps in memory: the usual cache, shared out among the workers of one device.
WORKER_CACHE_BYTES = 6 << 30


def resolve_executor(executor: str, pack: int | None, configs: list[RunConfig]) -> tuple[str, int]:
    """(executor, runs at once) a sweep uses. auto: packed by CUDA_AUTO_PACK when every run is on CUDA, else local."""
    if executor != "auto":
        return executor, (pack or DEFAULT_PACK) if executor == "packed" else 1
    if CUDA_AUTO_PACK <= 1 or not configs:
        return "local", 1
    from .runtime import resolve_device

    if all(resolve_device(c.device).type == "cuda" for c in configs):
        return "packed", CUDA_AUTO_PACK
    return "local", 1


def check_pack(pack: Any) -> None:
    if isinstance(pack, bool) or not isinstance(pack, int) or not 1 <= pack <= MAX_PACK:
        raise ConfigError(f"pack (runs trained at once) must be a whole number from 1 to {MAX_PACK}; got {pack!r}")


def _worker(index: int, tasks, results, threads: int, cache_bytes: int) -> None:
    """A worker process: train each config it is sent until it gets None; report (index, hash, status, payload)."""
    # Ctrl-C reaches every process of the terminal's group; the parent decides what happens to the runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from .resize import ResizeCache
    from .sweeps import _reason, _train_with_dataset

    torch.set_num_threads(threads)
    cache = ResizeCache(max_bytes=cache_bytes)
    train_fn = _train_with_dataset({})
    while True:
        item = tasks.get()
        if item is None:
            return
        h, values, pack = item
        cfg = RunConfig.from_dict(values)
        try:
            result = train_fn(cfg, cache=cache, progress=False)
            # Its timings were taken beside pack - 1 other runs on the same device: said with the result.
            result.provenance["pack"] = pack
            results.put((index, h, "done", result))
        except (DataUnavailable, WeightsError) as e:
            results.put((index, h, "unavailable", str(e)))
        except Exception as e:
            results.put((index, h, "failed", _reason(e)))


@dataclass
class _Slot:
    process: Any
    tasks: Any
    cfg: RunConfig | None = None  # the run it is training
    lease: Any = None  # store.Lease of that run


def _threads_per_worker(configs: list[RunConfig], pack: int) -> int:
    """Each worker's torch threads. On a CPU every worker keeps this process's count: oneDNN sums in an
    order that depends on the thread count, so fewer threads would change a run's result in its last
    digits (measured: the loss after one epoch moved in the fourth digit). On CUDA the host threads only
    feed the GPU, so the cores are shared out."""
    import torch

    from .runtime import resolve_device

    if any(resolve_device(c.device).type == "cpu" for c in configs):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // pack)


def run_packed(todo: list[RunConfig], store, owner: str, options, outcome, quiet: bool, on_result, pack: int) -> None:
    """Train `todo` with `pack` worker processes, claiming each run before it is handed out."""
    import multiprocessing

    from .sweeps import _log

    check_pack(pack)
    if not todo:
        return
    pack = min(pack, len(todo))
    threads = _threads_per_worker(todo, pack)
    # spawn, not fork: a forked child inherits this process's CUDA state, which CUDA does not allow.
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    cache_bytes = max(1 << 30, WORKER_CACHE_BYTES // pack)

    def start(index: int) -> _Slot:
        tasks = ctx.Queue()
        process = ctx.Process(target=_worker, args=(index, tasks, results, threads, cache_bytes), daemon=True,
                              name=f"resizelab-pack-{index}")
        process.start()
        return _Slot(process, tasks)

    slots = [start(i) for i in range(pack)]
    waiting = list(todo)
    submitted = 0
    claiming = None  # a lease between its claim and its hand-out, given back if interrupted there
    _log(f"packed: {pack} runs at a time, one worker process each ({threads} torch thread{'s' if threads != 1 else ''} each)", quiet)
    try:
        while True:
            for index, slot in enumerate(slots):
                while slot.cfg is None and waiting:
                    cfg = waiting.pop(0)
                    h = cfg.config_hash()
                    submitted += 1
                    claiming = Lease(store, h, owner, options.lease_seconds)
                    if not claiming.acquire(retry_failed=options.retry_failed):
                        claiming = None
                        row = store.get(h)
                        if row["status"] == "done":
                            outcome.already_done += 1
                        else:
                            outcome.held_elsewhere.append(h)
                            _log(f"[{submitted}/{len(todo)}] {cfg.label()}: held by {row['owner']}, left to it", quiet)
                        continue
                    slot.tasks.put((h, cfg.to_dict(), pack))
                    slot.cfg, slot.lease, claiming = cfg, claiming, None
                    _log(f"[{submitted}/{len(todo)}] {cfg.label()} ... (worker {index})", quiet)
            busy = [s for s in slots if s.cfg is not None]
            if not busy:
                break
            try:
                index, h, status, payload = results.get(timeout=1.0)
            except queue.Empty:
                index = None
            for i, slot in enumerate(slots):
                if slot.cfg is not None and i != index and slot.lease.lost.is_set():
                    # Taken over while its worker trains it: that training is stopped and nothing of it stored.
                    _log(f"    {_lost_reason(slot.lease)}", quiet)
                    outcome.held_elsewhere.append(slot.cfg.config_hash())
                    slot.lease.stop_renewing()
                    slot.cfg = slot.lease = None
                    slot.process.terminate()
                    slot.process.join(timeout=5)
                    slots[i] = start(i)
            if index is None:
                _replace_dead(slots, start, store, owner, outcome, quiet)
                continue
            if slots[index].cfg is None:  # the answer of a run stopped above: already accounted for
                continue
            (cfg, lease), slots[index].cfg, slots[index].lease = (slots[index].cfg, slots[index].lease), None, None
            if status == "unavailable":
                # Missing data or weights fail every run alike: stop and say so once.
                lease.release()
                raise DataUnavailable(payload)
            try:
                if status == "done":
                    lease.complete(payload)
                    outcome.ran.append(payload)
                    _log(f"    done {cfg.label()}: {payload.test_accuracy:.2f}% test accuracy, {payload.train_seconds:.1f} s", quiet)
                    if on_result is not None:
                        on_result(payload)
                else:
                    lease.fail(payload)
                    outcome.failed.append((h, cfg.label(), payload))
                    _log(f"    failed {cfg.label()}: {payload}", quiet)
            except LeaseLost as e:
                outcome.held_elsewhere.append(h)
                _log(f"    {e}", quiet)
    except KeyboardInterrupt as e:
        outcome.interrupted = e
    finally:
        if claiming is not None:
            claiming.release()
        for slot in slots:
            if slot.lease is not None:
                slot.lease.release()
        _stop(slots)


def _lost_reason(lease) -> str:
    try:
        lease.check()
    except LeaseLost as e:
        return str(e)
    return "lease lost"


def _replace_dead(slots: list[_Slot], start, store, owner: str, outcome, quiet: bool) -> None:
    """A worker that died (killed for memory, a crash in native code) fails its run and is replaced."""
    from .sweeps import _log

    for index, slot in enumerate(slots):
        if slot.process.is_alive():
            continue
        code = slot.process.exitcode
        if slot.cfg is not None:
            reason = f"worker process died (exit code {code}) while training this run"
            try:
                slot.lease.fail(reason)
                outcome.failed.append((slot.cfg.config_hash(), slot.cfg.label(), reason))
                _log(f"    failed {slot.cfg.label()}: {reason}", quiet)
            except LeaseLost as e:
                outcome.held_elsewhere.append(slot.cfg.config_hash())
                _log(f"    {e}", quiet)
        slots[index] = start(index)


def _stop(slots: list[_Slot]) -> None:
    """Ask every worker to finish, then end the ones still busy (their runs were given back above)."""
    for slot in slots:
        if slot.cfg is None and slot.process.is_alive():
            try:
                slot.tasks.put(None)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + 10
    for slot in slots:
        if slot.cfg is None:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if slot.process.is_alive():
            slot.process.terminate()
            slot.process.join(timeout=5)
