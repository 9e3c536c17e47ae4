"""`import resizelab` is instant: the public API resolves on first use and loads torch only when training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_import_loads_neither_torch_nor_pandas():
    proc = _python(
        "import sys, resizelab\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pandas', 'mlflow', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        # Reading results and planning sweeps resolve without the training stack too.
        "resizelab.RunConfig, resizelab.sweep, resizelab.expand, resizelab.run_sweep, resizelab.load_runs, resizelab.load_evals, resizelab.load_epochs\n"
        "assert 'torch' not in sys.modules\n"
        "assert set(resizelab.__all__) <= set(dir(resizelab))\n"
        "from resizelab import RunConfig, load_runs\n"
        "assert RunConfig.__module__ == 'resizelab.core.config' and load_runs.__module__ == 'resizelab.api'\n"
        "try:\n"
        "    resizelab.nope\n"
        "except AttributeError as e:\n"
        "    assert 'nope' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
        "resizelab.train\n"
        "assert 'torch' in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_train_is_the_engine_function():
    proc = _python(
        "import resizelab\n"
        "from resizelab import RunResult, train\n"
        "from resizelab.training.engine import train as engine_train\n"
        "assert train is engine_train and resizelab.train is train and RunResult.__module__ == 'resizelab.core.results'\n"
    )
    assert proc.returncode == 0, proc.stderr
