"""The machine's thread ledger: a second sweep on one machine takes the cores left, or waits for them (two processes)."""

import json
import os
import subprocess
import sys
import threading
import time

from resizelab.sweeps.ledger import ledger_path, thread_share

HOLDER = """
import sys, time
from pathlib import Path
from resizelab.sweeps.ledger import thread_share
with thread_share(int(sys.argv[1]), 4) as granted:
    print(granted, flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def _holder(threads: int, release) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(threads), str(release)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == str(threads)  # it holds its share now
    return child


def test_a_second_sweep_takes_the_cores_left(tmp_path):
    child = _holder(1, tmp_path / "release")
    said = []
    try:
        with thread_share(4, 4, say=said.append) as granted:
            assert granted == 3
            assert {pid: n for pid, (n, _) in json.loads(ledger_path().read_text()).items()} == {str(child.pid): 1, str(os.getpid()): 3}
    finally:
        (tmp_path / "release").touch()
        child.wait(timeout=30)
    assert said == ["other sweeps on this machine compute with 1 of its 4 cores: this one takes the 3 left"]
    assert json.loads(ledger_path().read_text()) == {}  # both gone, both entries removed


def test_a_second_sweep_waits_while_the_cores_are_taken_and_says_so(tmp_path):
    child = _holder(4, tmp_path / "release")
    said, granted = [], []

    def second() -> None:
        with thread_share(4, 4, say=said.append, poll_seconds=0.05) as n:
            granted.append((n, time.monotonic()))

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.5)
    assert granted == [] and said == [f"this machine's 4 cores are taken by other sweeps (process {child.pid}: 4 threads); "
                                      "waiting for a share ..."]
    released = time.monotonic()
    (tmp_path / "release").touch()
    child.wait(timeout=30)
    waiter.join(timeout=30)
    assert granted and granted[0][0] == 4 and granted[0][1] >= released and len(said) == 1


def test_the_share_of_a_process_that_is_gone_is_given_back(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    # A sweep killed with -9 left its entry; another's pid is alive again, but as a process started later.
    ledger_path().write_text(json.dumps({str(gone.pid): [4, "1"], str(os.getpid()): [4, "1"]}))
    said = []
    with thread_share(4, 4, say=said.append) as granted:
        assert granted == 4 and said == []
    zombie = _holder(4, tmp_path / "never")
    os.kill(zombie.pid, 9)  # killed, not yet reaped: a zombie holds no cores
    time.sleep(0.2)
    with thread_share(4, 4, say=said.append) as granted:
        assert granted == 4 and said == []
    zombie.wait()
    ledger_path().write_text("{not json")  # damaged: read as empty, not an error
    with thread_share(2, 4, say=said.append) as granted:
        assert granted == 2


def test_a_sweep_computes_with_the_share_it_was_given(tmp_path, monkeypatch, caplog):
    import logging

    import torch

    from resizelab.sweeps import runner
    from resizelab.sweeps.plan import expand
    from resizelab.sweeps.runner import SweepOptions, run_sweep

    monkeypatch.setattr(runner, "machine_cores", lambda: 4)
    child = _holder(3, tmp_path / "release")
    threads = torch.get_num_threads()
    plan = expand(dict(data="synthetic", weights="none", epochs=1, limit_train=32, limit_test=16, size=8, precision="fp32"),
                  name="shared")
    try:
        with caplog.at_level(logging.INFO, logger="resizelab"):
            outcome = run_sweep(plan, SweepOptions(db=str(tmp_path / "r.db"), executor="local", progress=False))
    finally:
        (tmp_path / "release").touch()
        child.wait(timeout=30)
    (result,) = outcome.ran
    assert result.execution["threads"] == 1 and torch.get_num_threads() == threads
    assert "other sweeps on this machine compute with 3 of its 4 cores: this one takes the 1 left" in caplog.messages
