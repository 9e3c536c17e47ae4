"""What a training run shows while it works.

On a terminal a run shows tqdm bars; when stderr is a file or a pipe (nohup, a batch scheduler) it
logs one line per epoch and, within an epoch, at most one line every `interval_seconds`, each with
an ETA, so the log of a job that is still running says how far it got.
"""

from __future__ import annotations

import sys
import time

from ..core.log import duration, logger, plural
from ..core.results import EpochResult

# Within an epoch, a headless log gets a line at most this often: enough to see a job is alive,
# few enough that a day-long run leaves a readable log.
LOG_INTERVAL_SECONDS = 30.0


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

    def start(self, run) -> None:
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

    def note(self, message: str) -> None:
        """A line about the run's execution (the thread policy's decisions), between the progress lines."""
        if not self.enabled:
            return
        if self.run.epoch == 0:
            logger.info("before step 1: %s", message)
        elif self._bar is not None:
            self._bar.write(f"epoch {self.run.epoch}/{self.run.config.epochs} step {self.run.steps_in_epoch}/"
                            f"{self.run.steps_per_epoch}: {message}", file=sys.stderr)
        else:
            logger.info("epoch %d/%d step %d/%d: %s", self.run.epoch, self.run.config.epochs, self.run.steps_in_epoch,
                        self.run.steps_per_epoch, message)

    def end_epoch(self, result: EpochResult) -> None:
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
