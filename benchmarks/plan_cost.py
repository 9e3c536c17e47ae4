"""Wall time of `resizelab sweep --dry-run` for a 100-run grid and a 75,000-run grid over one dataset.

    PYTHONPATH=src python benchmarks/plan_cost.py --data imagefolder:../shared/data/cifar10-sample

Each dry run is a fresh process (imports included, as a person typing the command waits for them), with its
output thrown away and a store that does not exist. Targets from issue 21: 100 runs in <= 3 s, 75,000 runs
(`--yes`) in <= 60 s. Prints wall and CPU seconds (user + system) of each. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

GRIDS = {
    # 5 sizes x 4 learning rates x 5 seeds
    "100 runs": ["--size", "8,16,24,32,40", "--lr", "0.001,0.002,0.003,0.004", "--seeds", "5"],
    # 50 sizes x 50 learning rates x 30 seeds
    "75,000 runs": ["--size", ",".join(str(s) for s in range(8, 58)),
                    "--lr", ",".join(f"{0.001 * i:.3f}" for i in range(1, 51)), "--seeds", "30", "--yes"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="imagefolder:../shared/data/cifar10-sample")
    parser.add_argument("--repeats", type=int, default=1, help="dry runs per grid (the fastest is the figure; all are printed)")
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        print(f"data {args.data}; one process per dry run, imports included")
        print(f"{'grid':>12}  {'seconds':>8}  {'CPU s':>6}  all (wall)")
        for name, flags in GRIDS.items():
            times, cpu = [], []
            for _ in range(args.repeats):
                command = [sys.executable, "-m", "resizelab.cli", "sweep", "--dry-run", "--quiet", "--data", args.data,
                           "--weights", "none", "--db", os.path.join(scratch, "none.db"), *flags]
                start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
                if done.returncode != 0:
                    sys.exit(f"{name}: exit {done.returncode}: {done.stderr.strip()}")
            # CPU seconds too: on a shared machine the wall time is mostly other people's load.
            print(f"{name:>12}  {min(times):8.1f}  {min(cpu):6.1f}  {' '.join(f'{t:.1f}' for t in times)}")


if __name__ == "__main__":
    main()
