"""resizelab.sweep(): the command's sweep from Python, resumable against a real store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import resizelab
from resizelab.core.errors import ConfigError
from resizelab.training.planning import run_hash

pd = pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")

BASE = dict(data="synthetic:64:32", weights="none", epochs=1, batch_size=32, lr=0.01, precision="fp32")


@pytest.mark.slow
def test_sweep_trains_the_grid_then_resumes_without_training_again(tmp_path, one_thread):
    db = tmp_path / "runs.db"
    first = resizelab.sweep(BASE, grid={"size": [16, None]}, seeds=2, name="api", db=db, report=tmp_path / "report")
    assert (first.planned, len(first.ran), first.already_done, first.failed) == (4, 4, 0, [])
    assert first.db == str(db) and (first.report / "report.html").is_file()
    runs = resizelab.load_runs(first.db, sweep=first.name)
    assert sorted(zip(runs["size"], runs["seed"])) == [("16", 0), ("16", 1), ("native", 0), ("native", 1)]
    assert sorted(runs["config_hash"]) == sorted(r.config_hash for r in first.ran)
    # The same call again is a resumed sweep: everything is already done, nothing trains.
    again = resizelab.sweep(BASE, grid={"size": [16, None]}, seeds=2, name="api", db=db)
    assert (len(again.ran), again.already_done, again.report) == (0, 4, None)
    # The layers are named apart from the functions (sweeps/sweep, training/train): importing a subpackage sets the
    # package attribute of its name, which would otherwise replace the function.
    import importlib

    for layer in ("resizelab.sweeps.runner", "resizelab.training.engine"):
        importlib.import_module(layer)
    assert callable(resizelab.sweep) and resizelab.sweep.__module__ == "resizelab.api"
    assert callable(resizelab.train) and resizelab.train.__module__ == "resizelab.training.engine"


def test_a_preset_with_overrides_plans_what_the_command_plans(tmp_path):
    from resizelab.sweeps.presets import get_preset

    overrides = {**BASE, "size": [16, 24]}
    outcome = resizelab.sweep({k: v for k, v in BASE.items()}, grid={"size": [16, 24]}, preset="seed", db=tmp_path / "r.db")
    command = get_preset("seed").plan(overrides)
    assert outcome.name == command.name
    assert [r["config_hash"] for r in outcome.rows] == [run_hash(c) for c in command.configs]
    assert len(outcome.ran) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "the sweep is empty"),
    (dict(base=BASE, preset="seed", variants=[{"size": 16}]), "variants cannot be laid over preset"),
    (dict(base=BASE, grid={"siez": [16]}), "unknown run option 'siez'"),
    (dict(base=BASE, seeds=0), "at least 1"),
    (dict(base=BASE, seeds=[1, "2"]), "each seed must be a whole number"),
    (dict(base=BASE, executor="slurm"), "executor must be one of"),
    (dict(base=BASE, preset="nope"), "unknown preset 'nope'"),
    (dict(base=BASE, grid={"size": 16}), "grid entry 'size' must be a non-empty list of values; got 16"),
    (dict(base=BASE, grid={"interpolation": "bilinear"}), "grid entry 'interpolation' must be a non-empty list"),
    (dict(base=BASE, grid={"size": {8: 1}}), "grid entry 'size' must be a non-empty list"),
    (dict(base=BASE, grid=[8, 16]), "grid must be a dict of run options and their lists of values; got [8, 16]"),
    (dict(base="data=synthetic"), "base must be a dict of run options"),
    (dict(base=BASE, variants={"backend": "pil"}), "variants must be a list of dicts"),
    (dict(base=BASE, seeds=2.0), "seeds must be a count or a list of seeds; got 2.0"),
    (dict(base=BASE, seeds="0,1"), "seeds must be a count or a list of seeds"),
    (dict(base={**BASE, "seed": 5}, seeds=[1]), "give seed in base (5) or seeds ([1]), not both"),
    (dict(base=BASE, db=None), "db must be the path of the results store; got None"),
    (dict(base=BASE, report=1), "report must be True"),
    (dict(base=BASE, name="../escape", report=True), "a sweep name must be non-empty text without '/'"),
    (dict(base=BASE, name=""), "a sweep name must be"),
    (dict(base=BASE, name=7), "a sweep name must be"),
    (dict(base=BASE, name="é" * 128, report=True), "at most 255 bytes on common file systems; got 256 bytes"),
    (dict(base=BASE, ray_address="127.0.0.1:6379"), "a Ray address applies to the ray executor, not 'auto'"),
    (dict(base=BASE, grid={"size": [8]}, on_result=5), "on_result must be a function called with each RunResult, or None; got 5"),
])
def test_bad_arguments_are_one_clear_error_and_store_nothing(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    kwargs = {"db": tmp_path / "r.db", **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        resizelab.sweep(**kwargs)
    assert not list(tmp_path.iterdir())  # no store, no report folder


def test_a_report_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "r.txt").write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"report folder {tmp_path / 'r.txt'} is a file; give report a folder")):
        resizelab.sweep(BASE, grid={"size": [8]}, db=tmp_path / "r.db", report=tmp_path / "r.txt")
    assert not (tmp_path / "r.db").exists()


def test_a_runconfig_as_base_refused_combinations_and_names_from_content(tmp_path, one_thread):
    db = tmp_path / "r.db"
    config = resizelab.RunConfig(**BASE, size=8, backend="tensor")
    outcome = resizelab.sweep(config, grid={"interpolation": ["lanczos", "bilinear"]}, db=db)
    # The RunConfig plans what the same options as a dict plan; the combination the backend cannot do is said.
    assert [run_hash(r.config) for r in outcome.ran] == [
        run_hash(resizelab.RunConfig(**BASE, size=8, backend="tensor", interpolation="bilinear"))]
    assert outcome.invalid == 1 and "lanczos" in outcome.invalid_reasons[0]
    # Unnamed sweeps are named after what they run: another grid is another sweep with its own rows and report.
    other = resizelab.sweep(config, grid={"interpolation": ["nearest"]}, db=db)
    assert outcome.name.startswith("sweep-") and other.name.startswith("sweep-") and other.name != outcome.name
    assert len(other.rows) == 1 and len(resizelab.load_runs(db, sweep=other.name)) == 1


@pytest.mark.slow
def test_progress_is_shown_by_default_from_python_without_logging_set_up(tmp_path):
    """As train() logs its progress, sweep() does by default (the README's API example is not minutes of silence)."""
    # A fresh interpreter, as a notebook or script is: no logging configured (pytest configures its own).
    code = ("import resizelab\n"
            f"resizelab.sweep({BASE!r}, grid={{'size': [8]}}, db={str(tmp_path / 'r.db')!r})\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 run, 0 already done, 1 to run" in proc.stderr and "epoch 1/1" in proc.stderr
    assert proc.stdout == ""


def test_the_python_api_with_wrong_types_is_a_config_error_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("train takes a RunConfig (e.g. resizelab.RunConfig(data='synthetic', size=16)); got 'x'")):
        resizelab.train("x")
    with pytest.raises(ConfigError, match=re.escape("db must be the path of the results store; got None")):
        resizelab.load_runs(None)
    with pytest.raises(ConfigError, match=re.escape("sweep must be a sweep's name or None (every sweep); got 3")):
        resizelab.load_evals(tmp_path / "r.db", sweep=3)
    assert not list(tmp_path.iterdir())
