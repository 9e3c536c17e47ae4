"""One sweep that meets each way a run can end badly, for every executor to go through: a run that fails
(diverges), a run taken over by another process while it trains (its lease lost), and a Ctrl-C while the
third run is handed out. Each executor must end each run the same way and say so in the same words."""

from __future__ import annotations

import _thread
import logging
import re
import sqlite3
import threading
import time

from resizelab.sweeps.plan import expand
from resizelab.sweeps.runner import SweepOptions, run_sweep
from resizelab.training.planning import run_hash

BASE = {"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 96, "limit_test": 32, "precision": "fp32",
        "size": 16}
# Run 1 diverges at once; run 2 trains long enough (epochs) to be taken over while it does; run 3 is interrupted.
VARIANTS = [{"lr": 10.0, "momentum": 0.99}, {"epochs": 40}, {"epochs": 40, "size": 8}]
OTHER = "elsewhere:7:x"  # the process that "takes over" run 2, as a sweep that thought this one dead would
# Long enough for the scenario (the takeover, then run 3 handed out and interrupted, takes seconds), short enough
# that a sweep which somehow missed its Ctrl-C takes run 2 back and fails the test's checks instead of waiting an hour.
FOREIGN_LEASE_SECONDS = 60
# A Ctrl-C not acted on within this long is sent again (see interrupt_until).
RESEND_SECONDS = 15


def interrupt_until(done: threading.Event, handled=lambda: False, every: float = RESEND_SECONDS) -> None:
    """Ctrl-C the main thread, again every `every` seconds until `done` is set (the sweep returned) or `handled()`.
    One `interrupt_main` can be lost: one that lands while a gc callback runs (Hypothesis installs one) is
    swallowed as an unraisable exception, and the sweep would then run, or wait, to its natural end."""
    while not done.is_set():
        _thread.interrupt_main()
        deadline = time.monotonic() + every
        while time.monotonic() < deadline and not done.is_set():
            if handled():
                return
            done.wait(0.1)


def stop_interrupting(done: threading.Event, sender: threading.Thread) -> None:
    """Stop `interrupt_until` in `sender` and take the Ctrl-C it may have sent just before it saw `done`, so that a
    late one does not land in whatever runs next (pytest's own teardown)."""
    done.set()
    for _ in range(3):
        try:
            sender.join()
            time.sleep(0.05)  # a simulated Ctrl-C still pending is acted on here, between bytecodes
            return
        except KeyboardInterrupt:
            pass


def _status(db: str, h: str) -> tuple[str | None, str | None]:
    try:
        with sqlite3.connect(db, timeout=30) as c:
            row = c.execute("SELECT status, owner FROM runs WHERE config_hash = ?", (h,)).fetchone()
    except sqlite3.OperationalError:
        return None, None
    return (row[0], row[1]) if row else (None, None)


def run_scenario(db: str, executor: str, caplog, **options) -> tuple:
    """Run the sweep on `executor`; (outcome, the three hashes, store rows, the lines said, with what differs
    by executor taken out: the ETA and the worker a run went to)."""
    plan = expand(BASE, variants=VARIANTS, name="ends")
    hashes = [run_hash(c) for c in plan.configs]
    stop = threading.Event()

    def other_process():
        # Take run 2 over once it trains; Ctrl-C once run 3 is handed out and run 1 has failed (a packed executor
        # trains runs 1 and 2 side by side, so run 3 can start before run 1 ends).
        while not stop.is_set() and _status(db, hashes[1])[0] != "running":
            time.sleep(0.05)
        time.sleep(0.5)
        with sqlite3.connect(db, timeout=30) as c:
            c.execute("UPDATE runs SET owner = ?, lease_expires = ? WHERE config_hash = ?",
                      (OTHER, time.time() + FOREIGN_LEASE_SECONDS, hashes[1]))
        # Run 3 is claimed (stored as running) a moment before its "[3/3]" line is said: a Ctrl-C between the
        # two gives it back unsaid, which is right but leaves nothing of its start to check. Likewise run 1 is
        # stored as failed a moment before its failure and the sweep's count are said (packed can fail it after
        # run 3 started): wait for the count, the last of those words, not for the row.
        def said(start: str) -> bool:
            return any(r.getMessage().startswith(start) for r in list(caplog.records))

        while not stop.is_set() and (_status(db, hashes[2])[0] != "running" or _status(db, hashes[0])[0] != "failed"
                                     or not said("[3/3] ") or not said("sweep ends: 0 runs done, 1 failed")):
            time.sleep(0.05)
        interrupt_until(stop, lambda: _status(db, hashes[2])[0] != "running")

    watcher = threading.Thread(target=other_process, daemon=True)
    watcher.start()
    with caplog.at_level(logging.INFO, logger="resizelab"):
        try:
            outcome = run_sweep(plan, SweepOptions(db=db, executor=executor, lease_seconds=3, progress=False, **options))
        finally:
            stop_interrupting(stop, watcher)
    said = [re.sub(r", ETA .*$", "", re.sub(r" \((worker|ray task) \d+/\d+\)$", "", r.getMessage())) for r in caplog.records]
    return outcome, hashes, [_status(db, h) for h in hashes], said


def check_the_same_ends(outcome, hashes, rows, said) -> None:
    labels = list(said)
    assert [h for h, _, _ in outcome.failed] == [hashes[0]] and "diverged" in outcome.failed[0][2], outcome.failed
    assert outcome.held_elsewhere == [hashes[1]] and outcome.ran == []
    assert isinstance(outcome.interrupted, KeyboardInterrupt)
    # Stored: the failure with its reason, the taken-over run left to its new owner, the interrupted run given back.
    assert rows == [("failed", None), ("running", OTHER), ("pending", None)], rows
    # Said: each run's start, the failure, the takeover, and the sweep's progress after the failure.
    assert any(re.fullmatch(r"\[1/3\] .* \.\.\.", line) for line in labels), labels
    assert any(line.startswith("    ") and ": failed: " in line and "diverged" in line for line in labels), labels
    assert any(line.startswith("    ") and f"taken over by {OTHER}" in line for line in labels), labels
    # (How many remain depends on whether the takeover or the failure came first: packed trains both at once.)
    assert any(re.fullmatch(r"sweep ends: 0 runs done, 1 failed, [12] remaining", line) for line in labels), labels
    assert any(line.startswith("[3/3] ") for line in labels), labels
