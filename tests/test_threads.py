"""The adaptive thread policy (training.threads), driven by step times the test chooses, never by the machine's clock."""

import pytest
import torch

from resizelab.training.threads import MachineLoad, ThreadPolicy

# Milliseconds per image of a simulated 2-core machine: two threads are faster while both cores are free; with one
# core taken by another process, every parallel operation waits for the parked thread (issue 27: 824 -> 53 img/s).
QUIET = {1: 2.0, 2: 1.2}
BUSY = {1: 2.1, 2: 20.0}


def drive(policy: ThreadPolicy, machine, steps: range, batch: int = 32) -> list[int]:
    """Steps `steps` through the policy on `machine(step)` (QUIET or BUSY); the thread count of each step. The
    idle cores are what a 2-core machine shows: the ones neither this run nor the busy process keeps busy."""
    ran = []
    for step in steps:
        table = machine(step)
        threads = policy.threads
        ran.append(threads)
        idle = max(0.0, 2 - threads - (1 if table is BUSY else 0))
        policy.observe(step, table[threads] * batch / 1000, batch, idle_cores=idle)
    return ran


def test_a_quiet_machine_keeps_every_thread_after_one_short_try():
    policy = ThreadPolicy(2)
    ran = drive(policy, lambda step: QUIET, range(300))
    assert ran.count(1) <= policy.window and ran[-200:] == [2] * 200  # one try of fewer, bounded, then two throughout
    assert [c[1:] for c in policy.record()["thread_changes"]] == [[2, "start"], [1, "probe"], [2, "probe slower"]]
    assert policy.pop_message() is None


def test_a_machine_seen_quiet_at_the_start_trains_on_every_thread_without_a_try():
    policy = ThreadPolicy(2)
    assert policy.start_beside(0.1, 2) == 2
    ran = drive(policy, lambda step: QUIET, range(300))
    assert ran == [2] * 300 and [c[1:] for c in policy.record()["thread_changes"]] == [[2, "start"]]
    # A load that arrives later is still found, by the slowdown rule.
    late = ThreadPolicy(2)
    late.start_beside(0.0, 2)
    ran = drive(late, lambda step: BUSY if step >= 100 else QUIET, range(200))
    assert ran[:100] == [2] * 100 and ran[110:] == [1] * 90


def test_fewer_threads_under_a_slowdown_and_more_when_it_lifts():
    policy = ThreadPolicy(2)
    busy = range(100, 200)
    ran = drive(policy, lambda step: BUSY if step in busy else QUIET, range(400))
    assert ran[:100].count(2) >= 95
    # Found busy within a few steps, and one thread for the rest of the busy stretch.
    assert ran[100:110].count(2) <= 4 and ran[110:200] == [1] * 90
    assert policy.pop_message() is not None
    # Freed: it tries more within one reprobe period and keeps it.
    back = next(step for step in range(200, 400) if ran[step] == 2)
    assert back <= 200 + policy.reprobe_steps + 2 and ran[back + 5:] == [2] * (400 - back - 5)
    reasons = [(step, threads, why) for step, threads, why in policy.record()["thread_changes"] if why in ("machine busy", "machine free")]
    assert [r[1:] for r in reasons] == [(1, "machine busy"), (2, "machine free")] and 100 < reasons[0][0] < 110
    record = policy.record()
    assert record["threads_policy"] == "auto" and sum(record["steps_by_threads"].values()) == 400


def test_a_machine_busy_from_the_start_is_found_within_a_few_steps():
    policy = ThreadPolicy(2)
    ran = drive(policy, lambda step: BUSY, range(300))
    assert ran[:3] == [2, 2, 2] and ran[3:] == [1] * 297  # two warm-up steps, one step measured, then one thread
    # While the other process holds its core, no step goes back to two threads: the machine shows no idle core.
    messages = [c for c in policy.record()["thread_changes"] if c[2] == "fewer faster"]
    assert len(messages) == 1 and messages[0][1] == 1


def test_without_an_idle_signal_tries_of_more_back_off():
    policy = ThreadPolicy(2)
    ran = []
    for step in range(1000):
        ran.append(policy.threads)
        policy.observe(step, BUSY[policy.threads] * 32 / 1000, 32)  # idle cores unknown: it must try to learn
    tries = [i for i in range(1, 1000) if ran[i] == 2 and ran[i - 1] == 1]
    # Each try costs one step (abandoned at its first slow step), and the waits between them double.
    assert 3 <= len(tries) <= 5 and ran.count(2) <= 3 + len(tries)
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert all(later >= 2 * earlier - 2 for earlier, later in zip(gaps, gaps[1:]))


