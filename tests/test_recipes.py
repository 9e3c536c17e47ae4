"""Serving recipes against a direct call of their library, on real-looking high-frequency images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resizelab.core.choices import BACKEND_INTERPOLATIONS, LEARNED_INTERPOLATIONS, SERVE_RECIPES, effective_antialias
from resizelab.core.errors import ConfigError, MissingDependency
from resizelab.training.recipes import RECIPES, apply_recipe, check_recipe, library_version, training_recipe
from resizelab.training.resize import resize

cv2 = pytest.importorskip("cv2")


def textured(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Images with what real photos have and a resize must handle: smooth shading, edges, fine stripes up to
    Nyquist, and sensor-like noise, so that an antialiased and an aliasing resize give visibly different bytes."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.zeros((h, w, 3))
        for c in range(3):
            fx, fy = g.uniform(0.05, 0.5, size=2)
            img[..., c] = 128 + 60 * np.sin(2 * math.pi * (fx * x + fy * y) + g.uniform(0, 6))
            img[..., c] += 40 * ((x + g.integers(0, w)) % (g.integers(4, 12)) < 2)  # hard-edged bars
            img[..., c] += g.normal(0, 12, size=(h, w))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def direct(name: str, images: torch.Tensor, size: int) -> torch.Tensor:
    """What each library's user writes, with no resizelab code in the way."""
    from torchvision import transforms

    n, _, h, w = images.shape
    oh, ow = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    if name.startswith("pil-"):
        resample = {"pil-bilinear": Image.BILINEAR, "pil-bicubic": Image.BICUBIC}.get(name)
        outs = [np.asarray(Image.fromarray(a).resize((ow, oh)) if resample is None else Image.fromarray(a).resize((ow, oh), resample))
                for a in hwc(images)]
        return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)
    if name.startswith("tensor-"):
        return torch.stack([transforms.functional.resize(img, [oh, ow], antialias=name.endswith("-aa")) for img in images])
    if name.startswith("torch-"):
        y = F.interpolate(images.float(), size=(oh, ow), mode="bilinear", align_corners=name.endswith("corners"))
        return y.round().clamp(0, 255).to(torch.uint8)
    flag = {"cv2-linear": cv2.INTER_LINEAR, "cv2-area": cv2.INTER_AREA, "cv2-cubic": cv2.INTER_CUBIC,
            "cv2-nearest": cv2.INTER_NEAREST, "cv2-nearest-exact": cv2.INTER_NEAREST_EXACT}[name]
    outs = [cv2.resize(a, (ow, oh), interpolation=flag) for a in hwc(images)]
    return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", SERVE_RECIPES)
@pytest.mark.parametrize("shape,size", [((32, 32), 16), ((32, 32), 64), ((40, 56), 24), ((96, 72), 20)])
def test_recipe_is_its_library_call(name, shape, size):
    images = textured(4, *shape)
    got = apply_recipe(name, images, size)
    want = direct(name, images, size)
    assert got.dtype == torch.uint8 and got.shape == want.shape
    assert min(got.shape[-2:]) == size
    assert torch.equal(got, want), f"{name}: max difference {(got.int() - want.int()).abs().max()}"


def test_the_catalogue_is_closed_and_named_in_choices():
    assert tuple(RECIPES) == SERVE_RECIPES
    assert {"pil-bilinear", "tensor-bilinear", "cv2-linear", "cv2-area", "cv2-nearest"} <= set(SERVE_RECIPES)


def test_recipes_differ_where_their_libraries_differ():
    """The catalogue measures something only if its entries are different calls: shrinking by 4 separates the
    antialiased from the aliasing ones, and plain INTER_NEAREST is half a pixel off PIL's nearest."""
    images = textured(8, 64, 64)
    out = {name: apply_recipe(name, images, 16).float() for name in SERVE_RECIPES}
    assert (out["pil-bilinear"] - out["tensor-bilinear"]).abs().mean() > 3
    assert (out["tensor-bilinear-aa"] - out["pil-bilinear"]).abs().max() <= 1  # torchvision's uint8 AA kernel is PIL's
    assert (out["cv2-linear"] - out["tensor-bilinear"]).abs().mean() < 1  # neither widens its kernel when shrinking
    exact = torch.stack([torch.from_numpy(np.array(Image.fromarray(a).resize((16, 16), Image.NEAREST))) for a in hwc(images)])
    assert not torch.equal(out["cv2-nearest"].permute(0, 2, 3, 1).to(torch.uint8), exact)
    assert torch.equal(out["cv2-nearest-exact"].permute(0, 2, 3, 1).to(torch.uint8), exact)


