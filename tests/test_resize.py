import pytest
import torch
from PIL import Image
from torchvision import transforms

from resizelab.core.config import RunConfig
from resizelab.training.resize import effective_antialias
from resizelab.training.data import make_synthetic
from resizelab.core.errors import ConfigError
from resizelab.training.resize import ResizeCache, ResizeKey, output_size, resize
from resizelab.training.pipeline import normalize, to_nhwc

NO_OPENCV = "OpenCV is not installed: pip install 'resizelab[opencv]'"


@pytest.fixture(scope="module")
def images():
    # Natural-ish content: the synthetic set has smooth blobs, edges and fine gratings.
    return make_synthetic(64, 0, seed=1).train_images


# (method, target size): mean absolute difference bound in grey levels, tensor vs PIL.
# Bounds are from measurements on real CIFAR images (see README) with headroom; bilinear is exact.
AGREEMENT = {
    "bilinear": 0.0, "bicubic": 0.05, "nearest": 0.0, "area": 0.6,
}


@pytest.mark.parametrize("method", sorted(AGREEMENT))
@pytest.mark.parametrize("size", [8, 16, 64, 128])
def test_tensor_backend_agrees_with_pil_at_integer_factors(images, method, size):
    pil = resize(images, size, method, True, "pil").int()
    ten = resize(images, size, method, True, "tensor").int()
    assert pil.shape == ten.shape == (64, 3, size, size)
    diff = (pil - ten).abs().float()
    assert diff.mean() <= AGREEMENT[method]
    assert diff.max() <= (2 if method == "bicubic" else 1 if method == "area" else 0)


def test_nearest_is_exact_sampling(images):
    up = resize(images, 64, "nearest", True, "tensor")
    assert torch.equal(up[:, :, ::2, ::2], images)  # every source pixel repeated 2x2
    assert torch.equal(resize(images, 64, "nearest", True, "pil"), up)


def test_antialias_changes_tensor_downsampling_only_when_it_applies(images):
    aa = resize(images, 8, "bilinear", True, "tensor")
    no = resize(images, 8, "bilinear", False, "tensor")
    assert (aa.int() - no.int()).abs().float().mean() > 1  # without a prefilter the grating aliases
    assert torch.equal(resize(images, 8, "nearest", True, "tensor"), resize(images, 8, "nearest", False, "tensor"))


def test_lanczos_is_pil_only(images):
    assert resize(images, 16, "lanczos", True, "pil").shape[-1] == 16
    with pytest.raises(ConfigError, match="supports nearest, bilinear, bicubic, area"):
        resize(images, 16, "lanczos", True, "tensor")


def test_native_size_is_identity(images):
    assert resize(images, 32, "bilinear", True, "pil") is images
    assert resize(images, None, "bicubic", True, "tensor") is images


