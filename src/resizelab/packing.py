"""The packed executor: several runs of a sweep trained at once on one device, one worker process each.

A run at batch 32 and 8-64 px leaves a GPU mostly idle: its time goes to launching small kernels one
by one from a single Python thread. Processes, unlike CUDA streams driven from one thread, launch in
parallel, and they also overlap what a run does besides stepping (set-up, evaluation, storing). Each
worker trains whole runs with `engine.train`, exactly as `--executor local` does, so a run's result does
not depend on what shares the device (in deterministic mode it is bit for bit the same; tests compare).
This process stays the only writer to the store: it claims runs, renews their leases while they
train, and records what the workers send back, as the Ray executor does.
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
    from .sweep import _reason, _train_with_dataset

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

    from .sweep import _log

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
    last_beat = time.monotonic()
    _log(f"packed: {pack} runs at a time, one worker process each ({threads} torch thread{'s' if threads != 1 else ''} each)", quiet)
    try:
        while True:
            for index, slot in enumerate(slots):
                while slot.cfg is None and waiting:
                    cfg = waiting.pop(0)
                    h = cfg.config_hash()
                    submitted += 1
                    if not store.claim(h, owner, options.lease_seconds, retry_failed=options.retry_failed):
                        row = store.get(h)
                        if row["status"] == "done":
                            outcome.already_done += 1
                        else:
                            outcome.held_elsewhere.append(h)
                            _log(f"[{submitted}/{len(todo)}] {cfg.label()}: held by {row['owner']}, left to it", quiet)
                        continue
                    slot.tasks.put((h, cfg.to_dict(), pack))
                    slot.cfg = cfg
                    _log(f"[{submitted}/{len(todo)}] {cfg.label()} ... (worker {index})", quiet)
            busy = [s for s in slots if s.cfg is not None]
            if not busy:
                break
            try:
                index, h, status, payload = results.get(timeout=min(1.0, options.lease_seconds / 3))
            except queue.Empty:
                index = None
            if time.monotonic() - last_beat >= options.lease_seconds / 3:
                for slot in busy:
                    store.heartbeat(slot.cfg.config_hash(), owner, options.lease_seconds)
                last_beat = time.monotonic()
            if index is None:
                _replace_dead(slots, start, store, owner, outcome, quiet)
                continue
            cfg, slots[index].cfg = slots[index].cfg, None
            if status == "done":
                store.complete(payload, owner)
                outcome.ran.append(payload)
                _log(f"    done {cfg.label()}: {payload.test_accuracy:.2f}% test accuracy, {payload.train_seconds:.1f} s", quiet)
                if on_result is not None:
                    on_result(payload)
            elif status == "unavailable":
                # Missing data or weights fail every run alike: stop and say so once.
                store.release(h, owner)
                raise DataUnavailable(payload)
            else:
                store.fail(h, owner, payload)
                outcome.failed.append((h, cfg.label(), payload))
                _log(f"    failed {cfg.label()}: {payload}", quiet)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        for slot in slots:
            if slot.cfg is not None:
                store.release(slot.cfg.config_hash(), owner)
        _stop(slots)


def _replace_dead(slots: list[_Slot], start, store, owner: str, outcome, quiet: bool) -> None:
    """A worker that died (killed for memory, a crash in native code) fails its run and is replaced."""
    from .sweep import _log

    for index, slot in enumerate(slots):
        if slot.process.is_alive():
            continue
        code = slot.process.exitcode
        if slot.cfg is not None:
            reason = f"worker process died (exit code {code}) while training this run"
            store.fail(slot.cfg.config_hash(), owner, reason)
            outcome.failed.append((slot.cfg.config_hash(), slot.cfg.label(), reason))
            _log(f"    failed {slot.cfg.label()}: {reason}", quiet)
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
