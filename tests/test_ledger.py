"""The machine's thread ledger: a second sweep on one machine takes the cores left, or waits for them (two processes)."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from resizelab.sweeps.ledger import ledger_path, thread_share

HOLDER = """
import sys, time
from pathlib import Path
from resizelab.sweeps.ledger import thread_share
with thread_share(int(sys.argv[1]), int(sys.argv[3]), sweep="other") as granted:
    print(granted, flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def _holder(threads: int, release, cores: int = 4) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(threads), str(release), str(cores)], stdout=subprocess.PIPE,
                             text=True, env=env)
    assert child.stdout.readline().strip() == str(threads)  # it holds its share now
    return child


def shares() -> dict[int, int]:
    """{pid: threads} as the ledger file holds them."""
    return {int(pid): fields[0] for pid, fields in json.loads(ledger_path().read_text()).items()}


def test_a_second_sweep_takes_the_cores_left(tmp_path):
    child = _holder(1, tmp_path / "release")
    said = []
    try:
        with thread_share(4, 4, say=said.append) as granted:
            assert granted == 3
            assert shares() == {child.pid: 1, os.getpid(): 3}
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
    assert granted == [] and len(said) == 1 and said[0].startswith(
        f"this machine's 4 cores are taken by other sweeps (process {child.pid} (sweep 'other', 4 threads, since ")
    assert said[0].endswith(" UTC)); waiting for a share ...")
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


SWEEP_HOLDER = """
import sys, time
from pathlib import Path
from resizelab.sweeps import runner
from resizelab.sweeps.plan import expand
runner.machine_cores = lambda: 2  # a 2-core machine, whatever this one has

def hold(result):
    print("trained", flush=True)
    while not Path(sys.argv[1]).exists():
        time.sleep(0.05)

plan = expand(dict(data="synthetic", weights="none", epochs=1, limit_train=32, limit_test=16, size=8, precision="fp32",
                   threads=1), name="first")
runner.run_sweep(plan, runner.SweepOptions(db=sys.argv[2], executor="local", progress=False), on_result=hold)
"""


@pytest.mark.slow
def test_two_sweeps_with_one_thread_each_compute_at_once_on_two_cores(tmp_path, monkeypatch, caplog):
    """Issue 25's done-when: the ledger holds what each sweep computes with, so neither waits for the other."""
    import logging

    from resizelab.sweeps import runner
    from resizelab.sweeps.plan import expand

    monkeypatch.setattr(runner, "machine_cores", lambda: 2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    first = subprocess.Popen([sys.executable, "-c", SWEEP_HOLDER, str(tmp_path / "release"), str(tmp_path / "first.db")],
                             stdout=subprocess.PIPE, text=True, env=env)
    seen = []
    try:
        assert first.stdout.readline().strip() == "trained"  # the first sweep holds its share now
        plan = expand(dict(data="synthetic", weights="none", epochs=1, limit_train=32, limit_test=16, size=8, precision="fp32",
                           threads=1), name="second")
        with caplog.at_level(logging.INFO, logger="resizelab"):
            outcome = runner.run_sweep(plan, runner.SweepOptions(db=str(tmp_path / "second.db"), executor="local",
                                                                 progress=False), on_result=lambda r: seen.append(shares()))
    finally:
        (tmp_path / "release").touch()
        first.wait(timeout=60)
    assert len(outcome.ran) == 1 and seen == [{first.pid: 1, os.getpid(): 1}]
    assert not any("waiting" in m or "taken by other sweeps" in m for m in caplog.messages)
    assert first.returncode == 0 and shares() == {}


def test_a_waiting_sweep_says_again_who_holds_the_cores_and_how_to_go_on(tmp_path):
    child = _holder(4, tmp_path / "release")
    said, granted = [], []

    def second() -> None:
        with thread_share(2, 4, say=said.append, poll_seconds=0.05, remind_seconds=0.2, exact=True) as n:
            granted.append(n)

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.9)
    (tmp_path / "release").touch()
    child.wait(timeout=30)
    waiter.join(timeout=30)
    assert granted == [2] and said[0].endswith("waiting for 2 free ...")
    reminders = said[1:]
    assert len(reminders) >= 2
    for line in reminders:
        assert line.startswith("still waiting for 2 free of this machine's 4 cores, 0 free, held by "
                               f"process {child.pid} (sweep 'other', 4 threads, since ")
        assert f"(ledger {ledger_path()})" in line and "stop the other sweep (kill PID), or Ctrl-C" in line


@pytest.mark.slow  # a real run (or sweep) on two threads: seconds quiet, tens of them on a loaded machine
def test_ctrl_c_while_waiting_for_cores_holds_nothing_and_says_how_to_resume(tmp_path):
    import signal
    import sqlite3

    from resizelab.sweeps.packed import machine_cores

    cores = machine_cores()
    child = _holder(cores, tmp_path / "release", cores=cores)
    db = tmp_path / "r.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "resizelab.cli", "sweep", "--data", "synthetic", "--weights", "none", "--epochs", "1",
           "--limit-train", "32", "--limit-test", "16", "--precision", "fp32", "--size", "8", "--executor", "local",
           "--db", str(db)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    said = []
    try:
        for line in proc.stderr:  # the sweep logs to stderr; it says once that it waits
            said.append(line)
            if "waiting for a share" in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").touch()
        child.wait(timeout=30)
    err = "".join(said) + err
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "run the same command again to resume" in err and "Traceback" not in err
    with sqlite3.connect(db) as c:
        assert [s for (s,) in c.execute("SELECT status FROM runs")] == ["pending"]  # registered, never claimed
    assert not any(p.name.endswith(f".tmp{proc.pid}") for p in ledger_path().parent.iterdir())


