"""CPU training on a busy machine: images/s of the adaptive thread policy (the default) against fixed counts.

    nice -n 10 env PYTHONPATH=src python benchmarks/busy_machine.py --data imagefolder:/work/shared/data/cifar10-sample

For each size and each load (quiet; one, then two cores taken by busy processes) it trains the same run
(ResNet-18 from scratch, `--limit-train` images, `--epochs`) with `--threads auto` and with every fixed count
from 1 to the cores, interleaved `--repeats` times, and prints the median images/s of each and the ratios issue
27 sets as targets: with one of two cores busy, auto >= 0.8x `--threads 1`; quiet, auto >= 0.95x `--threads`
= the cores. Ratios are measured side by side in one run; absolute figures on a shared machine are noise.

The busy processes are Python loops (nothing else), one per core taken; each ends by itself after
`--busy-seconds`, or as soon as this process is gone, and is killed when its load's runs are done. Measures;
asserts nothing. `--json PATH` writes every run's figures and thread changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Iterator

from resizelab.core.config import RunConfig
from resizelab.training.data import load_dataset
from resizelab.training.engine import train
from resizelab.training.resize import ResizeCache
from resizelab.training.threads import describe_changes, set_threads

# A loop that keeps one core busy; it looks every few milliseconds whether its time is up or its parent gone.
BUSY_LOOP = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextlib.contextmanager
def busy_cores(n: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
    """`n` processes, each keeping a core busy, for the block (and at most `seconds`); always ended after it."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid()), str(seconds)]))
        time.sleep(0.5 if n else 0.0)  # running before the first run starts setting up
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def one_run(cfg: RunConfig, dataset, cache: ResizeCache, cores: int) -> dict:
    set_threads(cores)  # the process's count: what --threads auto may use, as a fresh `resizelab run` would
    result = train(cfg, dataset=dataset, cache=cache, progress=False)
    ex = result.execution
    return {"images_per_second": result.images_per_second, "threads": ex["threads"], "policy": ex["threads_policy"],
            "changes": describe_changes(ex.get("thread_changes")), "steps_by_threads": ex.get("steps_by_threads")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--loads", default="0,1,2", help="cores taken by busy processes, comma-separated")
    parser.add_argument("--limit-train", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--busy-seconds", type=float, default=900.0, help="the most a busy process lives")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sizes = [int(s) for s in args.sizes.split(",")]
    loads = [int(n) for n in args.loads.split(",")]
    policies: list[int | None] = [None, *range(1, cores + 1)]
    dataset = load_dataset(args.data)
    cache = ResizeCache()
    rows, runs = [], []
    t0 = time.monotonic()
    for size in sizes:
        base = RunConfig(data=args.data, size=size, weights="none", epochs=args.epochs,
                         limit_train=args.limit_train, limit_test=100, device="cpu")
        # Resized once before the clocks start: every run below reads the same cached split.
        one_run(RunConfig(**{**base.to_dict(), "epochs": 1, "limit_train": 64, "threads": 1}), dataset, cache, cores)
        for load in loads:
            measured: dict = {p: [] for p in policies}
            with busy_cores(load, args.busy_seconds):
                for repeat in range(args.repeats):
                    # Each repeat starts with another policy: the first run after a load starts is not favoured.
                    for threads in policies[repeat % len(policies):] + policies[:repeat % len(policies)]:
                        run = one_run(RunConfig(**{**base.to_dict(), "threads": threads}), dataset, cache, cores)
                        measured[threads].append(run)
                        runs.append({"size_px": size, "busy_cores": load, "threads_asked": threads or "auto", **run})
            ips = {p: statistics.median(r["images_per_second"] for r in measured[p]) for p in policies}
            auto = measured[None]
            rows.append([f"{size}", f"{load} of {cores}", f"{ips[None]:.0f}"] + [f"{ips[p]:.0f}" for p in policies[1:]]
                        + [f"{ips[None] / ips[p]:.2f}" for p in policies[1:]]
                        + ["; ".join(r["changes"] or f"kept {r['threads']}" for r in auto)])
            print(f"# {size} px, {load} busy: " + ", ".join(f"{p or 'auto'}: {ips[p]:.0f} img/s" for p in policies),
                  file=sys.stderr, flush=True)
    header = (["size px", "cores busy", "auto img/s"] + [f"--threads {p} img/s" for p in policies[1:]]
              + [f"auto / {p}" for p in policies[1:]] + ["what auto did"])
    print(f"{args.data}, ResNet-18 (from scratch), {args.limit_train} train images, {args.epochs} epoch(s), "
          f"{cores} cores, median of {args.repeats}; {time.monotonic() - t0:.0f} s in all\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": args.data, "cores": cores, "limit_train": args.limit_train, "epochs": args.epochs,
                       "repeats": args.repeats, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
