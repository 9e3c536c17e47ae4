"""Learned resizers (`--interpolation muller` / `talebi`): small modules trained jointly with the classifier,
each built on a fixed bilinear resize (torch ops) from the stored source images to the run's size.

The data path feeds a learned run its source images unresized, the same uint8 tensors every fixed arm
resizes, so the comparison cannot hand one arm more pixels (the fairness rule, by construction); the resize
happens inside the model, which is `ResizedModel(resizer, backbone)`.

Architectures, written from the papers' descriptions (no code copied):

* talebi (Talebi & Milanfar, ICCV 2021, "Learning to Resize Images for Computer Vision Tasks"): the image
  bilinearly resized to the target is a skip path; a CNN branch at the source resolution, conv 7x7 (3->n),
  LeakyReLU(0.2), conv 1x1 (n->n), LeakyReLU, BN, then bilinear resize of the features to the target, r
  residual blocks (conv 3x3, BN, LeakyReLU, conv 3x3, BN, plus the block's input), conv 3x3, BN, plus the
  resized features, conv 7x7 (n->3); the output is added to the resized image. n=16, r=1: 12,083 parameters.
* muller (Tu, Milanfar & Talebi, ICCV 2023, "MULLER: Multilayer Laplacian Resizer"): our reading. y0 is the
  bilinearly resized image; b_0 = y0 and b_k = G(b_{k-1}) for a fixed 5x5 Gaussian G of sigma 1 (so b_k is y0
  blurred at sigma sqrt(k)); each layer's band-pass residual d_k = b_{k-1} - b_k is modulated by a learned scale
  and bias and added back: y = y0 + sum_k tanh(alpha_k d_k + beta_k). L=2 layers: 4 parameters, all zero at
  initialisation, so training starts from exactly bilinear. Sigma fixed (not learned): keeps the module a
  handful of scalars, as the paper stresses.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.choices import LEARNED_INTERPOLATIONS
from ..core.errors import ConfigError
from .resize import output_size

# The fixed method each learned resizer wraps (its skip path), named as the fixed arms name it.
WRAPS = "bilinear"
TALEBI_FILTERS, TALEBI_BLOCKS = 16, 1
MULLER_LAYERS, MULLER_SIGMA, MULLER_KERNEL = 2, 1.0, 5


def fixed_resize(x: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """Bilinear resize of float NCHW so the shorter edge is `size` (torchvision's Resize rule)."""
    h, w = output_size(x.shape[-2], x.shape[-1], size)
    if (h, w) == tuple(x.shape[-2:]):
        return x
    if antialias and x.dtype != torch.float32:
        # torch's antialiased bilinear has no bf16/fp16 kernel on the CPU: filter in fp32, hand back the input's dtype.
        return F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True).to(x.dtype)
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)