def test_fixed_threads_never_adapt():
    policy = ThreadPolicy(2, adaptive=False)
    ran = drive(policy, lambda step: BUSY if 20 <= step < 200 else QUIET, range(300))
    assert ran == [2] * 300 and policy.record() == {"threads": 2, "threads_policy": "fixed",
                                                     "thread_changes": [[0, 2, "start"]], "steps_by_threads": {"2": 300}}


def test_one_thread_has_nothing_to_adapt():
    policy = ThreadPolicy(1)
    assert drive(policy, lambda step: BUSY, range(100)) == [1] * 100
    with pytest.raises(ValueError, match="at least 1 thread"):
        ThreadPolicy(0)


def test_machine_load_reads_idle_cores_over_a_span(tmp_path):
    stat = tmp_path / "stat"

    def write(idle0: int, busy0: int, idle1: int, busy1: int) -> None:
        stat.write_text(f"cpu  {busy0 + busy1} 0 0 {idle0 + idle1} 0 0 0 0 0 0\n"
                        f"cpu0 {busy0} 0 0 {idle0} 0 0 0 0 0 0\ncpu1 {busy1} 0 0 {idle1} 0 0 0 0 0 0\n")

    write(0, 0, 0, 0)
    load = MachineLoad(str(stat), span_seconds=0.1)
    load.cpus = {"cpu0", "cpu1"}
    write(0, 100, 100, 0)  # one core busy, one idle, over 1 s
    assert load.idle_cores() == pytest.approx(1.0)
    write(0, 101, 101, 0)  # too short a span to judge: the last reading stands
    assert load.idle_cores() == pytest.approx(1.0)
    write(0, 300, 101, 199)  # both busy
    assert load.idle_cores() == pytest.approx(0.005, abs=0.01)
    assert MachineLoad(str(tmp_path / "missing")).idle_cores() is None


@pytest.mark.slow  # a real run (or sweep) on two threads: seconds quiet, tens of them on a loaded machine
def test_a_run_records_the_changes_its_policy_made(tmp_path):
    """The engine's Run applies the policy between steps and its execution record carries the changes, which
    load_runs and the report show; the step times come from the test (a run slowed down tenfold on two
    threads), the training is real."""
    from resizelab.api import load_runs
    from resizelab.report.writer import ReportConfig, write_report
    from resizelab.store.database import Store, new_owner_id
    from resizelab.core.config import RunConfig
    from resizelab.training.engine import Run

    cfg = RunConfig(data="synthetic:128:16", size=8, epochs=1, weights="none", precision="fp32", batch_size=16,
                    device="cpu")
    torch.set_num_threads(2)
    run = Run(cfg, load=MachineLoad("/nonexistent")).setup()  # the machine's load unknown: only the step times decide
    run.begin_epoch()
    said, threads_seen = [], []
    for step in range(run.steps_per_epoch):
        threads_seen.append(torch.get_num_threads())
        images = run.step()
        message = run.adapt_threads(BUSY[torch.get_num_threads()] * images / 1000, images)
        if message:
            said.append(message)
    execution = run.execution()
    assert threads_seen[:3] == [2, 2, 2] and threads_seen[3:] == [1] * (len(threads_seen) - 3)
    assert said and said[0].startswith("fewer faster: 2 → 1 thread")
    assert execution["threads_policy"] == "auto" and execution["threads"] == 1
    assert [c[1:] for c in execution["thread_changes"]] == [[2, "start"], [1, "fewer faster"]]
    assert execution["steps_by_threads"] == {"1": len(threads_seen) - 3, "2": 3}
    result = run.result([run.end_epoch(1.0)], run.evaluate(), 0.1)
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.register([run.config])
        owner = new_owner_id()
        assert store.claim(result.config_hash, owner)
        store.complete(result, owner)
    (row,) = load_runs(db).to_dict("records")
    assert row["threads_ran"] == 1 and row["threads_adapted"] == "2 → 1 at step 3 (fewer faster)"
    report = write_report(ReportConfig(db=str(db), out=str(tmp_path / "report"), findings=False))
    md = (report / "report.md").read_text()
    assert "## Runs whose threads adapted to a busy machine" in md and "| 2 → 1 at step 3 (fewer faster) |" in md

    fixed = Run(RunConfig(**{**cfg.to_dict(), "threads": 2, "data": "synthetic:32:16"})).setup()
    fixed.begin_epoch()
    for _ in range(fixed.steps_per_epoch):
        images = fixed.step()
        assert fixed.adapt_threads(BUSY[2] * images / 1000, images) is None and torch.get_num_threads() == 2
    assert fixed.execution()["thread_changes"] == [[0, 2, "start"]] and fixed.execution()["threads_policy"] == "fixed"


