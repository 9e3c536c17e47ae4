"""Messages for people and for batch logs: the "resizelab" logger, its stderr handler, and the words
(plurals, durations) every layer writes them with.

Messages go through the `logging` module: `-q` keeps warnings and errors only, `-v` adds debug lines;
when stderr is not a terminal (nohup, a batch scheduler) each line is time-stamped.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

logger = logging.getLogger("resizelab")


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


class StderrHandler(logging.StreamHandler):
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
    handler = next((h for h in logger.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
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
    handler, level = StderrHandler(), logger.level
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
