"""Serving recipes: the closed catalogue of resize calls people put in front of a trained model, each made
the way that library's users make it, so that evaluating a model under one measures what that pipeline costs.

Every recipe takes uint8 N x 3 x H x W images and a size (the shorter edge, as torchvision's `Resize(S)`)
and returns uint8 N x 3 x h x w on the host. The libraries that work in uint8 (PIL, torchvision on uint8
tensors, OpenCV) return their own bytes untouched. `torch-interpolate*` computes in float32 on the 0..255
values, as `F.interpolate` on a float batch does, and the result is rounded to the nearest grey level: a
model input is then what `ToTensor()` of that uint8 image would give, at most half a grey level (0.002 after
ToTensor) from the float the library gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core.choices import SERVE_RECIPES
from ..core.config import check_choice
from ..core.optional import require
from .resize import ResizeCache, ResizeKey, output_size


@dataclass(frozen=True)
class Recipe:
    name: str
    library: str  # the distribution whose version is recorded: Pillow, torchvision, torch, opencv
    call: str  # the call, as a user writes it
    resize: Callable[[torch.Tensor, int], torch.Tensor]


def _pil_resize(resample_name: str | None) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def run(images: torch.Tensor, size: int) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        h, w = output_size(images.shape[-2], images.shape[-1], size)
        out = []
        for img in images.permute(0, 2, 3, 1).contiguous().numpy():
            pil = Image.fromarray(img)
            if resample_name is None:
                out.append(np.asarray(pil.resize((w, h))))  # no resample: Pillow's own default
            else:
                out.append(np.asarray(_torchvision_pil_resize(pil, size, resample_name)))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
    return run


def _torchvision_pil_resize(pil, size: int, mode_name: str):
    from torchvision import transforms

    return transforms.Resize(size, interpolation=getattr(transforms.InterpolationMode, mode_name))(pil)


def _tensor_resize(antialias: bool) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def run(images: torch.Tensor, size: int) -> torch.Tensor:
        from torchvision import transforms

        # transforms.Resize on a uint8 batch: the GPU-pipeline recipe; antialias=False is also TF's tf.image.resize default.
        return transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR, antialias=antialias)(images).contiguous()
    return run


def _interpolate(align_corners: bool) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def run(images: torch.Tensor, size: int) -> torch.Tensor:
        import torch.nn.functional as F

        h, w = output_size(images.shape[-2], images.shape[-1], size)
        y = F.interpolate(images.float(), size=(h, w), mode="bilinear", align_corners=align_corners)
        return y.round_().clamp_(0, 255).to(torch.uint8)
    return run


def _cv2(flag_name: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def run(images: torch.Tensor, size: int) -> torch.Tensor:
        import numpy as np

        cv2 = require("cv2", "opencv", f"serving recipe cv2-{flag_name.removeprefix('INTER_').lower()}")
        h, w = output_size(images.shape[-2], images.shape[-1], size)
        flag = getattr(cv2, flag_name)
        src = images.permute(0, 2, 3, 1).contiguous().numpy()
        return torch.from_numpy(np.stack([cv2.resize(img, (w, h), interpolation=flag) for img in src])).permute(0, 3, 1, 2).contiguous()
    return run


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("pil-bilinear", "Pillow", "transforms.Resize(S) on a PIL image (bilinear, antialiased when shrinking)", _pil_resize("BILINEAR")),
    Recipe("pil-bicubic", "Pillow", "transforms.Resize(S, interpolation=BICUBIC) on a PIL image", _pil_resize("BICUBIC")),
    Recipe("pil-default", "Pillow", "Image.resize((w, h)) with no resample (bicubic in Pillow >= 9)", _pil_resize(None)),
    Recipe("tensor-bilinear-aa", "torchvision", "transforms.Resize(S, antialias=True) on a uint8 tensor batch", _tensor_resize(True)),
    Recipe("tensor-bilinear", "torchvision", "transforms.Resize(S, antialias=False) on a uint8 tensor batch", _tensor_resize(False)),
    Recipe("torch-interpolate", "torch", "F.interpolate(x.float(), mode='bilinear', align_corners=False)", _interpolate(False)),
    Recipe("torch-interpolate-corners", "torch", "F.interpolate(x.float(), mode='bilinear', align_corners=True)", _interpolate(True)),
    Recipe("cv2-linear", "opencv", "cv2.resize(img, (w, h)) (INTER_LINEAR, the default)", _cv2("INTER_LINEAR")),
    Recipe("cv2-area", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)", _cv2("INTER_AREA")),
    Recipe("cv2-cubic", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)", _cv2("INTER_CUBIC")),
    Recipe("cv2-nearest", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)", _cv2("INTER_NEAREST")),
    # What resizelab's own --backend opencv nearest runs (pixel centres, as PIL): the baseline of a model trained so.
    Recipe("cv2-nearest-exact", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)",
           _cv2("INTER_NEAREST_EXACT")),
)}
assert tuple(RECIPES) == SERVE_RECIPES


def check_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name is one line listing the recipes, with the closest one."""
    check_choice("serve recipe", name, SERVE_RECIPES)
    return RECIPES[name]


def library_version(name: str) -> str:
    """'<library> <version>' of the library a recipe calls (an absent OpenCV: the install line, as MissingDependency)."""
    recipe = check_recipe(name)
    if recipe.library == "Pillow":
        import PIL

        return f"Pillow {PIL.__version__}"
    if recipe.library == "torchvision":
        import torchvision

        return f"torchvision {torchvision.__version__}"
    if recipe.library == "torch":
        return f"torch {torch.__version__}"
    return f"opencv {require('cv2', 'opencv', f'serving recipe {name}').__version__}"


def apply_recipe(name: str, images: torch.Tensor, size: int) -> torch.Tensor:
    """`images` (uint8 N x 3 x H x W) resized by recipe `name` so that the shorter edge is `size`; uint8, on the host."""
    recipe = check_recipe(name)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"a serving recipe takes uint8 N x 3 x H x W images; got {images.dtype} {tuple(images.shape)}")
    return recipe.resize(images.cpu(), size)


def training_recipe(interpolation: str, antialias: bool, backend: str) -> str | None:
    """The recipe that is exactly what a run's resize did (its baseline), or None when no recipe is (tensor area,
    PIL and tensor nearest, lanczos)."""
    return {
        ("pil", "bilinear"): "pil-bilinear",
        ("pil", "bicubic"): "pil-bicubic",
        ("tensor", "bilinear"): "tensor-bilinear-aa" if antialias else "tensor-bilinear",
        ("opencv", "bilinear"): "cv2-linear",
        ("opencv", "area"): "cv2-area",
        ("opencv", "bicubic"): "cv2-cubic",
        ("opencv", "nearest"): "cv2-nearest-exact",
    }.get((backend, interpolation))


def served_images(cache: ResizeCache, data_key: str, images: torch.Tensor, name: str, size: int) -> torch.Tensor:
    """The test split resized by recipe `name` to `size`, uint8 NHWC, computed once per (data, recipe, library
    version, size) and then read from the resize cache (memory, then disk) like the training splits."""
    library = library_version(name)
    # The version is part of the key: another Pillow or OpenCV may round differently, and must not be served old bytes.
    method = f"{name}@{library.split()[-1]}"
    key = ResizeKey(data_key, "test", size, method, False, "serve")
    out = cache.lookup(key, torch.device("cpu"))
    if out is None:
        out = apply_recipe(name, images, size).permute(0, 2, 3, 1).contiguous()
        cache.store(key, out)
    return out