def test_align_corners_puts_the_corner_pixels_on_the_corners():
    """2 x 2 -> 3 x 3 with align_corners=True: the four values stay at the corners, their means fill the rest."""
    img = torch.tensor([[0, 200], [100, 60]], dtype=torch.uint8).expand(1, 3, 2, 2).contiguous()
    corners = apply_recipe("torch-interpolate-corners", img, 3)[0, 0]
    assert corners.tolist() == [[0, 100, 200], [50, 90, 130], [100, 80, 60]]
    # 2 -> 4 along the top row: pixel centres (False) sample at -0.25, 0.25, 0.75, 1.25; corners (True) at 0, 1/3, 2/3, 1.
    assert apply_recipe("torch-interpolate", img, 4)[0, 0, 0].tolist() == [0, 50, 150, 200]
    assert apply_recipe("torch-interpolate-corners", img, 4)[0, 0, 0].tolist() == [0, 67, 133, 200]


def test_unknown_recipe_is_one_line_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        apply_recipe("pil-bilinar", textured(1, 8, 8), 4)
    assert "did you mean 'pil-bilinear'" in str(e.value) and "\n" not in str(e.value)


def test_library_versions_are_recorded():
    import PIL
    import torchvision

    assert library_version("pil-default") == f"Pillow {PIL.__version__}"
    assert library_version("tensor-bilinear") == f"torchvision {torchvision.__version__}"
    assert library_version("torch-interpolate") == f"torch {torch.__version__}"
    assert library_version("cv2-area") == f"opencv {cv2.__version__}"


def test_missing_opencv_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import` meets when the package is not installed
    with pytest.raises(MissingDependency) as e:
        apply_recipe("cv2-linear", textured(1, 8, 8), 4)
    assert "pip install 'resizelab[opencv]'" in str(e.value) and "\n" not in str(e.value)


def test_training_recipe_is_the_resize_a_run_did():
    assert training_recipe("bilinear", True, "pil") == "pil-bilinear"
    assert training_recipe("area", True, "opencv") == "cv2-area"
    assert training_recipe("nearest", False, "opencv") == "cv2-nearest-exact"  # not cv2-nearest: pixel centres, as PIL
    # No catalogue recipe is --backend tensor's call (v2 functional resize on uint8): the run's own resize is the baseline.
    assert training_recipe("bilinear", False, "tensor") == "backend:tensor-bilinear"
    assert training_recipe("bilinear", True, "tensor") == "backend:tensor-bilinear-aa"
    assert training_recipe("nearest", True, "tensor") == "backend:tensor-nearest"  # antialias is not a choice there
    assert training_recipe("lanczos", True, "pil") == "backend:pil-lanczos"


# Every run's resize: (backend, method, antialias) with the antialias that happens.
RUN_RESIZES = [(b, m, aa) for b, ms in BACKEND_INTERPOLATIONS.items() for m in ms if m not in LEARNED_INTERPOLATIONS for aa in (True, False)
               if effective_antialias(m, b, aa) == aa]
SHAPES = [((32, 32), 16), ((32, 32), 64), ((40, 56), 24), ((96, 72), 20)]


@pytest.mark.parametrize("backend,method,antialias", RUN_RESIZES)
def test_the_baseline_recipe_gives_the_runs_own_bytes(backend, method, antialias):
    """The baseline of a run is its own resize, byte for byte, whatever its shape: a catalogue recipe only where
    it is the backend's very call (same_call_as), and then it gives the same bytes; else backend:..."""
    name = training_recipe(method, antialias, backend)
    recipe = check_recipe(name)
    assert (backend, method) in recipe.same_call_as
    for shape, size in SHAPES:
        images = textured(4, *shape)
        assert torch.equal(apply_recipe(name, images, size), resize(images, size, method, antialias, backend)), (name, shape, size)


def test_v1_tensor_recipes_are_not_the_tensor_backends_bytes():
    """Why a tensor run's baseline is not tensor-bilinear(-aa): v1 Resize on uint8 resizes in float, the tensor
    backend's v2 functional resize keeps uint8 (the issue: 60,303 of 384,000 values differed at 16 px on CIFAR)."""
    images = textured(8, 40, 56)
    for name, aa in (("tensor-bilinear-aa", True), ("tensor-bilinear", False)):
        v1, v2 = apply_recipe(name, images, 24), resize(images, 24, "bilinear", aa, "tensor")
        assert not torch.equal(v1, v2) and (v1.int() - v2.int()).abs().max() <= 1
        assert RECIPES[name].same_call_as == () and "(v1)" in RECIPES[name].call
    assert "v2.functional.resize" in check_recipe("backend:tensor-bilinear-aa").call


def test_every_recipe_names_its_library_call():
    for recipe in RECIPES.values():
        assert recipe.call.split("(")[0].rsplit(".", 1)[0] in ("torchvision.transforms", "PIL.Image", "torch.nn.functional", "cv2")
    for backend, method, aa in RUN_RESIZES:
        call = check_recipe(training_recipe(method, aa, backend)).call
        assert call.startswith(("torchvision.transforms", "torch.nn.functional", "cv2.resize")), call


def test_a_wrong_backend_recipe_is_one_line():
    for bad in ("backend:tensor-lanczos", "backend:pil-bilinear-aa", "backend:gpu-bilinear", "backend:tensor-nearest-aa"):
        with pytest.raises(ConfigError) as e:
            check_recipe(bad)
        assert "backend:tensor-bilinear-aa" in str(e.value) and "\n" not in str(e.value)
