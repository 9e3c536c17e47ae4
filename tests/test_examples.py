"""The examples run as a user runs them: a subprocess, from a clean process, on tiny limits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the quickstart script end to end
def test_quickstart_trains_sweeps_and_prints_the_runs_frame(isolated_cache, tmp_path):
    pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")
    db = tmp_path / "quickstart.db"
    # isolated_cache has set the cache variables. One thread: tiny runs gain nothing from a second, and on
    # a shared 2-core machine a contended second OpenMP thread made this test 5x slower.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "synthetic", "--limit-train", "64",
                           "--limit-test", "32", "--db", str(db)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("one run   resnet18/imagenet 24px")
    assert "2 runs trained, 0 already" in lines[1]
    header, *rows = lines[2:]
    assert header.split()[:4] == ["config_hash", "size", "size_px", "input_height_px"]
    assert [row.split()[1:4] for row in rows] == [["16", "16", "16"], ["native", "<NA>", "32"]]
    # What it printed is what the store holds.
    from resizelab.api import load_runs

    stored = load_runs(db, sweep="quickstart")
    assert [row.split()[0] for row in rows] == list(stored["config_hash"])
