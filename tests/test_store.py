import dataclasses
import subprocess
import sys
import time

import pytest

from resizelab.config import RunConfig
from resizelab.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.db") as s:
        yield s


CFG = RunConfig(data="synthetic", size=16, weights="none")


def test_claim_is_exclusive_while_the_owner_lives(store):
    store.register([CFG], sweep="s")
    h = CFG.config_hash()
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
    h = CFG.config_hash()
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
    h = CFG.config_hash()
    assert store.claim(h, "a:1:a")
    store.fail(h, "a:1:a", "diverged")
    row = store.get(h)
    assert row["status"] == "failed" and row["error"] == "diverged"
    assert not store.claim(h, "a:1:b")
    assert store.claim(h, "a:1:b", retry_failed=True)


def test_a_failed_write_leaves_nothing_half_done(store):
    from resizelab.engine import train

    cfg = RunConfig(data="synthetic", size=16, weights="none", epochs=1, limit_train=32, limit_test=20, precision="fp32")
    store.register([cfg])
    h = cfg.config_hash()
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