def test_output_size_follows_torchvision_resize():
    assert output_size(32, 32, 16) == (16, 16)
    assert output_size(30, 40, 15) == (15, 20)
    assert output_size(40, 30, 15) == (20, 15)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_model_input_equals_the_torchvision_pipeline(images, size):
    """--backend pil --precision fp32 feeds the model exactly Resize(S) -> ToTensor -> Normalize(0.5, 0.5)."""
    steps = ([transforms.Resize(size)] if size != 32 else []) + [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    reference = transforms.Compose(steps)
    expected = torch.stack([reference(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in images])
    ours = normalize(to_nhwc(resize(images, size, "bilinear", True, "pil")))
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() < 1e-6


def test_resize_cache_reuses_memory_and_disk(images, isolated_cache):
    key = ResizeKey("k", "train", 16, "bicubic", True, "pil")
    cache = ResizeCache()
    first = cache.get(key, images)
    assert cache.get(key, images) is first
    assert list((isolated_cache / "resized").glob("*.pt"))
    fresh = ResizeCache().get(key, images)  # a new process would find it on disk
    assert torch.equal(fresh, first)


# OpenCV vs PIL at integer factors, (method, "down"/"up"): (mean bound, max bound) in grey levels,
# from measurements on 500 real CIFAR test images (docs/opencv_vs_pil.md) and on these, with headroom.
# Down, linear/cubic/lanczos are far from PIL on purpose: OpenCV does not antialias them.
OPENCV_VS_PIL = {
    ("nearest", "down"): (0.0, 0), ("nearest", "up"): (0.0, 0),
    ("area", "down"): (0.5, 1), ("area", "up"): (0.0, 0),
    ("bilinear", "up"): (0.5, 1),  # same kernel and grid; OpenCV's fixed-point weights round differently
    ("bicubic", "up"): (2.0, 20),  # OpenCV's cubic has a = -0.75, PIL's a = -0.5
    ("lanczos", "up"): (1.5, 20),  # OpenCV's LANCZOS4 has 8 taps, PIL's Lanczos 6
}


@pytest.mark.parametrize("method, direction", sorted(OPENCV_VS_PIL))
def test_opencv_backend_agrees_with_pil_where_the_filters_match(images, method, direction):
    pytest.importorskip("cv2", reason=NO_OPENCV)
    for size in ([8, 16] if direction == "down" else [64, 128]):
        ocv = resize(images, size, method, True, "opencv").int()
        pil = resize(images, size, method, True, "pil").int()
        assert ocv.shape == pil.shape == (64, 3, size, size)
        diff = (ocv - pil).abs().float()
        mean_bound, max_bound = OPENCV_VS_PIL[(method, direction)]
        assert diff.mean() <= mean_bound and diff.max() <= max_bound, (size, diff.mean().item(), diff.max().item())


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
def test_opencv_downsampling_does_not_antialias(images, method):
    """Its linear/cubic/lanczos keep their support when shrinking: far from PIL's antialiased result
    and, for linear and cubic, the tensor backend with antialias off (same kernels on the same grid)."""
    pytest.importorskip("cv2", reason=NO_OPENCV)
    for size in (8, 16):
        ocv = resize(images, size, method, True, "opencv").int()
        assert (ocv - resize(images, size, method, True, "pil").int()).abs().float().mean() > 4
        if method != "lanczos":
            no_aa = resize(images, size, method, False, "tensor").int()
            assert (ocv - no_aa).abs().float().mean() < 0.5
    assert effective_antialias(method, "opencv", True) is False
    assert effective_antialias("area", "opencv", False) is True
    assert RunConfig(data="synthetic", size=16, interpolation=method, backend="opencv", antialias=True).resolved().antialias is False


def test_opencv_nearest_samples_pixel_centres_like_pil(images):
    cv2 = pytest.importorskip("cv2", reason=NO_OPENCV)
    for size in (8, 16, 24, 48):
        assert torch.equal(resize(images, size, "nearest", False, "opencv"), resize(images, size, "nearest", False, "pil"))
    # Plain INTER_NEAREST takes the even pixels of a 2x downsample, PIL and NEAREST_EXACT the odd ones.
    img = images[0].permute(1, 2, 0).contiguous().numpy()
    legacy = torch.from_numpy(cv2.resize(img, (16, 16), interpolation=cv2.INTER_NEAREST)).permute(2, 0, 1)
    assert torch.equal(legacy, images[0, :, ::2, ::2])
    assert torch.equal(resize(images[:1], 16, "nearest", False, "opencv")[0], images[0, :, 1::2, 1::2])


def test_opencv_missing_is_one_line_with_the_install_command(images, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import cv2` meets when OpenCV is not installed
    with pytest.raises(ConfigError) as info:
        resize(images, 16, "bilinear", True, "opencv")
    message = str(info.value)
    assert "\n" not in message and "pip install 'resizelab[opencv]'" in message and "opencv-python-headless" in message
    assert resize(images, 32, "bilinear", True, "opencv") is images  # no resize, no OpenCV needed
