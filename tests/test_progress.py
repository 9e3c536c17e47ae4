"""Progress that works without a terminal: epoch and step lines with ETAs, sweep lines, -q and -v."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resizelab.cli import main
from resizelab.core.config import RunConfig
from resizelab.training.engine import train
from resizelab.core.log import duration, plural
from resizelab.training.progress import TrainProgress
from resizelab.sweeps.plan import expand
from resizelab.sweeps.runner import SweepOptions, run_sweep

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = dict(data="synthetic", weights="none", lr=0.01, limit_train=96, limit_test=32, precision="fp32", batch_size=16)
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
DURATION = r"(\d+ s|\d+ min \d\d s|\d+ h \d\d min)"


def test_plural_and_duration():
    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert plural(1, "is", "are") == "1 is" and plural(3, "is", "are") == "3 are"
    assert [duration(s) for s in (0.4, 59.4, 61, 3599, 7260, float("nan"))] == ["0 s", "59 s", "1 min 01 s", "59 min 59 s",
                                                                                  "2 h 01 min", "?"]


@pytest.mark.slow
def test_run_with_stderr_in_a_file_logs_each_epoch_with_an_eta(tmp_path):
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:  # `resizelab run ... 2>log`: stderr is a file, not a terminal
        proc = subprocess.run([sys.executable, "-m", "resizelab.cli", "run", "--data", "synthetic", "--weights", "none",
                               "--epochs", "2", "--limit-train", "96", "--limit-test", "32", "--batch-size", "16",
                               "--precision", "fp32", "--size", "16", "--db", str(tmp_path / "r.db"), "--verbose"],
                              env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0
    lines = log.read_text().splitlines()
    assert lines and all(re.match(STAMP, line) for line in lines), lines  # time-stamped: a batch log
    text = "\n".join(lines)
    assert "\r" not in text  # no progress bar redrawn into the file
    # Something from the first second, before any step: what it is doing.
    # (Generated data has no files to check, so the first thing said is its loading.)
    assert lines[0].endswith("loading synthetic") and re.search("building resnet18", text)
    assert "train split: cold cache" in text  # --verbose: the debug lines too
    epochs = [line for line in lines if re.search(r"epoch \d/2: loss", line)]
    assert len(epochs) == 2, text
    assert re.search(r"epoch 1/2: loss \d+\.\d{4}, train accuracy [\d.]+%, [\d.]+ s, \d+ img/s, ETA " + DURATION
                     + " to the end of training$",
                     epochs[0]), epochs[0]
    assert re.search(r"epoch 2/2: .* ETA 0 s, evaluating$", epochs[1]), epochs[1]
    assert "over 2 epochs" in proc.stdout


def test_step_lines_within_an_epoch_at_the_interval(caplog):
    cfg = RunConfig(**{**TINY, "limit_train": 64}, epochs=2, size=16)
    with caplog.at_level(logging.INFO, logger="resizelab"):
        result = train(cfg, progress=TrainProgress(interval_seconds=0.0, terminal=False))
    # The thread policy's decisions (a busy machine) have lines of their own, between these.
    steps = [r.getMessage() for r in caplog.records if " step " in r.getMessage() and " → " not in r.getMessage()]
    # An interval of 0 logs every step but the last of each epoch (the epoch line stands for that one): 4 steps an epoch.
    assert [m.split(":")[0] for m in steps] == [f"epoch {e}/2 step {s}/4" for e in (1, 2) for s in range(1, 4)]
    for message in steps:
        assert re.fullmatch(rf"epoch \d/2 step \d/4: loss \d+\.\d{{4}}, \d+ img/s, ETA {DURATION} \(epoch\), {DURATION} \(run\)",
                            message), message
    # The running loss is the epoch's mean so far: after the last logged step it is near the epoch's mean.
    last = float(re.search(r"loss (\S+),", steps[-1]).group(1))
    assert abs(last - result.epochs[-1].train_loss) < 0.5 * result.epochs[-1].train_loss


def test_sweep_logs_done_failed_remaining_and_eta(tmp_path, caplog):
    plan = expand(dict(TINY, epochs=1, size=16, limit_train=200), {"lr": [10.0, 0.01]}, name="pace")  # lr 10 diverges
    with caplog.at_level(logging.INFO, logger="resizelab"):
        outcome = run_sweep(plan, SweepOptions(db=str(tmp_path / "r.db"), progress=False))
    assert len(outcome.failed) == 1 and len(outcome.ran) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep pace:")]
    assert lines[0] == "sweep pace: 2 runs, 0 already done, 2 to run"
    assert re.fullmatch("sweep pace: 0 runs done, 1 failed, 1 remaining, ETA " + DURATION, lines[1]), lines[1]
    assert lines[2] == "sweep pace: 1 run done, 1 failed, 0 remaining, ETA 0 s"


def test_quiet_leaves_stderr_empty_and_quiet_excludes_verbose(tmp_path, capsys):
    assert main(["run", "--data", "synthetic", "--weights", "none", "--epochs", "1", "--limit-train", "64", "--limit-test", "32",
                 "--precision", "fp32", "--size", "16", "--db", str(tmp_path / "q.db"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "over 1 epoch;" in captured.out  # plural-aware: one epoch
    with pytest.raises(SystemExit) as info:
        main(["presets", "-q", "-v"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_seed_presets_eta_weighs_each_run_by_its_pixels_not_the_32_px_pace(monkeypatch, caplog):
    """After the 32 px run (the seed preset's first) took 100 s, the 64 px run is four times its MACs and the 16 px
    run a quarter: 425 s left, not the 200 s that two more runs at the 32 px pace would say."""
    from resizelab.sweeps import progress as progress_module
    from resizelab.sweeps.presets import get_preset

    configs = get_preset("seed").plan().configs
    assert [c.size for c in configs] == [32, 64, 16]
    clock = iter([0.0, 100.0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    sweep = progress_module.SweepProgress("seed", len(configs), total_work=sum(map(progress_module.run_work, configs)))
    with caplog.at_level(logging.INFO, logger="resizelab"):
        sweep.finished(ok=True, work=progress_module.run_work(configs[0]))
    assert caplog.records[-1].getMessage().endswith(f"2 remaining, ETA {duration(425)}")
