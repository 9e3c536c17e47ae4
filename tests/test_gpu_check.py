"""benchmarks/gpu.sh: run end to end on the CPU (so it cannot rot before a GPU runs it), and its reading
of the measurements into targets and recommended CUDA defaults."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import pytest  # noqa: E402



@pytest.mark.slow  # the GPU check's whole CPU smoke run
def test_gpu_sh_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    # The conftest's RESIZELAB_CACHE_DIR is inherited: the check's caches stay in this test's folder.
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu.json").read_text())
    assert set(doc["steps"]) == {"prepare", "bench", "seed/auto", "graphs/off", "pack/local", "pack/packed"}
    assert all(step["status"] == "ok" for step in doc["steps"].values()), doc["steps"]
    assert doc["machine"]["device"] == "cpu" and doc["machine"]["torch"]
    # (a) the benchmark's ratios and its ablation, read from bench.json
    row = doc["bench"]["sizes"]["8"]
    assert row["b_over_a"] > 0 and row["b_over_c"] > 0 and set(row["ablation"]) >= {"other layout", "other 1x1 convs", "all off"}
    assert json.loads((out / "bench.json").read_text())["config"]["run"]["data"] == "synthetic:128:32"
    # (b) the seed preset (scaled to 8 and 16 px here): each run's result, timed from outside
    seed = doc["seed"]["auto"]
    assert [r["size"] for r in sorted(seed["runs"], key=lambda r: r["size"])] == [8, 16]
    assert seed["wall_seconds"] > seed["train_seconds"] > 0 and all(r["graphs"] == "off" for r in seed["runs"])
    # (c) packing: each run packed is bit for bit the run alone (deterministic fp32)
    pack = doc["packing"]
    assert pack["compared"] == pack["identical"] == 3 and pack["max_abs_diff_train_loss"] == 0 and pack["speedup"] > 0
    # (d) the graph mode that ran is the one recorded
    assert doc["graphs"]["off"]["graphs"] == "off" and len(doc["graphs"]["off"]["epoch_seconds"]) == 1
    advice = {a["default"]: a for a in doc["recommendation"]}
    assert set(advice) == {"training.runtime.CUDA_GRAPHS", "training.runtime.CUDA_PRECISION", "training.runtime.CUDA_CHANNELS_LAST",
                           "training.runtime.CUDA_SINGLE_WINDOW_MATMUL", "sweeps.packed.CUDA_AUTO_PACK"}
    assert "Recommendation" in proc.stdout and "training.runtime.CUDA_GRAPHS" in proc.stdout
    assert (out / "logs" / "bench.log").exists()


def test_gpu_sh_needs_an_output_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "output folder" in proc.stderr


def _measured(graphs: dict, seed: dict, speedup: float, identical: int) -> dict:
    """A check's measurements as gpu.json holds them (the figures are made up; the reading is under test)."""
    timed = {m: ({"status": "ok", "train_seconds": s} if s else {"status": "timeout"}) for m, s in graphs.items()}
    return {"check": {"device": "cuda", "profile": copy.deepcopy(gpu_check.PROFILES["cuda"])}, "graphs": timed,
            "seed": {k: {"status": "ok", "wall_seconds": v} for k, v in seed.items()},
            "packing": {"speedup": speedup, "identical": identical, "compared": 18, "settings": {"pack": 6}}}


def test_the_recommendation_follows_the_measurements():
    # Capture wins clearly, compile ran out of time, the matmul changes nothing under capture, packing pays.
    doc = _measured({"off": 20.0, "capture": 8.0, "reduce-overhead": None, "capture/1x1mm-off": 7.9},
                    {"auto": 70.0, "capture": 41.0}, speedup=3.4, identical=18)
    out = gpu_check.summarize(doc)
    advice = {a["default"]: a for a in out["recommendation"]}
    assert advice["training.runtime.CUDA_GRAPHS"]["recommended"] == "capture" and advice["training.runtime.CUDA_GRAPHS"]["change"]
    assert "ran out of time: reduce-overhead" in advice["training.runtime.CUDA_GRAPHS"]["because"]
    assert advice["training.runtime.CUDA_SINGLE_WINDOW_MATMUL"]["recommended"] is False
    assert advice["sweeps.packed.CUDA_AUTO_PACK"]["recommended"] == 6
    seed = next(t for t in out["targets"] if t["target"].startswith("seed"))
    assert seed["measured"] == 41.0 and seed["met"] and seed["graphs"] == "capture"
    # A win inside the noise changes nothing; packed runs that differ from their runs alone are not made the default.
    doc = _measured({"off": 20.0, "capture": 19.5, "off/1x1mm-off": 22.0}, {"auto": 70.0}, speedup=3.4, identical=17)
    out = gpu_check.summarize(doc)
    advice = {a["default"]: a for a in out["recommendation"]}
    assert advice["training.runtime.CUDA_GRAPHS"]["recommended"] == "off" and not advice["training.runtime.CUDA_GRAPHS"]["change"]
    assert advice["training.runtime.CUDA_SINGLE_WINDOW_MATMUL"]["recommended"] is True
    assert advice["sweeps.packed.CUDA_AUTO_PACK"]["recommended"] == 1
    assert not next(t for t in out["targets"] if t["target"].startswith("seed"))["met"]
