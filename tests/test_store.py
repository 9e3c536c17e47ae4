import dataclasses
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from resizelab.core.config import RunConfig
from resizelab.store.database import Store
from resizelab.training.planning import run_hash


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.db") as s:
        yield s


CFG = RunConfig(data="synthetic", size=16, weights="none")


def test_claim_is_exclusive_while_the_owner_lives(store):
    store.register([CFG], sweep="s")
    h = run_hash(CFG)
    assert store.claim(h, "me:1:a")
    # Another live owner (this very process, under another id) cannot take it.
    import os, socket
    other = f"{socket.gethostname()}:{os.getpid()}:b"
    assert not store.claim(h, other)
    store.release(h, "me:1:a")
    assert store.get(h)["status"] == "pending"
    assert store.claim(h, other)


def test_a_dead_owner_or_a_lapsed_lease_frees_the_run(store):
    import socket
    store.register([CFG])
    h = run_hash(CFG)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert store.claim(h, f"{socket.gethostname()}:{dead.pid}:x")
    assert store.claim(h, "elsewhere:1:y")  # the dead local owner is noticed at once
    assert not store.claim(h, "elsewhere:2:z")  # a remote owner keeps it until its lease lapses
    store.conn.execute("UPDATE runs SET lease_expires = ?", (time.time() - 1,))
    assert store.claim(h, "elsewhere:2:z")
    assert store.get(h)["attempts"] == 3


def test_done_and_failed_runs_are_not_claimed_again(store):
    store.register([CFG])
    h = run_hash(CFG)
    assert store.claim(h, "a:1:a")
    store.fail(h, "a:1:a", "diverged")
    row = store.get(h)
    assert row["status"] == "failed" and row["error"] == "diverged"
    assert not store.claim(h, "a:1:b")
    assert store.claim(h, "a:1:b", retry_failed=True)


def test_a_failed_write_leaves_nothing_half_done(store):
    from resizelab.training.engine import train

    cfg = RunConfig(data="synthetic", size=16, weights="none", epochs=1, limit_train=32, limit_test=20, precision="fp32")
    store.register([cfg])
    h = run_hash(cfg)
    store.claim(h, "a:1:a")
    result = train(cfg, progress=False)
    # The second evaluation cannot be written: the failure comes after the epochs, the attempt row and the
    # first evaluation were inserted, inside the transaction.
    second = dataclasses.replace(result.evals[0], size_px=8, per_class_accuracy={"cat": object()})
    result.evals.append(second)
    with pytest.raises(TypeError):
        store.complete(result, "a:1:a")
    row = store.get(h)
    assert row["status"] == "running" and row["result_json"] is None
    assert store.evals(h) == [] and store.attempts(h) == []
    assert store.conn.execute("SELECT COUNT(*) FROM epochs WHERE config_hash = ?", (h,)).fetchone()[0] == 0
    result.evals.pop()
    store.complete(result, "a:1:a")  # the same result, writable, goes in whole
    assert store.get(h)["status"] == "done" and len(store.evals(h)) == 1 and len(store.attempts(h)) == 1


# --- one lease protocol ------------------------------------------------------------------------

TINY = RunConfig(data="synthetic", size=8, weights="none", epochs=1, limit_train=48, limit_test=24, precision="fp32")


def test_a_stale_owners_complete_fail_and_release_are_refused(store):
    from resizelab.training.engine import train
    from resizelab.store.database import LeaseLost

    store.register([TINY])
    h = run_hash(TINY)
    assert store.claim(h, "stale:1:a")
    result = train(TINY, progress=False)
    store.conn.execute("UPDATE runs SET lease_expires = ?", (time.time() - 1,))  # the stale owner stalled past its lease
    assert store.claim(h, "fresh:2:b")
    with pytest.raises(LeaseLost, match="no longer holds"):
        store.complete(result, "stale:1:a")
    with pytest.raises(LeaseLost):
        store.fail(h, "stale:1:a", "late failure")
    assert store.release(h, "stale:1:a") is False
    row = store.get(h)
    assert (row["status"], row["owner"], row["result_json"]) == ("running", "fresh:2:b", None) and store.attempts(h) == []
    store.complete(result, "fresh:2:b")  # the holder's result goes in
    assert store.get(h)["status"] == "done" and len(store.attempts(h)) == 1


@pytest.mark.slow
def test_a_run_whose_lease_is_taken_over_stops_within_one_renewal(tmp_path, one_thread):
    import threading

    from resizelab.sweeps.claim import run_claimed

    db = tmp_path / "r.db"
    cfg = RunConfig(data="synthetic", size=8, weights="none", epochs=50, batch_size=8, limit_train=400, limit_test=24, precision="fp32")
    lease_seconds = 3.0  # renewed every second
    with Store(db) as store:
        store.register([cfg])
    h = run_hash(cfg)
    taken = {}

    def take_over():
        with Store(db) as other:
            while other.get(h)["status"] != "running":
                time.sleep(0.05)
            time.sleep(1.5)  # training is under way
            other.conn.execute("UPDATE runs SET lease_expires = ? WHERE config_hash = ?", (time.time() - 1, h))
            assert other.claim(h, "elsewhere:7:x", 600)
            taken["at"] = time.monotonic()

    thief = threading.Thread(target=take_over)
    thief.start()
    with Store(db) as store:
        attempt = run_claimed(store, cfg, "me:1:a", lease_seconds, progress=False)
    stopped = time.monotonic()
    thief.join()
    assert attempt.status == "lost" and "elsewhere:7:x" in attempt.reason
    # One renewal period (1 s) plus the step under way and a busy machine's slack; 50 epochs would take minutes.
    assert stopped - taken["at"] < lease_seconds / 3 + 3.0
    with Store(db) as store:
        row = store.get(h)
        assert (row["status"], row["owner"]) == ("running", "elsewhere:7:x") and store.attempts(h) == []


