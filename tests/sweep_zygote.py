"""A process that imports torch and resizelab once, then forks a fresh sweep process on request.

Killing a sweep with SIGKILL at many random points is what the crash tests need; starting Python and
importing torch for each point would cost seconds apiece, a fork costs milliseconds. One tiny training
runs here first, on one intra-op thread (so no thread pool is forked), so that each child finds its
kernels compiled and the synthetic data made, and spends its time where the kills should fall.
Protocol on stdin/stdout, one line each:
    fork DB KEY=VALUE...   -> "pid N"   (a child runs the sweep of `PLAN` with those overrides into DB)
    wait N                 -> "exit S"  (reaps child N; S is its wait status)
"""

from __future__ import annotations

import os
import sys

import torch

torch.set_num_threads(1)

from resizelab.cli import main  # noqa: E402  (after the thread setting, before any fork)
from resizelab.core.config import RunConfig  # noqa: E402
from resizelab.training.engine import train  # noqa: E402
from resizelab.training.resize import ResizeCache  # noqa: E402
import resizelab.sweeps.runner  # noqa: E402,F401

train(RunConfig(data="synthetic", size=8, weights="none", epochs=1, batch_size=16, limit_train=64, limit_test=16, precision="fp32"),
      cache=ResizeCache(disk=False), progress=False)


def serve() -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "fork":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    # One sweep, as `resizelab sweep` runs it; stdio quietened so the protocol stays clean.
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                    code = main(["sweep", "--db", words[1], "--quiet", *words[2:]])
                finally:
                    os._exit(code)
            print(f"pid {pid}", flush=True)
        elif words[0] == "wait":
            _, status = os.waitpid(int(words[1]), 0)
            print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve()
