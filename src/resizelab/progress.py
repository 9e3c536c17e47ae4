"""Progress for people and for batch logs: the "resizelab" logger, its stderr handler, and what a run
and a sweep report while they work.

On a terminal a run shows tqdm bars; when stderr is a file or a pipe (nohup, a batch scheduler) it
logs one line per epoch and, within an epoch, at most one line every `interval_seconds`, each with
an ETA, so the log of a job that is still running says how far it got. Messages go through the
`logging` module: `-q` keeps warnings and errors only, `-v` adds debug lines.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
import sys
import time
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .engine import Run
    from .results import EpochResult

logger = logging.getLogger("resizelab")

# Within an epoch, a headless log gets a line at most this often: enough to see a job is alive,
# few enough that a day-long run leaves a readable log.
LOG_INTERVAL_SECONDS = 30.0


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 run', '2 runs', '0 runs'."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def duration(seconds: float) -> str:
    """A duration for a person: '42 s', '3 min 05 s', '2 h 07 min'."""
    if seconds != seconds or seconds < 0:  # NaN: no estimate yet
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the moment of writing (tests and wrappers swap it), and
    goes through tqdm.write on a terminal so that a message does not tear a progress bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        # Assigned, not setStream(): that flushes the stream it replaces, which may be closed by now.
        self.stream = sys.stderr
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                tqdm.write(self.format(record), file=sys.stderr)
                return
            except Exception:  # noqa: BLE001 - a message must never be lost to the bar's bookkeeping
                pass
        super().emit(record)


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """The CLI's logging: messages on stderr, time-stamped when stderr is not a terminal (a batch log)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        logger.addHandler(handler)
    fmt = "%(message)s" if sys.stderr.isatty() else "%(asctime)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt, datefmt="%Y-%m-%d %H:%M:%S"))
    logger.setLevel(level)


@contextmanager
def console_logging(enabled: bool) -> Iterator[None]:
    """Progress asked for from Python: shown on stderr while the call lasts, unless the caller has configured
    logging (a handler on the `resizelab` logger or the root logger), whose choices then stand."""
    root = logging.getLogger()
    if not enabled or logger.handlers or root.handlers:
        yield
        return
    handler, level = _StderrHandler(), logger.level
    handler.setFormatter(logging.Formatter("%(message)s" if sys.stderr.isatty() else "%(asctime)s %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class TrainProgress:
    """What `train()` shows: a tqdm bar per epoch on a terminal, or log lines when stderr is not one.

    Reading the running loss syncs the host with the device, so it happens only when a line is
    written (once per epoch, and at most every `interval_seconds` within one), never per step.
    """

    def __init__(self, enabled: bool = True, interval_seconds: float = LOG_INTERVAL_SECONDS, terminal: bool | None = None):
        self.enabled = enabled
        self.interval_seconds = interval_seconds
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = None

    def start(self, run: "Run") -> None:
        self.run = run
        self.t_start = time.perf_counter()
        self.epoch_seconds: list[float] = []
        if self.enabled:
            cfg = run.config
            logger.info("training %s: %s x %s of %d images", cfg.label(), plural(cfg.epochs, "epoch"),
                        plural(run.steps_per_epoch, "step"), len(run.data))

    def begin_epoch(self) -> None:
        self.t_epoch = self._last_line = time.perf_counter()
        if self.enabled and self.terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self.run.steps_per_epoch, desc=f"epoch {self.run.epoch}/{self.run.config.epochs}",
                             file=sys.stderr, leave=False)

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update()
            return
        if not self.enabled:
            return
        if time.perf_counter() - self._last_line >= self.interval_seconds and self.run.steps_in_epoch < self.run.steps_per_epoch:
            run = self.run
            loss = run.running_loss()  # waits for the device, so the clock read next covers the steps counted
            self._last_line = now = time.perf_counter()
            elapsed = now - self.t_epoch
            done, total = run.steps_in_epoch, run.steps_per_epoch
            left_in_epoch = elapsed / done * (total - done)
            logger.info("epoch %d/%d step %d/%d: loss %.4f, %.0f img/s, ETA %s (epoch), %s (run)", run.epoch,
                        run.config.epochs, done, total, loss, run.images_in_epoch / elapsed,
                        duration(left_in_epoch), duration(left_in_epoch + self._epoch_estimate(elapsed / done * total)
                                                          * (run.config.epochs - run.epoch)))

    def end_epoch(self, result: "EpochResult") -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.epoch_seconds.append(result.seconds)
        if self.enabled:
            left = self.run.config.epochs - result.epoch
            logger.info("epoch %d/%d: loss %.4f, train accuracy %.2f%%, %.1f s, %.0f img/s, ETA %s", result.epoch,
                        self.run.config.epochs, result.train_loss, result.train_accuracy, result.seconds,
                        result.images / result.seconds if result.seconds > 0 else float("nan"),
                        f"{duration(self._epoch_estimate(0.0) * left)} to the end of training" if left else "0 s, evaluating")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _epoch_estimate(self, current: float) -> float:
        """Seconds per epoch: the later finished epochs (the first also fills the resize cache), else `current`."""
        done = self.epoch_seconds[1:] or self.epoch_seconds
        return sum(done) / len(done) if done else current


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
