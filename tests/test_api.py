"""The DataFrame API over a real store filled by tiny real trainings (tests/tiny_store.py)."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time

import pytest

from resizelab.api import load_epochs, load_evals, load_runs
from resizelab.store.read import connect_read_only
from resizelab.core.errors import ConfigError, MissingDependency
from resizelab.store.database import Store
from tiny_store import build_tiny_store

pd = pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return build_tiny_store(tmp_path_factory)


def test_load_runs_has_one_typed_row_per_done_run(tiny_store):
    db, results, hashes = tiny_store
    runs = load_runs(db).set_index("config_hash")
    assert list(runs.index) == [hashes["16px"], hashes["native"]]  # done runs only, in order of creation
    small, native = runs.loc[hashes["16px"]], runs.loc[hashes["native"]]
    # Integers stay integers even where a value is missing (native size), instead of becoming floats.
    for column in ("size_px", "epochs", "seed", "limit_train", "macs_per_image", "params", "peak_memory_bytes"):
        assert runs[column].dtype == "Int64", column
    assert runs["test_accuracy"].dtype == "float64"
    assert runs["antialias"].dtype == "boolean"
    assert (small["size"], small["size_px"]) == ("16", 16)
    assert native["size"] == "native" and pd.isna(native["size_px"])
    assert (native["input_height_px"], native["input_width_px"]) == (32, 32)  # what native meant for this data
    assert (small["epochs"], native["epochs"]) == (2, 1)
    assert small["test_sizes"] == (32,)
    for name, row in (("16px", small), ("native", native)):
        result = results[name]
        assert row["test_accuracy"] == pytest.approx(result.test_accuracy)
        assert row["train_seconds"] == pytest.approx(result.train_seconds)
        assert row["images_per_second"] == pytest.approx(result.images_per_second)
        assert (row["macs_per_image"], row["params"], row["peak_memory_bytes"]) == (
            result.macs_per_image, result.params, result.peak_memory_bytes)
        assert (row["effective_precision"], row["weights_tag"]) == ("fp32", "none")
        assert row["status"] == "done" and row["label"] == result.config.label()
    # With no sweep filter a run lists every sweep that holds it.
    assert (small["sweep"], native["sweep"]) == ("other, tiny", "tiny")
    assert str(runs["finished_at"].dtype) == "datetime64[ns, UTC]"


def test_group_by_size_keeps_the_native_runs(tiny_store):
    db, results, hashes = tiny_store
    runs = load_runs(db)
    by_text = runs.groupby("size")["test_accuracy"].mean()
    assert by_text.to_dict() == pytest.approx({"16": results["16px"].test_accuracy, "native": results["native"].test_accuracy})
    # Why size is also text: pandas drops NA keys from a groupby, so the numeric column loses native.
    assert list(runs.groupby("size_px")["test_accuracy"].mean().index) == [16]


def test_status_and_sweep_select_runs(tiny_store):
    db, _, hashes = tiny_store
    every = load_runs(db, status=None)
    assert set(every["config_hash"]) == set(hashes.values())
    other = load_runs(db, sweep="other", status=None)
    # In sweep order, each row naming the sweep asked for.
    assert list(other["config_hash"]) == [hashes["16px"], hashes["failed"], hashes["pending"]]
    assert set(other["sweep"]) == {"other"}
    assert list(other["status"]) == ["done", "failed", "pending"]
    failed = load_runs(db, status="failed")
    assert list(failed["config_hash"]) == [hashes["failed"]]
    assert failed["error"].iloc[0].startswith("RunFailed: diverged")
    assert pd.isna(failed["test_accuracy"].iloc[0]) and pd.isna(failed["macs_per_image"].iloc[0])
    assert list(load_runs(db, sweep="tiny")["config_hash"]) == [hashes["16px"], hashes["native"]]
    with pytest.raises(ConfigError, match="no sweep named 'nope'.*sweeps there: other, tiny"):
        load_runs(db, sweep="nope")
    with pytest.raises(ConfigError, match="status must be one of pending, running, done, failed"):
        load_runs(db, status="finished")


@pytest.mark.parametrize("load", [load_runs, load_evals, load_epochs])
def test_columns_and_dtypes_do_not_depend_on_the_rows(tiny_store, load):
    db, _, _ = tiny_store
    full, empty = load(db), load(db, status="running")
    assert len(full) > 0 and len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    assert empty.dtypes.to_dict() == full.dtypes.to_dict()


def test_load_evals_has_one_row_per_run_and_test_size(tiny_store):
    db, results, hashes = tiny_store
    evals = load_evals(db)
    assert len(evals) == 3
    small = evals[evals["config_hash"] == hashes["16px"]].set_index("test_size_px")
    assert list(small.index) == [16, 32]
    expected = {ev.size_px: ev for ev in results["16px"].evals}
    for size in (16, 32):
        assert small.loc[size, "accuracy"] == pytest.approx(expected[size].accuracy)
        assert small.loc[size, "per_class_accuracy"] == pytest.approx(expected[size].per_class_accuracy)
    assert small["headline"].tolist() == [True, False]
    assert small.loc[16, "accuracy"] == pytest.approx(results["16px"].test_accuracy)
    native = evals[evals["config_hash"] == hashes["native"]]
    assert native["test_size_px"].tolist() == [32] and native["headline"].tolist() == [True]
    # The config fields that list evaluations are replaced by each row's own size and method.
    assert "test_sizes" not in evals.columns and "test_size" not in evals.columns
    assert (evals["test_interpolation"] == "bilinear").all()
    table = evals.pivot_table(index="size", columns="test_size_px", values="accuracy")
    assert table.loc["16", 32] == pytest.approx(expected[32].accuracy)
    assert table.loc["native", 32] == pytest.approx(results["native"].test_accuracy)


def test_load_epochs_has_one_row_per_run_and_epoch(tiny_store):
    db, results, hashes = tiny_store
    epochs = load_epochs(db)
    small = epochs[epochs["config_hash"] == hashes["16px"]]
    assert small["epoch"].tolist() == [1, 2]
    assert small["train_loss"].tolist() == pytest.approx([e.train_loss for e in results["16px"].epochs])
    assert small["train_accuracy"].tolist() == pytest.approx([e.train_accuracy for e in results["16px"].epochs])
    assert small["epoch_seconds"].tolist() == pytest.approx([e.seconds for e in results["16px"].epochs])
    assert small["images"].tolist() == [64, 64]
    assert epochs[epochs["config_hash"] == hashes["native"]]["epoch"].tolist() == [1]
    assert set(epochs["size"]) == {"16", "native"}


def test_reads_while_a_sweep_holds_the_write_lock_and_never_writes(tiny_store, tmp_path):
    db, _, hashes = tiny_store
    copy = tmp_path / "runs.db"
    shutil.copy(db, copy)
    writer = Store(copy, timeout=1.0)
    try:
        # A sweep in the middle of a write transaction, as when it stores a finished run.
        writer.conn.execute("BEGIN IMMEDIATE")
        writer.conn.execute("UPDATE runs SET status = 'done', test_accuracy = 99.0 WHERE config_hash = ?", (hashes["pending"],))
        t0 = time.perf_counter()
        runs = load_runs(copy)
        # Not blocked (opening a Store here would wait for the lock), and it sees the last commit only.
        assert time.perf_counter() - t0 < 5
        assert hashes["pending"] not in set(runs["config_hash"])
        writer.conn.execute("COMMIT")
        assert hashes["pending"] in set(load_runs(copy)["config_hash"])
    finally:
        writer.close()
    with connect_read_only(copy) as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM runs")


def test_missing_or_foreign_database_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no results store at"):
        load_runs(tmp_path / "absent.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ConfigError, match="not a resizelab results store"):
        load_runs(other)


def test_without_pandas_the_error_names_the_extra(tiny_store, monkeypatch):
    db, _, _ = tiny_store
    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` meets when it is not installed
    with pytest.raises(MissingDependency) as info:
        load_runs(db)
    message = str(info.value)
    assert "\n" not in message and "pip install 'resizelab[pandas]'" in message
    assert isinstance(info.value, ImportError)


def test_a_hand_corrupted_result_row_is_named_by_report_and_load_runs(tiny_store, tmp_path, capsys):
    from resizelab.cli import main

    db, _, hashes = tiny_store
    copy = tmp_path / "r.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE runs SET result_json = '{\"test_accuracy\": 1' WHERE config_hash = ?", (hashes["16px"],))
    message = f"run {hashes['16px']} in {copy} has a corrupt result_json"
    with pytest.raises(ConfigError, match=message):
        load_runs(copy)
    assert main(["report", "--db", str(copy), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


@pytest.mark.slow
def test_reading_a_store_leaves_no_wal_or_shm_files_beside_it(tiny_store, tmp_path):
    from resizelab.report.writer import ReportConfig, write_report

    db, _, _ = tiny_store
    copy = tmp_path / "runs.db"
    shutil.copy(db, copy)
    load_runs(copy)
    with Store(copy, readonly=True) as store:
        assert store.runs()
    write_report(ReportConfig(db=str(copy), out=str(tmp_path / "rep"), findings=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "runs.db"]
