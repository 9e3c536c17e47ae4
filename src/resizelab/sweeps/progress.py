"""What a sweep says while it works: one progress line after each run, the same for every executor."""

from __future__ import annotations

import time

from ..core.log import duration, logger, plural


# The size a run at the native size is counted at when weighing runs (CIFAR's; a guess for other data).
NATIVE_PX = 32


def run_work(cfg) -> float:
    """A run's relative cost: a CNN's multiply-accumulates scale with the pixels of its input, times its epochs, so
    a 64 px run weighs four 32 px runs (the seed preset's 64 px run is not timed at the 32 px run's pace)."""
    size = cfg.size if isinstance(cfg.size, int) else NATIVE_PX
    return float(size * size * max(cfg.epochs, 1))


class SweepProgress:
    """A sweep's progress line after each run: done, failed, remaining, and an ETA from this session's pace per unit
    of work (run_work: pixels x epochs, as MACs scale), not per run."""

    def __init__(self, name: str, total: int, quiet: bool = False, total_work: float | None = None):
        self.name, self.total, self.quiet = name, total, quiet
        self.done = self.failed = 0
        self.work_total = float(total) if total_work is None else total_work
        self.work_done = 0.0
        self.t_start = time.perf_counter()

    def left_to_another(self, work: float = 1.0) -> None:
        """A run another process holds: not this sweep's to count."""
        self.total -= 1
        self.work_total -= work

    def finished(self, ok: bool, work: float = 1.0) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.work_done += work
        if self.quiet:
            return
        remaining = self.total - self.done - self.failed
        pace = (time.perf_counter() - self.t_start) / max(self.work_done, 1e-9)
        logger.info("sweep %s: %s done, %s failed, %s remaining, ETA %s", self.name, plural(self.done, "run"), self.failed,
                    remaining, duration(pace * max(self.work_total - self.work_done, 0.0)))