# --- a database that cannot be used is one line -------------------------------------------------

def _cli(args, *, user=None, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "resizelab.cli", *args], capture_output=True, text=True, timeout=300, user=user,
                          env=dict(os.environ, **(env or {})))


SWEEP = ["sweep", "--data", "synthetic", "--size", "8", "--epochs", "1", "--limit-train", "40", "--limit-test", "20",
         "--weights", "none", "--precision", "fp32", "--quiet"]


@pytest.mark.parametrize("make, message", [
    (lambda p: ":memory:", "would keep nothing"),
    (lambda p: (p / "adir").mkdir() or str(p / "adir"), "is a folder"),
    (lambda p: (p / "rand.db").write_bytes(bytes(range(256)) * 20) and str(p / "rand.db"), "is not a resizelab results store"),
])
def test_a_db_that_is_not_a_store_is_one_line_and_exit_2(tmp_path, make, message):
    from resizelab.cli import main

    db = make(tmp_path)
    for command in (SWEEP, ["report"]):
        code = main([*command, "--db", db])
        assert code == 2
    with pytest.raises(Exception, match=message) as info:
        Store(db)
    assert "\n" not in str(info.value)


def test_a_read_only_db_is_one_line(capsys):
    import contextlib
    import tempfile
    from pathlib import Path

    from resizelab.cli import main

    # Not under pytest's tmp_path: its parents are private to root, and the command may run as nobody (below).
    tmp = tempfile.TemporaryDirectory(prefix="resizelab-ro-")
    tmp_path = Path(tmp.name)
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "r.db"
    Store(db).close()
    os.chmod(db, 0o444)
    os.chmod(folder, 0o555)

    @contextlib.contextmanager
    def unprivileged():
        # root writes through any permission bit, so as root the command runs as nobody (effective uid), for whom
        # the file really is read-only; everything it imports is imported already.
        if os.geteuid() != 0:
            yield
            return
        import resizelab.report.writer  # noqa: F401  (nobody cannot read the interpreter's own folders to import it later)
        import resizelab.core.stats  # noqa: F401

        os.chmod(tmp_path, 0o755)
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)

    try:
        with unprivileged():
            code = main([*SWEEP, "--db", str(db)])
    finally:
        os.chmod(folder, 0o755)
        tmp.cleanup()
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "read-only" in line or "cannot be opened" in line, line


def test_a_locked_db_is_one_line_after_the_timeout(tmp_path):
    from resizelab.store.database import StoreError

    db = tmp_path / "r.db"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process .waited 0.3 s") as info:
            with Store(db, timeout=0.3) as store:
                store.register([TINY])
        assert "\n" not in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_full_disk_while_storing_keeps_the_result_beside_the_db(store, tmp_path):
    import json

    from resizelab.training.engine import train
    from resizelab.store.database import ResultNotStored

    store.register([TINY])
    h = run_hash(TINY)
    assert store.claim(h, "a:1:a")
    result = train(TINY, progress=False)
    # SQLite's own "database or disk is full": the file may not grow by a single page.
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(ResultNotStored, match="was not stored .*disk is full.*saved to") as info:
        store.complete(result, "a:1:a")
    saved = str(info.value).rsplit("saved to ", 1)[1]
    assert os.path.dirname(saved) == str(tmp_path) and json.loads(open(saved).read())["config_hash"] == h
    assert json.loads(open(saved).read())["test_accuracy"] == result.test_accuracy
    assert store.get(h)["result_json"] is None and store.attempts(h) == []  # nothing half-written


def test_an_interrupted_forced_rerun_keeps_the_finished_result_visible(store, tmp_path):
    from resizelab.api import load_runs
    from resizelab.training.engine import train
    from resizelab.sweeps.claim import run_claimed

    store.register([TINY])
    h = run_hash(TINY)
    assert run_claimed(store, TINY, "first:1:a", progress=False).status == "done"
    before = store.get(h)

    def interrupted(cfg, **kwargs):
        train(cfg, **kwargs)  # trains, then Ctrl-C arrives before the result is stored
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_claimed(store, TINY, "second:1:b", force=True, train_fn=interrupted, progress=False)
    after = store.get(h)
    # Back to done with the result it had, not a pending row that a report would count as unfinished.
    assert (after["status"], after["owner"], after["result_json"], after["test_accuracy"]) == (
        "done", None, before["result_json"], before["test_accuracy"])
    assert len(store.attempts(h)) == 1
    pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")
    assert list(load_runs(tmp_path / "r.db")["config_hash"]) == [h]


def test_another_programs_database_with_a_runs_table_is_not_called_an_older_store(tmp_path, capsys):
    """A `runs` table alone does not make a resizelab store: one without its columns is another program's,
    whatever its user_version, and is named so rather than "written by an older resizelab"."""
    from resizelab.cli import main
    from resizelab.store.database import StoreError

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT, started TEXT)")
        conn.execute("INSERT INTO runs (name) VALUES ('nightly')")
    before = other.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError) as info:
            Store(other, readonly=readonly)
        message = str(info.value)
        assert "is not a resizelab store" in message and "older" not in message and "\n" not in message
    assert main(["report", "--db", str(other), "--out", str(tmp_path / "rep")]) == 2
    assert "is not a resizelab store" in capsys.readouterr().err
    assert other.read_bytes() == before  # nothing written into it
