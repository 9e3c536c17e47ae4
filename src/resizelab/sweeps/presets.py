"""Named studies that `resizelab study --preset NAME` runs and reports in one go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from ..core.config import GridSpec
from .plan import SweepPlan, default_name, expand_spec

# The classic study: ImageNet ResNet-18 fine-tuned on CIFAR-10, PIL bilinear resize, SGD 0.001/0.9,
# batch 32, 2 epochs, Normalize(0.5, 0.5). Spelled out even where it equals RunConfig's defaults: the
# study is pinned, so a later change of a default cannot silently change what `make study` reproduces.
SEED_BASE = dict(data="cifar10", arch="resnet18", weights="imagenet", stem="imagenet", epochs=2, batch_size=32,
                 lr=0.001, momentum=0.9, weight_decay=0.0, optimizer="sgd", schedule="constant",
                 interpolation="bilinear", antialias=True, backend="pil", augment="none")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    base: dict[str, Any]
    grid: dict[str, list] = field(default_factory=dict)
    variants: tuple[dict[str, Any], ...] = ()
    seeds: int = 1

    def plan(self, overrides: dict[str, Any] | None = None, name: str | None = None, *, max_runs: int | None = None) -> SweepPlan:
        """The preset's runs with `overrides` (GridSpec.override: a list replaces an axis, a scalar fixes a
        field, `seed` sets the seeds), named after the preset plus a digest of what was changed."""
        overrides = dict(overrides or {})
        spec = GridSpec(dict(self.base), dict(self.grid), [dict(v) for v in self.variants], list(range(self.seeds)))
        spec = spec.override(overrides)
        if name is None:
            name = default_name(self.name, overrides) if overrides else self.name
        return expand_spec(spec, name, max_runs=max_runs)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("seed", "the classic study: ImageNet ResNet-18 on CIFAR-10 at 32 px (native), 64 px (bilinear up) and 16 px (down)",
               SEED_BASE, grid={"size": [32, 64, 16]}),
        Preset("resolution", "accuracy and cost against input size, 8 to 224 px, for nearest, bilinear and bicubic",
               {**SEED_BASE, "backend": "tensor"},
               grid={"size": [8, 16, 24, 32, 48, 64, 96, 128, 160, 224], "interpolation": ["nearest", "bilinear", "bicubic"]},
               seeds=3),
        Preset("interpolation", "every method with antialias on and off, at a downsampled (16 px) and an upsampled (64 px) size",
               {**SEED_BASE, "backend": "tensor"},
               grid={"size": [16, 64], "interpolation": ["nearest", "bilinear", "bicubic", "area"], "antialias": [True, False]},
               variants=({}, {"interpolation": "lanczos", "backend": "pil"}), seeds=3),
        Preset("stem", "ImageNet stem on upsampled 128 px input vs CIFAR stem at native 32 px (layer1 at 32x32 in both: matched cost)",
               {**SEED_BASE, "backend": "tensor"},
               variants=({"stem": "imagenet", "size": 128}, {"stem": "cifar", "size": 32}, {"stem": "imagenet", "size": 32}),
               seeds=3),
        Preset("findings", "the smallest set of runs that gives every claim of the classic study a verdict (report: Findings): "
               "16 and 64 px x nearest/bilinear/bicubic, antialias on and off where a downsample can use it, the native "
               "32 px once; trained weights saved for the probe",
               {**SEED_BASE, "backend": "tensor", "save_weights": True},
               # Variants, not a grid: at the native size every method is the same computation, and antialias
               # changes nothing an upsample does (bicubic's would only swap its kernel), so each is run once.
               variants=({"size": 32, "interpolation": "bilinear"},
                         *({"size": 16, "interpolation": m, "antialias": aa} for m in ("bilinear", "bicubic") for aa in (True, False)),
                         *({"size": s, "interpolation": "nearest"} for s in (16, 64)),
                         *({"size": 64, "interpolation": m} for m in ("bilinear", "bicubic"))),
               seeds=3),
        Preset("serve", "train with five resizes (pil-bilinear, the tensor backend's bilinear, cv2-linear, cv2-area, cv2-nearest-exact) "
               "at a downsampled (16 px) and an upsampled (64 px) size, each model evaluated under every serving recipe "
               "(report: the train x serve matrix with a verdict per cell)",
               {**SEED_BASE, "serve": "all"},
               grid={"size": [16, 64]},
               # Each training recipe as the backend that runs it; OpenCV's nearest is INTER_NEAREST_EXACT (pixel centres),
               # so plain INTER_NEAREST (cv2-nearest) is served, not trained.
               variants=({"backend": "pil", "interpolation": "bilinear"},
                         {"backend": "tensor", "interpolation": "bilinear", "antialias": False},
                         {"backend": "opencv", "interpolation": "bilinear"},
                         {"backend": "opencv", "interpolation": "area"},
                         {"backend": "opencv", "interpolation": "nearest"}),
               seeds=3),
        Preset("learned", "learned resizers (muller: 4 parameters; talebi: a 12k-parameter CNN) against the fixed bilinear "
               "and bicubic they compete with, at 16, 32 and 64 px, from CIFAR-10's 32 px sources and from a high-resolution "
               "source (the synthetic task drawn at 128 px); every arm fed the same source tensors; weights saved for "
               "serve and spectrum",
               {**SEED_BASE, "backend": "tensor", "save_weights": True},
               grid={"size": [16, 32, 64], "interpolation": ["bilinear", "bicubic", "muller", "talebi"]},
               variants=({}, {"data": "synthetic:5000:1000@128"}), seeds=3),
        Preset("fixres", "train at one size, test at others (FixRes): train 16/32/64 px, each tested at 16, 24, 32, 48, 64 px",
               {**SEED_BASE, "backend": "tensor", "test_sizes": (16, 24, 32, 48, 64)},
               grid={"size": [16, 32, 64]}, seeds=2),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]
