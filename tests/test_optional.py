"""A missing optional package is named with its install command wherever it is why something is skipped."""

from __future__ import annotations

import logging
import shutil
import sys

import pytest

from resizelab.cli import main
from resizelab.report.writer import ReportConfig, write_report
from tiny_store import build_tiny_store

SWEEP = ["sweep", "--data", "synthetic", "--weights", "none", "--epochs", "1", "--limit-train", "64", "--size", "16,24"]


def test_report_without_pyarrow_stays_quiet_and_says_how_to_get_parquet_with_verbose(tmp_path_factory, tmp_path, monkeypatch, caplog):
    db, _, _ = build_tiny_store(tmp_path_factory)
    shutil.copy(db, tmp_path / "runs.db")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import` meets when the package is not installed
    with caplog.at_level(logging.DEBUG, logger="resizelab"):
        out = write_report(ReportConfig(db=str(tmp_path / "runs.db"), sweep="tiny", out=str(tmp_path / "rep")))
    assert (out / "runs.csv").is_file() and not (out / "runs.parquet").exists()
    # No warning on the default install (Parquet is an extra copy nobody asked for); a debug line (-v) says how.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "runs.parquet not written: pyarrow is not installed (pip install 'resizelab[parquet]')" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]


@pytest.mark.parametrize("module, flags, command", [
    ("cv2", ["--backend", "opencv"], "pip install 'resizelab[opencv]'"),
    ("ray", ["--executor", "ray"], "pip install 'resizelab[ray]'"),
    ("mlflow", ["--mlflow"], "pip install 'resizelab[mlflow]'"),
    ("timm", ["--arch", "timm:resnet10t"], "pip install 'resizelab[timm]'"),
])
def test_a_sweep_that_needs_a_missing_package_stops_at_once_naming_it(tmp_path, monkeypatch, capsys, module, flags, command):
    monkeypatch.setitem(sys.modules, module, None)
    db = tmp_path / "r.db"
    assert main([*SWEEP, *flags, "--db", str(db), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resizelab: error: ") and command in err, err
    assert not db.exists()  # nothing trained, nothing stored


def test_env_lists_each_optional_package_with_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["env"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("optional ")]
    assert [line.split()[1] for line in lines] == ["pandas", "mlflow", "pyarrow", "cv2", "ray", "timm", "optuna"]
    assert "optional ray        missing: pip install 'resizelab[ray]' (--executor ray)" in lines
