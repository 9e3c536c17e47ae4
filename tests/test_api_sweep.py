"""resizelab.sweep(): the command's sweep from Python, resumable against a real store."""

from __future__ import annotations

import pytest

import resizelab
from resizelab.errors import ConfigError

pd = pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")

BASE = dict(data="synthetic:64:32", weights="none", epochs=1, batch_size=32, lr=0.01, precision="fp32")


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
    # The module of that name does not shadow the function once it is imported.
    import importlib

    importlib.import_module("resizelab.sweeps")
    assert callable(resizelab.sweep) and resizelab.sweep.__module__ == "resizelab.sweeps"


def test_a_preset_with_overrides_plans_what_the_command_plans(tmp_path):
    from resizelab.presets import get_preset

    overrides = {**BASE, "size": [16, 24]}
    outcome = resizelab.sweep({k: v for k, v in BASE.items()}, grid={"size": [16, 24]}, preset="seed", db=tmp_path / "r.db")
    command = get_preset("seed").plan(overrides)
    assert outcome.name == command.name
    assert [r["config_hash"] for r in outcome.rows] == [c.planned().config_hash() for c in command.configs]
    assert len(outcome.ran) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "the sweep is empty"),
    (dict(base=BASE, preset="seed", variants=[{"size": 16}]), "variants cannot be laid over preset"),
    (dict(base=BASE, grid={"siez": [16]}), "unknown run option 'siez'"),
    (dict(base=BASE, seeds=0), "at least 1"),
    (dict(base=BASE, seeds=[1, "2"]), "each seed must be a whole number"),
    (dict(base=BASE, executor="slurm"), "executor must be one of"),
    (dict(base=BASE, preset="nope"), "unknown preset 'nope'"),
])
def test_bad_arguments_are_one_clear_error_and_store_nothing(tmp_path, kwargs, message):
    db = tmp_path / "r.db"
    with pytest.raises(ConfigError, match=message):
        resizelab.sweep(db=db, **kwargs)
    assert not db.exists()
