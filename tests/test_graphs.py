"""The CUDA defaults and the graph modes: what `auto` resolves to, what a run records, what is refused."""

import pytest

from conftest import error_lines
import torch

from resizelab.training import runtime
from resizelab.cli import main
from resizelab.core.config import RunConfig
from resizelab.training.data import make_synthetic
from resizelab.training.engine import train
from resizelab.core.errors import ConfigError
from resizelab.training.runtime import resolve_channels_last, resolve_graphs, resolve_precision, resolve_single_window_matmul

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_follows_the_cuda_defaults_on_cuda_and_stays_put_on_a_cpu(monkeypatch):
    assert resolve_graphs("auto", CPU) == resolve_graphs("auto", CUDA) == runtime.CUDA_GRAPHS == "off"
    assert resolve_single_window_matmul(None, CUDA) is runtime.CUDA_SINGLE_WINDOW_MATMUL
    assert resolve_single_window_matmul(None, CPU) is True and resolve_single_window_matmul(False, CPU) is False
    # What the GPU check may flip: each constant is the one place a CUDA default lives.
    monkeypatch.setattr(runtime, "CUDA_GRAPHS", "capture")
    monkeypatch.setattr(runtime, "CUDA_SINGLE_WINDOW_MATMUL", False)
    monkeypatch.setattr(runtime, "CUDA_CHANNELS_LAST", False)
    assert resolve_graphs("auto", CUDA) == "capture" and resolve_graphs("auto", CPU) == "off"
    assert resolve_graphs("auto", CUDA, compile=True) == "reduce-overhead"  # compiled and graphed
    assert resolve_single_window_matmul(None, CUDA) is False and resolve_single_window_matmul(None, CPU) is True
    assert resolve_channels_last(None, CUDA, "bf16") is False and resolve_channels_last(None, CPU, "bf16") is True
    monkeypatch.setattr(runtime, "CUDA_PRECISION", "fp32")
    assert resolve_precision("auto", CUDA) == "fp32"


def test_capture_needs_cuda_and_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="graphs 'capture' records CUDA graphs and needs a CUDA device"):
        resolve_graphs("capture", CPU)
    cfg = RunConfig(data="synthetic", weights="none", size=8, epochs=1, limit_train=32, limit_test=16, graphs="capture", device="cpu")
    with pytest.raises(ConfigError, match="use --graphs off"):
        train(cfg, dataset=make_synthetic(40, 16), progress=False)
    args = ["run", "--data", "synthetic", "--weights", "none", "--size", "8", "--graphs", "capture", "--device", "cpu",
            "--db", str(tmp_path / "r.db")]
    assert main(args) == 2
    (line,) = error_lines(capsys.readouterr().err)  # progress lines come first; the error is one line
    assert "needs a CUDA device" in line


def test_a_run_records_the_graph_mode_and_matmul_that_ran():
    cfg = RunConfig(data="synthetic", weights="none", size=8, epochs=1, limit_train=64, limit_test=16, precision="fp32")
    assert cfg.graphs == "auto" and cfg.single_window_matmul is None
    result = train(cfg, dataset=make_synthetic(80, 16), progress=False)
    assert result.provenance["graphs"] == "off" and result.provenance["single_window_matmul"] is True
    assert result.config.graphs == "auto"  # the request; provenance holds what it resolved to
    off = train(RunConfig(**{**cfg.to_dict(), "single_window_matmul": False}), dataset=make_synthetic(80, 16), progress=False)
    assert off.provenance["single_window_matmul"] is False and off.config_hash == result.config_hash  # execution only