def test_a_run_starts_with_the_cores_other_processes_leave(tmp_path):
    """What /proc/stat shows other processes keep busy while a run sets up sets its first count (here: a file
    the test writes, one core of two busy elsewhere), and the run says so."""
    import os

    stat = tmp_path / "stat"
    ticks = int(os.times().user * 100 + os.times().system * 100)

    def write(busy: int, idle: int) -> None:
        stat.write_text(f"cpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu1 {busy} 0 0 {idle} 0 0 0 0 0 0\n")

    write(1000, 1000)
    load = MachineLoad(str(stat))
    load.cpus, load.cores, load.tick, load.span_ticks = {"cpu0", "cpu1"}, 2, 100, 25
    load._last = (2000.0, 4000.0, 2, float(ticks))  # as if read when the run began setting up, this process idle since
    write(1050, 1050)  # then 1 s passed: of two cores, one was busy (this process used none of it)
    policy = ThreadPolicy(2)
    busy = load.busy_elsewhere()
    assert busy == pytest.approx(1.0, abs=0.3)  # less what this process computed meanwhile
    assert policy.start_beside(busy, 2) == 1 and policy.pop_message().startswith("machine busy: 2 → 1 thread")
    assert policy.record()["thread_changes"] == [[0, 2, "start"], [0, 1, "machine busy"]]
    assert ThreadPolicy(2).start_beside(0.2, 2) == 2 and ThreadPolicy(2, adaptive=False).start_beside(2.0, 2) == 2


def test_threads_is_auto_or_a_whole_number():
    from resizelab.core.config import RunConfig, declared_options
    from resizelab.core.errors import ConfigError

    kind = dict(declared_options(RunConfig))["threads"].kind
    assert kind.parse("auto") is None and kind.parse("3") == 3 and kind.none_text == "auto"
    assert RunConfig(data="synthetic", threads="auto").threads is None  # as a sweep file spells it
    for bad in (0, 1025, 1.5, "two"):
        with pytest.raises(ConfigError, match="threads must be"):
            RunConfig(data="synthetic", threads=bad)


def test_serve_probe_and_spectrum_compute_on_the_threads_asked_or_on_the_cores_left_free(monkeypatch, tmp_path):
    """Commands that only evaluate have no steps to adapt on: N is N; auto is the cores other processes leave
    free as the command starts (a load the test sets), and the count before is restored after."""
    from resizelab.analysis.probe import ProbeConfig
    from resizelab.analysis.serve import ServeConfig
    from resizelab.analysis.spectrum import SpectrumConfig
    from resizelab.core.errors import ConfigError
    from resizelab.training import threads

    class Load:  # one of two cores kept busy by another process
        cores = 2

        def __init__(self, span_seconds):
            pass

        def busy_elsewhere(self):
            return 1.0

    before = threads.set_threads(2)
    try:
        monkeypatch.setattr(threads, "MachineLoad", Load)
        with threads.evaluation_threads(None, span_seconds=0) as n:
            assert n == 1 and threads.current_threads() == 1
        assert threads.current_threads() == 2
        with threads.evaluation_threads(2, span_seconds=0) as n:  # N is N, whatever the load
            assert n == 2
    finally:
        threads.set_threads(before)
    torch.save({}, tmp_path / "w.pt")
    for config in (lambda **k: ServeConfig(weights=str(tmp_path / "w.pt"), data="synthetic", test_sizes=(16,), **k),
                   lambda **k: ProbeConfig(data="synthetic", **k), lambda **k: SpectrumConfig(data="synthetic", **k)):
        with pytest.raises(ConfigError, match="threads must be auto or between 1 and 1024; got 0"):
            config(threads=0)
        assert config(threads="auto").threads is None and config(threads=1).threads == 1
