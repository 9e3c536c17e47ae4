"""Serving recipes: the closed catalogue of resize calls people put in front of a trained model, each made
the way that library's users make it, so that evaluating a model under one measures what that pipeline costs.

Every recipe takes uint8 N x 3 x H x W images and a size (the shorter edge, as torchvision's `Resize(S)`)
and returns uint8 N x 3 x h x w on the host. The libraries that work in uint8 (PIL, torchvision on uint8
tensors, OpenCV) return their own bytes untouched. `torch-interpolate*` computes in float32 on the 0..255
values, as `F.interpolate` on a float batch does, and the result is rounded to the nearest grey level: a
model input is then what `ToTensor()` of that uint8 image would give, at most half a grey level (0.002 after
ToTensor) from the float the library gave.

A run's own resize (its `--backend`, interpolation and antialias) is a recipe too, `backend:<backend>-<method>`
(with `-aa` where antialias is a choice and on): `resize` itself, on the device the model is evaluated on, as
the run's own evaluation does. It is every run's baseline, so that serving a stored run with its own recipe
gives back its own test accuracy. Where a catalogue recipe is the very call a backend makes (`same_call_as`:
pil-bilinear and pil-bicubic are `--backend pil`'s, the cv2 recipes `--backend opencv`'s) it gives the same
bytes (tests/test_recipes.py checks it) and is the baseline under its own name. No catalogue recipe is
`--backend tensor`'s call: tensor-bilinear(-aa) is torchvision's v1 `transforms.Resize` on a uint8 tensor,
which resizes in float, while the backend calls v2's functional `resize`, which keeps uint8 (PIL's AA
kernel): up to one grey level apart, on many pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core.choices import BACKEND_INTERPOLATIONS, SERVE_RECIPES, effective_antialias
from ..core.config import check_choice
from ..core.errors import ConfigError
from ..core.optional import require
from .resize import ResizeCache, ResizeKey, backend_call, output_size, resize

# A run's own resize as a recipe: "backend:tensor-bilinear-aa" (see the module's docstring).
BACKEND_PREFIX = "backend:"


@dataclass(frozen=True)
class Recipe:
    name: str
    library: str  # the distribution whose version is recorded: Pillow, torchvision, torch, opencv
    call: str  # the call, as a user writes it
    resize: Callable[[torch.Tensor, int], torch.Tensor]
    # (backend, interpolation) of runs whose resize is this very call, hence these very bytes (tested).
    same_call_as: tuple[tuple[str, str], ...] = ()
    runs_on_model_device: bool = False  # a run's own tensor resize: computed where the model is evaluated, as the run did


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

        # v1 transforms.Resize on a uint8 batch (it resizes in float and rounds): the GPU-pipeline recipe users write;
        # antialias=False is also TF's tf.image.resize default. Not --backend tensor's call (v2, uint8 kernels).
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
    Recipe("pil-bilinear", "Pillow", "torchvision.transforms.Resize(S) on a PIL image (bilinear, antialiased when shrinking)",
           _pil_resize("BILINEAR"), same_call_as=(("pil", "bilinear"),)),
    Recipe("pil-bicubic", "Pillow", "torchvision.transforms.Resize(S, interpolation=BICUBIC) on a PIL image", _pil_resize("BICUBIC"),
           same_call_as=(("pil", "bicubic"),)),
    Recipe("pil-default", "Pillow", "PIL.Image.resize((w, h)) with no resample (bicubic in Pillow >= 9)", _pil_resize(None)),
    Recipe("tensor-bilinear-aa", "torchvision", "torchvision.transforms.Resize(S, antialias=True) (v1) on a uint8 tensor batch",
           _tensor_resize(True)),
    Recipe("tensor-bilinear", "torchvision", "torchvision.transforms.Resize(S, antialias=False) (v1) on a uint8 tensor batch",
           _tensor_resize(False)),
    Recipe("torch-interpolate", "torch", "torch.nn.functional.interpolate(x.float(), mode='bilinear', align_corners=False)",
           _interpolate(False)),
    Recipe("torch-interpolate-corners", "torch", "torch.nn.functional.interpolate(x.float(), mode='bilinear', align_corners=True)",
           _interpolate(True)),
    Recipe("cv2-linear", "opencv", "cv2.resize(img, (w, h)) (INTER_LINEAR, the default)", _cv2("INTER_LINEAR"),
           same_call_as=(("opencv", "bilinear"),)),
    Recipe("cv2-area", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)", _cv2("INTER_AREA"),
           same_call_as=(("opencv", "area"),)),
    Recipe("cv2-cubic", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)", _cv2("INTER_CUBIC"),
           same_call_as=(("opencv", "bicubic"),)),
    Recipe("cv2-nearest", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)", _cv2("INTER_NEAREST")),
    # What resizelab's own --backend opencv nearest runs (pixel centres, as PIL): the baseline of a model trained so.
    Recipe("cv2-nearest-exact", "opencv", "cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)",
           _cv2("INTER_NEAREST_EXACT"), same_call_as=(("opencv", "nearest"),)),
)}
assert tuple(RECIPES) == SERVE_RECIPES


def backend_recipe_name(backend: str, interpolation: str, antialias: bool) -> str:
    """The name of a run's own resize as a recipe: backend:<backend>-<method>, -aa where antialias is a choice and on."""
    aa = effective_antialias(interpolation, backend, antialias)
    choosable = backend == "tensor" and interpolation in ("bilinear", "bicubic")
    return f"{BACKEND_PREFIX}{backend}-{interpolation}{'-aa' if choosable and aa else ''}"