@pytest.mark.parametrize("damage", ["ledger is a folder", "lock is a folder", "machine folder is a file"])
def test_a_damaged_ledger_is_one_line_and_no_run_is_claimed(tmp_path, capsys, damage):
    import sqlite3

    from resizelab.cli import main

    path = ledger_path()
    if damage == "machine folder is a file":
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        path.parent.write_text("")
        named = path.parent
    else:
        named = path if damage == "ledger is a folder" else path.with_suffix(".lock")
        named.mkdir(parents=True)
    db = tmp_path / "r.db"
    code = main(["sweep", "--data", "synthetic", "--weights", "none", "--epochs", "1", "--limit-train", "32", "--limit-test",
                 "16", "--precision", "fp32", "--size", "8", "--executor", "local", "--db", str(db), "-q"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("resizelab: error:")]
    assert code == 2 and len(lines) == 1 and str(named) in lines[0] and "remove it" in lines[0], err
    assert "Traceback" not in err
    with sqlite3.connect(db) as c:
        assert [s for (s,) in c.execute("SELECT status FROM runs")] == ["pending"]
    if path.parent.is_dir():
        assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


def test_a_sweep_share_follows_the_threads_its_runs_adapt_to(tmp_path):
    """A run's policy taking fewer threads gives cores back to the ledger; taking more asks for what is free."""
    from resizelab.sweeps.ledger import SharedThreads

    child = _holder(1, tmp_path / "release")
    try:
        with thread_share(3, 4) as granted:
            assert granted == 3
            on_threads = SharedThreads(granted, 4)
            assert on_threads(1) == 1 and shares() == {child.pid: 1, os.getpid(): 1}
            other = _holder(1, tmp_path / "release-other")  # a new sweep takes one of the two cores given back
            try:
                assert on_threads(3) == 2 and shares() == {child.pid: 1, other.pid: 1, os.getpid(): 2}
            finally:
                (tmp_path / "release-other").touch()
                other.wait(timeout=30)
            assert on_threads(3) == 3
    finally:
        (tmp_path / "release").touch()
        child.wait(timeout=30)


@pytest.mark.slow  # a real run (or sweep) on two threads: seconds quiet, tens of them on a loaded machine
def test_a_run_in_a_sweep_gives_back_the_threads_its_policy_dropped(tmp_path):
    import torch

    from resizelab.core.config import RunConfig
    from resizelab.sweeps.ledger import SharedThreads
    from resizelab.training.engine import Run
    from resizelab.training.threads import MachineLoad

    torch.set_num_threads(2)
    with thread_share(2, 4) as granted:
        run = Run(RunConfig(data="synthetic:128:16", size=8, epochs=1, weights="none", precision="fp32", batch_size=16,
                            device="cpu"), on_threads=SharedThreads(granted, 4), load=MachineLoad("/nonexistent")).setup()
        run.begin_epoch()
        for _ in range(run.steps_per_epoch):
            images = run.step()
            # Two threads ten times slower than one: another process holds a core.
            run.adapt_threads((0.02 if torch.get_num_threads() == 2 else 0.002) * images, images)
        assert torch.get_num_threads() == 1 and shares() == {os.getpid(): 1}


def test_more_threads_than_cores_is_said_in_one_line(caplog, monkeypatch):
    import logging

    from resizelab.core.config import RunConfig
    from resizelab.sweeps import runner

    monkeypatch.setattr(runner, "machine_cores", lambda: 2)
    todo = [RunConfig(data="synthetic", size=s, device="cpu", threads=4) for s in (8, 16)]
    options = runner.SweepOptions(executor="packed", pack=2)
    assert runner.threads_wanted(options, todo, 2) == (8, 4, "2 runs at once x 4 torch threads")
    with caplog.at_level(logging.INFO, logger="resizelab"):
        with runner.machine_share(options, todo, quiet=False, sweep="over") as granted:
            assert granted == 8 and shares() == {os.getpid(): 8}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["this sweep computes with 2 runs at once x 4 torch threads = 8 threads on this machine's 2 cores: "
                        "threads beyond the cores wait for each other (BENCHMARKS.md, \"CPU sweeps\"); fewer threads or a "
                        "smaller --pack avoid it"]
    quiet = [RunConfig(data="synthetic", size=8, device="cpu", threads=1)]
    assert runner.threads_wanted(runner.SweepOptions(executor="local"), quiet, 2) == (1, 1, "1 torch thread")
    assert runner.threads_wanted(runner.SweepOptions(executor="local"), [RunConfig(data="synthetic", device="cpu")], 2)[0] == 2
