"""Convolutions with a single output position, computed as the matrix product they are.

An ImageNet ResNet fed CIFAR-sized images shrinks its feature maps to 1x1 in the last stage (layer4
at 32 px; layer3 as well at 16 px). A 3x3 convolution with padding 1 on a 1x1 map has one output
position, and its window meets the input only at the kernel's centre; the other eight taps multiply
zero padding. oneDNN computes all nine: on a 2-core CPU these convolutions took 4-7x as long as the
equivalent matrix product under bf16 and channels_last, forward and backward (1.4-4.5x in fp32;
benchmarks/single_window_conv.py), and over a third of a 32 px training step went to them.

`SingleWindowConv2d` keeps the parameters and state_dict of the nn.Conv2d it replaces; when the output
is 1x1 it computes y = x[:, :, :rows, :cols] · weight[:, :, taps] as one product, the same function up
to float rounding, and otherwise it is an ordinary nn.Conv2d.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def single_window(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int]) -> tuple[int, int] | None:
    """(rows, cols) of the input read by a convolution whose output is 1x1; None if it has more
    output positions, or if its one window meets only padding."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = in_hw, kernel, stride, padding
    if not (0 <= h + 2 * ph - kh < sh and 0 <= w + 2 * pw - kw < sw):
        return None
    # The window starts at padded row 0, so input row u meets kernel row u + ph.
    rows, cols = min(h, kh - ph), min(w, kw - pw)
    return (rows, cols) if rows > 0 and cols > 0 else None


class _Taps(torch.autograd.Function):
    """weight[:, :, r0:r1, c0:c1] as [out, rows * cols * in]; its gradient keeps the weight's memory format.

    Plain slicing computes the same, but its backward builds a contiguous zero tensor that
    AccumulateGrad then copies into a channels_last parameter's layout: two more passes over the
    largest weights of the network on every step.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.box = box
        ctx.save_for_backward(weight)
        r0, r1, c0, c1 = box
        # Pixel-major, as the input is flattened below: a view of a channels_last weight when the box is one tap.
        return weight[:, :, r0:r1, c0:c1].permute(0, 2, 3, 1).reshape(weight.shape[0], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        r0, r1, c0, c1 = ctx.box
        full = torch.zeros_like(weight)  # preserve_format: the parameter's own layout
        full[:, :, r0:r1, c0:c1] = grad.view(grad.shape[0], r1 - r0, c1 - c0, -1).permute(0, 3, 1, 2)
        return full, None


class SingleWindowConv2d(nn.Conv2d):
    """nn.Conv2d that runs as one matrix product when its output is a single position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = self._window(x)
        if window is None:
            return super().forward(x)
        (rows, cols), (ph, pw) = window, self.padding
        taps = _Taps.apply(self.weight, (ph, ph + rows, pw, pw + cols))
        pixels = x[:, :, :rows, :cols].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        # A 1x1 map is contiguous in both memory formats, so this suits an NCHW and a channels_last model alike.
        return F.linear(pixels, taps, self.bias).view(x.shape[0], self.out_channels, 1, 1)

    def _window(self, x: torch.Tensor) -> tuple[int, int] | None:
        if x.dim() != 4 or self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return None
        return single_window(tuple(x.shape[-2:]), self.kernel_size, self.stride, self.padding)


def use_single_window_matmul(model: nn.Module) -> int:
    """Make every plain nn.Conv2d in `model` a SingleWindowConv2d, in place; returns how many.

    Only the class changes (a subclass with no state of its own), so parameters, buffers, hooks,
    device and state_dict keys stay as they were.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SingleWindowConv2d
            count += 1
    return count