def _backend_recipe(name: str) -> Recipe:
    spec = name.removeprefix(BACKEND_PREFIX)
    backend, _, rest = spec.partition("-")
    method, _, aa = rest.partition("-")
    if backend not in BACKEND_INTERPOLATIONS or method not in BACKEND_INTERPOLATIONS[backend] or aa not in ("", "aa") \
            or name != backend_recipe_name(backend, method, aa == "aa"):
        choices = [backend_recipe_name(b, m, a) for b, ms in BACKEND_INTERPOLATIONS.items() for m in ms for a in (False, True)]
        raise ConfigError(f"{name!r} is not a run's own resize; those are {', '.join(dict.fromkeys(choices))}")
    antialias = aa == "aa" or effective_antialias(method, backend, False)
    library = {"pil": "Pillow", "tensor": "torchvision", "opencv": "opencv"}[backend]

    def run(images: torch.Tensor, size: int) -> torch.Tensor:
        return resize(images, size, method, antialias, backend)

    return Recipe(name, library, f"{backend_call(backend, method, antialias)}: resizelab's --backend {backend}", run,
                  same_call_as=((backend, method),), runs_on_model_device=backend == "tensor")


def check_recipe(name: str) -> Recipe:
    """The recipe called `name` (a catalogue recipe or a run's own resize, backend:...); an unknown name is one
    line listing the recipes, with the closest one."""
    if isinstance(name, str) and name.startswith(BACKEND_PREFIX):
        return _backend_recipe(name)
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


def apply_recipe(name: str, images: torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`images` (uint8 N x 3 x H x W) resized by recipe `name` so that the shorter edge is `size`; uint8, on the host.
    A run's own tensor resize is computed on `device` (where the model is evaluated, as the run's own evaluation
    resized its test split): a GPU's kernels need not give a CPU's bytes."""
    recipe = check_recipe(name)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"a serving recipe takes uint8 N x 3 x H x W images; got {images.dtype} {tuple(images.shape)}")
    if recipe.runs_on_model_device:
        return recipe.resize(images.to(device), size).cpu()
    return recipe.resize(images.cpu(), size)


def training_recipe(interpolation: str, antialias: bool, backend: str) -> str:
    """The recipe that is exactly what a run's resize did, its baseline: the catalogue recipe that is the same
    call (pil-bilinear for --backend pil bilinear), else the run's own resize, backend:... (every tensor run)."""
    same = next((r.name for r in RECIPES.values() if (backend, interpolation) in r.same_call_as), None)
    return same or backend_recipe_name(backend, interpolation, antialias)


def baseline_note(name: str) -> str:
    """One line saying which call a baseline recipe is, and that a catalogue recipe giving the same bytes is that call."""
    recipe = check_recipe(name)
    if name.startswith(BACKEND_PREFIX):
        return f"baseline {name}: the run's own resize, {recipe.call}"
    if not recipe.same_call_as:
        return f"baseline {name}: {recipe.call}"
    (backend, method), = recipe.same_call_as
    return f"baseline {name}: {recipe.call}, the very call (the same bytes) of the run's --backend {backend} {method}"


def served_images(cache: ResizeCache, data_key: str, images: torch.Tensor, name: str, size: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The test split resized by recipe `name` to `size`, uint8 NHWC, computed once per (data, recipe, library
    version, size) and then read from the resize cache (memory, then disk) like the training splits."""
    library = library_version(name)
    recipe = check_recipe(name)
    # The version is part of the key: another Pillow or OpenCV may round differently, and must not be served old bytes;
    # so is the device of a resize computed where the model runs.
    where = f"@{torch.device(device).type}" if recipe.runs_on_model_device else ""
    method = f"{name.replace(':', '_')}@{library.split()[-1]}{where}"
    key = ResizeKey(data_key, "test", size, method, False, "serve")
    out = cache.lookup(key, torch.device("cpu"))
    if out is None:
        out = apply_recipe(name, images, size, device).permute(0, 2, 3, 1).contiguous()
        cache.store(key, out)
    return out