class TalebiResizer(nn.Module):
    def __init__(self, size: int, antialias: bool, filters: int = TALEBI_FILTERS, blocks: int = TALEBI_BLOCKS):
        super().__init__()
        self.size, self.antialias = size, antialias
        n = filters
        self.head = nn.Sequential(nn.Conv2d(3, n, 7, padding=3), nn.LeakyReLU(0.2), nn.Conv2d(n, n, 1), nn.LeakyReLU(0.2),
                                  nn.BatchNorm2d(n))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.BatchNorm2d(n), nn.LeakyReLU(0.2),
                          nn.Conv2d(n, n, 3, padding=1), nn.BatchNorm2d(n)) for _ in range(blocks))
        self.tail = nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.BatchNorm2d(n))
        self.out = nn.Conv2d(n, 3, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = fixed_resize(x, self.size, self.antialias)
        z = fixed_resize(self.head(x), self.size, self.antialias)
        h = z
        for block in self.blocks:
            h = h + block(h)
        return skip + self.out(self.tail(h) + z)


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


class MullerResizer(nn.Module):
    def __init__(self, size: int, antialias: bool, layers: int = MULLER_LAYERS, sigma: float = MULLER_SIGMA,
                 kernel: int = MULLER_KERNEL):
        super().__init__()
        self.size, self.antialias = size, antialias
        self.alpha = nn.Parameter(torch.zeros(layers))
        self.beta = nn.Parameter(torch.zeros(layers))
        # A buffer, not a parameter: the blur is fixed; saved with the weights so a stored run is self-describing.
        self.register_buffer("blur", gaussian_kernel(sigma, kernel).expand(3, 1, kernel, kernel).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = fixed_resize(x, self.size, self.antialias)
        pad = self.blur.shape[-1] // 2
        out, prev = y0, y0
        for k in range(self.alpha.shape[0]):
            # Reflect padding: zero padding would make every border a band-pass edge to sharpen.
            blurred = F.conv2d(F.pad(prev, (pad,) * 4, mode="reflect"), self.blur.to(prev.dtype), groups=3)
            out = out + torch.tanh(self.alpha[k] * (prev - blurred) + self.beta[k])
            prev = blurred
        return out


class ResizedModel(nn.Module):
    """A learned resizer in front of a classifier: one model, trained, stored and served as one."""

    def __init__(self, resizer: nn.Module, backbone: nn.Module):
        super().__init__()
        self.resizer, self.backbone = resizer, backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.resizer(x))


def is_learned(method: str | None) -> bool:
    return method in LEARNED_INTERPOLATIONS


def build_resizer(method: str, size: int, antialias: bool) -> nn.Module:
    if method == "talebi":
        return TalebiResizer(size, antialias)
    if method == "muller":
        return MullerResizer(size, antialias)
    raise ConfigError(f"learned interpolation must be one of {', '.join(LEARNED_INTERPOLATIONS)}; got {method!r}")


def wrap(backbone: nn.Module, method: str, size: int, antialias: bool) -> ResizedModel:
    return ResizedModel(build_resizer(method, size, antialias), backbone)


def resizer_params(method: str) -> int:
    """Trainable parameters, from the architecture (the docs' numbers; a test checks them against the module)."""
    if method == "muller":
        return 2 * MULLER_LAYERS
    n, r = TALEBI_FILTERS, TALEBI_BLOCKS
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    bn = 2 * n
    return conv(3, n, 7) + conv(n, n, 1) + bn + r * (2 * conv(n, n, 3) + 2 * bn) + conv(n, n, 3) + bn + conv(n, 3, 7)


def resizer_macs(method: str, source_hw: tuple[int, int], size: int) -> int:
    """Multiply-accumulates per image of the resizer's convolutions, as torch's FLOP counter counts them (bias,
    BN, activations, the additions and the bilinear resize itself are not counted: O(pixels) each)."""
    sh, sw = source_hw
    th, tw = output_size(sh, sw, size)
    if method == "muller":
        return MULLER_LAYERS * 3 * MULLER_KERNEL ** 2 * th * tw
    n, r = TALEBI_FILTERS, TALEBI_BLOCKS
    at_source = (3 * n * 49 + n * n) * sh * sw
    at_target = (r * 2 * n * n * 9 + n * n * 9 + n * 3 * 49) * th * tw
    return at_source + at_target


def attach(backbone: nn.Module, method: str, size: int, antialias: bool, source_hw: tuple[int, int],
           device: torch.device) -> tuple[ResizedModel, dict]:
    """The backbone behind a new learned resizer on `device`, and the resizer's cost beside the fixed resize it wraps:
    parameters, MACs per image at this source size, and forward images/s of both measured side by side here
    (serving cost; the training images/s is the run's own, against the fixed arm's run)."""
    from .models import count_macs

    model = wrap(backbone, method, size, antialias).to(device)
    resizer = model.resizer
    cost = {"method": method, "wraps": WRAPS, "params": sum(p.numel() for p in resizer.parameters()),
            "macs_per_image": count_macs(resizer, (3, *source_hw), device), "wraps_params": 0, "wraps_macs_per_image": 0,
            "source_hw": list(source_hw)}
    cost.update(forward_rates(resizer, source_hw, device))
    return model, cost


@torch.inference_mode()
def forward_rates(resizer: nn.Module, source_hw: tuple[int, int], device: torch.device, batch: int = 64,
                  repeats: int = 3) -> dict:
    """Images/s of the resizer's forward pass and of the bare bilinear resize it wraps, interleaved in one
    process so that machine load hits both alike; the best of `repeats` each."""
    import time

    x = torch.randn(batch, 3, *source_hw, device=device)
    was_training = resizer.training
    resizer.eval()
    best = {"learned": float("inf"), "fixed": float("inf")}
    for _ in range(repeats):
        for name, fn in (("learned", resizer), ("fixed", lambda t: fixed_resize(t, resizer.size, resizer.antialias))):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    resizer.train(was_training)
    return {"serving_images_per_second": batch / best["learned"], "wraps_serving_images_per_second": batch / best["fixed"]}


def load_resizer(method: str, size: int, antialias: bool, weights_path: str, what: str) -> nn.Module:
    """The trained resizer of a stored run (the `resizer.*` entries of its saved state_dict), in eval mode."""
    from ..core.errors import WeightsError
    from .models import load_state_dict_file

    state = load_state_dict_file(weights_path, what)
    own = {k.removeprefix("resizer."): v for k, v in state.items() if k.startswith("resizer.")}
    resizer = build_resizer(method, size, antialias)
    if set(own) != set(resizer.state_dict()):
        raise WeightsError(f"{what} {weights_path} holds no {method} resizer (its keys: {', '.join(sorted(state)[:3])}, ...); "
                           "give a run trained with --interpolation muller or talebi and --save-weights")
    resizer.load_state_dict(own, strict=True)
    return resizer.eval()


@torch.inference_mode()
def learned_resize(resizer: nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N x 3 x H x W through a trained resizer to `size` (its weights do not depend on the target size), back
    to uint8 as the model would see it before normalisation: for looking at what it does to the signal."""
    from .pipeline import NORM_MEAN, NORM_STD

    trained_size = resizer.size
    resizer.size = size
    try:
        y = resizer(images.float().div(255).sub(NORM_MEAN).div(NORM_STD))
    finally:
        resizer.size = trained_size
    return y.mul(NORM_STD).add(NORM_MEAN).mul(255).round().clamp(0, 255).to(torch.uint8)
