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

from ..training import provenance
from ..core.choices import GRAPHS, PRECISIONS  # noqa: F401 - re-exported
from ..core.errors import ConfigError
from .singlewindow import use_single_window_matmul
from .threads import current_threads, set_interop_threads, set_threads


# What `auto` means on CUDA. No GPU has run resizelab yet, so these are the values the code had before
# the GPU check existed; benchmarks/gpu.sh measures each and prints which to change (BENCHMARKS.md, "GPU",
# says on which figure). Every run records the values it ran with.
CUDA_PRECISION = "bf16"  # fp16 (with a GradScaler) on GPUs without bf16
CUDA_CHANNELS_LAST = True
CUDA_GRAPHS = "off"  # one of GRAPHS but auto
CUDA_SINGLE_WINDOW_MATMUL = True

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
    """'auto': CUDA_PRECISION on CUDA (bf16; fp16 on GPUs without bf16) and bf16 on a CPU with native bf16, fp32 on other
    CPUs; with single_window_matmul off, a CPU picks bf16 only when a training step has at least
    CPU_BF16_MIN_MACS_PER_PARAM multiply-accumulates per parameter."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 or fp32")
        return precision
    if device.type == "cuda":
        return "fp16" if CUDA_PRECISION == "bf16" and not torch.cuda.is_bf16_supported() else CUDA_PRECISION
    if not provenance.cpu_supports_bf16():
        return "fp32"
    if not single_window_matmul and macs_per_step is not None and params:
        return "bf16" if macs_per_step / params >= CPU_BF16_MIN_MACS_PER_PARAM else "fp32"
    return "bf16"


def resolve_channels_last(channels_last: bool | None, device: torch.device, precision: str, single_window_matmul: bool = True) -> bool:
    """None (auto): CUDA_CHANNELS_LAST on CUDA; on a CPU channels_last, except NCHW for fp32 without the
    single-window matmul, where oneDNN's channels_last kernels for 1x1 maps made 16-32 px steps 10-18% slower."""
    if channels_last is not None:
        return channels_last
    if device.type == "cuda":
        return CUDA_CHANNELS_LAST
    return precision != "fp32" or single_window_matmul


def resolve_single_window_matmul(single_window_matmul: bool | None, device: torch.device) -> bool:
    """None (auto): on for a CPU (1.5-2.2x at 16-32 px, BENCHMARKS.md); CUDA_SINGLE_WINDOW_MATMUL on CUDA."""
    if single_window_matmul is not None:
        return single_window_matmul
    return CUDA_SINGLE_WINDOW_MATMUL if device.type == "cuda" else True


def resolve_graphs(graphs: str, device: torch.device, compile: bool = False) -> str:  # noqa: A002 - the option's name
    """The graph mode a run uses: 'auto' is CUDA_GRAPHS on CUDA (with --compile, graphed means reduce-overhead)
    and 'off' on a CPU, where there are no CUDA graphs; 'capture' needs CUDA."""
    if graphs == "auto":
        if device.type != "cuda" or CUDA_GRAPHS == "off":
            return "off"
        return "reduce-overhead" if compile else CUDA_GRAPHS
    if graphs == "capture" and device.type != "cuda":
        raise ConfigError(f"graphs 'capture' records CUDA graphs and needs a CUDA device; this run is on {device}. "
                          "use --graphs off (or auto) here")
    return graphs


class _Graphable(nn.Module):
    """make_graphed_callables replaces the forward of the module it is given: this one, not the model's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def capture_graphs(model: nn.Module, sample: torch.Tensor, device: torch.device, precision: str):
    """The model's forward and backward captured as CUDA graphs (torch.cuda.make_graphed_callables) on a
    batch shaped like `sample`; returns the graphed callable. The model itself stays as it was: eager, for
    batches of another shape and for evaluation, with the same parameters."""
    wrapper = _Graphable(model)
    # Its warm-up and capture run BatchNorm four extra times on this batch, each one moving the running
    # statistics: they are put back, so a captured run trains exactly as far as an eager one.
    saved = [b.detach().clone() for b in model.buffers()]
    with autocast(device, precision, cache=False):
        graphed = torch.cuda.make_graphed_callables(wrapper, (sample.detach().clone(),))
    with torch.no_grad():
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)
    return graphed


def ready_model(model: nn.Module, single_window_matmul: bool, channels_last: bool) -> nn.Module:
    """The model as resizelab runs it, in place: 1x1-output convolutions as matmuls, the chosen memory format."""
    if single_window_matmul:
        use_single_window_matmul(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The precision's autocast context; cache=False for CUDA graph capture, which cannot use autocast's weight cache."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def use_threads(threads: int | None) -> int:
    """Compute with `threads` torch threads from here on (None: keep this process's count, which is its share
    of the machine: set by the packed worker or the machine's thread ledger, else torch's default of the
    cores); the intra-op count now in force. Inter-op threads follow where torch still allows it."""
    if threads is not None:
        set_threads(threads)
        set_interop_threads(threads)
    return current_threads()


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


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a run can still take here (what the engine checks a run's resized splits against before allocating): free GPU memory, or on a CPU the least of MemAvailable, the cgroup's
    limit and RLIMIT_AS; None when none of them can be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if text.isdigit():
            limits.append(int(text) - used)
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else None
