"""Forward + backward time of ResNet-18's single-window convolutions: nn.Conv2d vs SingleWindowConv2d.

The shapes are the ones layer4 of an ImageNet-stem ResNet-18 meets at 32 px (batch 32): 3x3 convolutions
on 1x1 maps, and the stride-2 3x3 convolution from 2x2 to 1x1. Each cell is the median of 7 windows;
the two kernels of a row are timed alternately, window by window, so a drifting machine moves both.

    PYTHONPATH=src python benchmarks/single_window_conv.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from resizelab.training.singlewindow import use_single_window_matmul
from resizelab.training.runtime import synchronize

# (in channels, out channels, input px, stride) at 32 px
SHAPES = [(512, 512, 1, 1), (256, 512, 2, 2)]


def _window_ms(fn, device: torch.device, steps: int = 20) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = [torch.float32, torch.bfloat16]
    print(f"{'shape':>22}  {'dtype':>8}  {'layout':>13}  {'conv ms':>8}  {'matmul ms':>9}  {'speed-up':>8}")
    for c_in, c_out, px, stride in SHAPES:
        for dtype in dtypes:
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False).to(device, dtype, memory_format=fmt)
                twin = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False).to(device, dtype, memory_format=fmt)
                twin.load_state_dict(conv.state_dict())
                use_single_window_matmul(twin)
                x = torch.randn(args.batch_size, c_in, px, px, device=device, dtype=dtype).contiguous(memory_format=fmt)
                x.requires_grad_()

                def step(module):
                    def run():
                        module(x).sum().backward()
                    return run

                runs = {"conv": step(conv), "matmul": step(twin)}
                for run in runs.values():
                    for _ in range(3):
                        run()
                times = {name: [] for name in runs}
                for _ in range(7):
                    for name, run in runs.items():
                        times[name].append(_window_ms(run, device))
                conv_ms, mm_ms = statistics.median(times["conv"]), statistics.median(times["matmul"])
                shape = f"{c_in}->{c_out} {px}x{px} s{stride}"
                layout = "channels_last" if channels_last else "NCHW"
                print(f"{shape:>22}  {str(dtype)[6:]:>8}  {layout:>13}  {conv_ms:>8.2f}  {mm_ms:>9.2f}  {conv_ms / mm_ms:>7.1f}x", flush=True)


if __name__ == "__main__":
    main()
