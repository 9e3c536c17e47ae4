"""Hardware policy: which device, precision and memory layout a run uses, and the helpers that apply them.

One place decides what `auto` means on this machine; the engine, the benchmark and `resizelab env`
all ask here, so what is measured is what runs.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource

import numpy as np
import torch
import torch.nn as nn

from . import provenance
from .errors import ConfigError
from .singlewindow import use_single_window_matmul

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# CPU autocast casts every weight to bf16 and every weight gradient back on each step, a cost that
# grows with the parameters, while bf16's gain grows with the step's compute. With the single-window
# matmul, layer4's large weights are cast only at the taps that meet pixels, and bf16 (channels_last)
# was the fastest setting from 8 to 224 px for ResNet-18, batch 32, on a 2-core AVX512-BF16 EPYC
# (BENCHMARKS.md). Without it, oneDNN's convolutions on 1x1 maps dominate small inputs and fp32 NCHW was
# faster at 16 and 24 px (45 and 81 MACs per parameter per step); bf16 won from 32 px (106).
CPU_BF16_MIN_MACS_PER_PARAM = 96


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto")
    return device


def resolve_precision(precision: str, device: torch.device, macs_per_step: int | None = None, params: int | None = None,
                      single_window_matmul: bool = True) -> str:
    """'auto': bf16 on CUDA (fp16 on GPUs without bf16) and on a CPU with native bf16, fp32 on other
    CPUs; with single_window_matmul off, a CPU picks bf16 only when a training step has at least
    CPU_BF16_MIN_MACS_PER_PARAM multiply-accumulates per parameter."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if not provenance.cpu_supports_bf16():
        return "fp32"
    if not single_window_matmul and macs_per_step is not None and params:
        return "bf16" if macs_per_step / params >= CPU_BF16_MIN_MACS_PER_PARAM else "fp32"
    return "bf16"


def resolve_channels_last(channels_last: bool | None, device: torch.device, precision: str, single_window_matmul: bool = True) -> bool:
    """None (auto): channels_last, except NCHW for fp32 on a CPU without the single-window matmul, where
    oneDNN's channels_last kernels for 1x1 maps made 16-32 px steps 10-18% slower."""
    if channels_last is not None:
        return channels_last
    return device.type == "cuda" or precision != "fp32" or single_window_matmul


def ready_model(model: nn.Module, single_window_matmul: bool, channels_last: bool) -> nn.Module:
    """The model as resizelab runs it, in place: 1x1-output convolutions as matmuls, the chosen memory format."""
    if single_window_matmul:
        use_single_window_matmul(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a host clock measures it; nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    # Linux reports KiB. Process-wide high-water mark, so in a sweep it is the peak so far.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"
