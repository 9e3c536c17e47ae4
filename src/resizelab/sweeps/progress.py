"""What a sweep says while it works: one progress line after each run, the same for every executor."""

from __future__ import annotations

import time

from ..core.log import duration, logger, plural


class SweepProgress:
    """A sweep's progress line after each run: done, failed, remaining, and an ETA from this session's pace."""

    def __init__(self, name: str, total: int, quiet: bool = False):
        self.name, self.total, self.quiet = name, total, quiet
        self.done = self.failed = 0
        self.t_start = time.perf_counter()

    def left_to_another(self) -> None:
        """A run another process holds: not this sweep's to count."""
        self.total -= 1

    def finished(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.quiet:
            return
        finished = self.done + self.failed
        remaining = self.total - finished
        pace = (time.perf_counter() - self.t_start) / finished
        logger.info("sweep %s: %s done, %s failed, %s remaining, ETA %s", self.name, plural(self.done, "run"), self.failed,
                    remaining, duration(pace * remaining))
