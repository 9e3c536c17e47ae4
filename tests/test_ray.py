"""The Ray executor against a real local Ray instance (two CPUs): same results as local, a killed worker's
run retried and stored once, a killed driver resumed by the same command. Ray is an optional extra; CI
installs it (Makefile), elsewhere these tests are skipped when it is missing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from resizelab.sweeps.plan import expand
from resizelab.sweeps.runner import SweepOptions, run_sweep  # noqa: E402

pytestmark = pytest.mark.slow  # a real Ray instance: the fault tests of the full run

SRC = str(Path(__file__).parents[1] / "src")
FAST = {"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 96, "limit_test": 32, "precision": "fp32"}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for the module (starting one takes several seconds). Its workers import this
    checkout (absolute PYTHONPATH: they start in whatever folder their driver runs in)."""
    cache = tmp_path_factory.mktemp("ray-cache")  # also what tells this instance's workers from any other's
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RESIZELAB_CACHE_DIR", str(cache))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address, f"RESIZELAB_CACHE_DIR={cache}"
    finally:
        ray.shutdown()


def _done_attempts(db) -> dict:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT config_hash, COUNT(*) FROM attempts WHERE status = 'done' GROUP BY config_hash"))


def _statuses(db) -> dict:
    with sqlite3.connect(db) as c:
        try:
            return {h: (s, f) for h, s, f in c.execute("SELECT config_hash, status, finished_at FROM runs")}
        except sqlite3.OperationalError:
            return {}


def test_ray_executor_matches_local(tmp_path, ray_cluster):
    plan = expand(dict(FAST, size=8, limit_train=160), {"lr": [0.01, 10.0]}, name="r")
    # A Ray task of 2 CPUs runs 2 threads (Ray sets OMP_NUM_THREADS); the local run does too here, so both sum alike.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = run_sweep(plan, SweepOptions(db=str(tmp_path / "local.db"), progress=False), quiet=True)
    finally:
        torch.set_num_threads(threads)
    remote = run_sweep(plan, SweepOptions(db=str(tmp_path / "ray.db"), executor="ray", progress=False), quiet=True)
    assert len(remote.ran) == 1 and remote.ran[0].test_accuracy == local.ran[0].test_accuracy
    assert remote.ran[0].config_hash == local.ran[0].config_hash
    assert len(remote.failed) == 1 and "diverged" in remote.failed[0][2]
    assert set(_statuses(tmp_path / "ray.db")) == set(_statuses(tmp_path / "local.db"))


def _ray_task_pids(marker: str, name: str = "ray::train_remote") -> list[int]:
    """Worker processes of this module's Ray instance executing a task: Ray names them after it (their title,
    read from /proc), and they inherited `marker` in their environment (another suite's workers did not)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").startswith(name) \
                        and marker.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_and_its_run_stored_once(tmp_path, ray_cluster):
    db = tmp_path / "r.db"
    plan = expand(dict(FAST, size=8), name="k")
    killed = []

    def kill_the_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for pid in _ray_task_pids(ray_cluster[1]):
                os.kill(pid, signal.SIGKILL)  # mid-run: importing, training or evaluating
                killed.append(pid)
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    outcome = run_sweep(plan, SweepOptions(db=str(db), executor="ray", progress=False), quiet=True)
    killer.join()
    assert killed, "no worker was seen running the task"
    assert len(outcome.ran) == 1 and not outcome.failed
    (h,) = _statuses(db)
    assert _statuses(db)[h][0] == "done" and _done_attempts(db) == {h: 1}
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM attempts WHERE status = 'failed'").fetchone()[0] == 0


def test_a_killed_driver_is_resumed_by_the_same_command(tmp_path, ray_cluster):
    db = tmp_path / "r.db"
    command = [sys.executable, "-m", "resizelab.cli", "sweep", "--executor", "ray", "--ray-address", ray_cluster[0], "--data", "synthetic",
               "--weights", "none", "--epochs", "1", "--limit-train", "96", "--limit-test", "32", "--precision", "fp32",
               "--size", "8,12", "--db", str(db), "--quiet"]
    env = dict(os.environ, PYTHONPATH=SRC)
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(s == "done" for s, _ in _statuses(db).values()):
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)  # mid-sweep: one run stored, the next one in flight on a worker
    driver.wait()
    before = {h: v for h, v in _statuses(db).items() if v[0] == "done"}
    assert len(before) == 1
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    after = _statuses(db)
    assert len(after) == 2 and all(s == "done" for s, _ in after.values())
    assert all(after[h] == v for h, v in before.items())  # the stored ones were not run again
    assert _done_attempts(db) == {h: 1 for h in after}


def test_a_ray_address_nothing_answers_at_is_one_error_at_once(tmp_path):
    import socket

    from resizelab.core.errors import ConfigError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = expand(FAST, {"size": [8]}, name="r")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        run_sweep(plan, SweepOptions(db=str(tmp_path / "r.db"), executor="ray", ray_address=f"127.0.0.1:{port}"), quiet=True)
    # ray.init would have retried it for minutes; and the store is not created for a sweep that cannot run.
    assert time.perf_counter() - start < 10 and not (tmp_path / "r.db").exists()


def test_failed_lost_and_interrupted_runs_end_as_with_every_executor(tmp_path, ray_cluster, caplog):
    from executor_scenario import check_the_same_ends, run_scenario

    check_the_same_ends(*run_scenario(str(tmp_path / "r.db"), "ray", caplog))
