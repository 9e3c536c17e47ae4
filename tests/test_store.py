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
    store.register([CFG])
    h = CFG.config_hash()
    store.claim(h, "a:1:a")

    class Broken:
        config_hash = h
        epochs = []
        evals = [type("E", (), {"size_px": 16, "interpolation": "bilinear", "accuracy": 50.0, "per_class_accuracy": {}})()]
        def to_json_dict(self):
            raise RuntimeError("crash while serialising")

    with pytest.raises(RuntimeError):
        store.complete(Broken(), "a:1:a")
    assert store.get(h)["status"] == "running" and store.evals(h) == []
