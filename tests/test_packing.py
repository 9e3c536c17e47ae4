import os
import sqlite3
import subprocess
import sys

import pytest

from resizelab.cli import main
from resizelab.core.errors import ConfigError
from resizelab.sweeps.plan import expand
from resizelab.sweeps.runner import SweepOptions, run_sweep


# Deterministic fp32 at one thread: the mode in which a run must come out the same whoever trains it (the thread
# count changes oneDNN's summation order, so it is held equal between the executors compared).
TINY = {"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 64, "limit_test": 32,
        "precision": "fp32", "deterministic": True, "threads": 1}


@pytest.mark.slow  # spawned worker processes
def test_packed_runs_give_what_each_run_gives_alone(tmp_path):
    # Three runs on two workers: one worker trains two runs in turn, so a reused worker is compared too.
    plan = expand(dict(TINY), {"size": [8, 16]}, seeds=[0, 1], name="packing")
    plan = type(plan)(plan.name, plan.configs[:3])
    alone = run_sweep(plan, SweepOptions(db=str(tmp_path / "alone.db"), executor="local", progress=False), quiet=True)
    packed = run_sweep(plan, SweepOptions(db=str(tmp_path / "packed.db"), executor="packed", pack=2, progress=False), quiet=True)
    assert len(alone.ran) == len(packed.ran) == 3 and not packed.failed
    by_hash = {r.config_hash: r for r in packed.ran}
    for a in alone.ran:
        p = by_hash[a.config_hash]
        # Bit for bit: the same thread count in the worker as here, so oneDNN sums in the same order.
        assert p.execution["threads"] == a.execution["threads"] == 1
        assert [e.train_loss for e in p.epochs] == [e.train_loss for e in a.epochs]
        assert (p.test_accuracy, p.per_class_accuracy) == (a.test_accuracy, a.per_class_accuracy)
        assert p.provenance["pack"] == 2 and "pack" not in a.provenance
    # The parent stored every result, and a second packed sweep finds them done.
    with sqlite3.connect(tmp_path / "packed.db") as c:
        assert c.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] == 3
    again = run_sweep(plan, SweepOptions(db=str(tmp_path / "packed.db"), executor="packed", pack=2, progress=False), quiet=True)
    assert again.ran == [] and again.already_done == 3


def test_pack_is_validated(tmp_path, capsys):
    with pytest.raises(ConfigError, match="pack .* must be a whole number from 1 to 64"):
        SweepOptions(executor="packed", pack=0)
    with pytest.raises(ConfigError, match="not 'local'; choose executor 'packed'"):
        SweepOptions(executor="local", pack=2)
    db = tmp_path / "r.db"
    assert main(["sweep", "--data", "synthetic", "--size", "8", "--executor", "packed", "--pack", "100", "--db", str(db)]) == 2
    assert "pack (runs trained at once) must be a whole number from 1 to 64; got 100" in capsys.readouterr().err
    assert not db.exists()


def test_packed_workers_share_the_cores_out():
    from resizelab.core.config import RunConfig
    from resizelab.sweeps.packed import CPU_AUTO_PACK_MAX_PX, CPU_AUTO_PACK_MIN_RUNS, DEFAULT_PACK, resolve_executor, threads_per_worker

    cpu = [RunConfig(data="synthetic", device="cpu")] * 8
    # pack x threads <= cores, at least one thread each.
    assert [threads_per_worker(cpu, pack, cores=16) for pack in (1, 2, 4, 5, 16, 32)] == [16, 8, 4, 3, 1, 1]
    # --executor packed without --pack: one run per core on a CPU, DEFAULT_PACK elsewhere; a --pack given stands.
    assert resolve_executor("packed", None, cpu, cores=6) == ("packed", 6)
    assert resolve_executor("packed", 3, cpu, cores=6) == ("packed", 3)
    assert resolve_executor("local", None, cpu, cores=6) == ("local", 1)
    assert DEFAULT_PACK >= 1
    # auto on a CPU: packed one run per core when every run is small (the measured rule), else local.
    small = [RunConfig(data="synthetic", device="cpu", size=s) for s in (8, 16, CPU_AUTO_PACK_MAX_PX)] * CPU_AUTO_PACK_MIN_RUNS
    assert resolve_executor("auto", None, small, cores=2) == ("packed", 2)
    assert resolve_executor("auto", None, small, cores=1) == ("local", 1)
    assert resolve_executor("auto", None, small[:CPU_AUTO_PACK_MIN_RUNS - 1], cores=2) == ("local", 1)  # too few to pay
    assert resolve_executor("auto", None, small + [RunConfig(data="synthetic", device="cpu", size=64)], cores=2) == ("local", 1)
    assert resolve_executor("auto", None, [RunConfig(data="synthetic", device="cpu")], cores=2) == ("local", 1)  # native


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_workers_end_within_seconds_when_their_sweep_is_killed(tmp_path):
    """kill -9 of a packed sweep's process: its workers (and multiprocessing's resource tracker) end too."""
    import signal
    import sqlite3
    import time

    db = tmp_path / "r.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "resizelab.cli", "sweep", "--data", "synthetic", "--weights", "none", "--epochs", "50",
           "--limit-train", "600", "--limit-test", "20", "--precision", "fp32", "--size", "8,12", "--executor", "packed",
           "--pack", "2", "--threads", "1", "--db", str(db), "-q"]
    sweep = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.time() + 180
        running = 0
        while time.time() < deadline and running < 2:  # both workers training: past their start-up
            time.sleep(0.2)
            try:
                with sqlite3.connect(db) as c:
                    running = c.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
            except sqlite3.OperationalError:
                pass
        assert running == 2
        children = _children(sweep.pid)
        assert len(children) >= 2
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
