"""Resizing uint8 image batches with PIL (exactly torchvision's Resize on PIL images), with tensors or with OpenCV.

A resized dataset is computed once per (data, size, method, antialias, backend) and kept in memory
and, when small enough, on disk; the training loop only slices it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.choices import (BACKEND_INTERPOLATIONS, BACKENDS, INTERPOLATIONS, LEARNED_INTERPOLATIONS,  # noqa: F401 - re-exported
                            effective_antialias)
from ..core.errors import ConfigError

# Above this many bytes a resized copy is not written to disk (a 224 px CIFAR train set is 7.5 GB).
DISK_CACHE_MAX_BYTES = 1 << 30


def _pil_mode(method: str):
    from torchvision.transforms import InterpolationMode

    return {
        "nearest": InterpolationMode.NEAREST,
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "area": InterpolationMode.BOX,
        "lanczos": InterpolationMode.LANCZOS,
    }[method]


def output_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(size) rule: the shorter edge becomes `size`, the aspect ratio is kept."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def check_method(method: str, backend: str) -> None:
    if backend not in BACKEND_INTERPOLATIONS:
        raise ConfigError(f"backend must be one of {', '.join(BACKEND_INTERPOLATIONS)}; got {backend!r}")
    if method not in BACKEND_INTERPOLATIONS[backend]:
        raise ConfigError(
            f"interpolation {method!r} is not available with backend {backend!r}; "
            f"it supports {', '.join(BACKEND_INTERPOLATIONS[backend])}"
        )


def resize_pil(images: torch.Tensor, size: int, method: str) -> torch.Tensor:
    """Per image, exactly torchvision.transforms.Resize(size) on a PIL image. CPU, done once, cached."""
    import numpy as np
    from PIL import Image
    from torchvision.transforms import functional as TF

    mode = _pil_mode(method)
    src = images.permute(0, 2, 3, 1).cpu().numpy()
    out = [np.asarray(TF.resize(Image.fromarray(img), size, interpolation=mode)) for img in src]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def cv2_module():
    """OpenCV, imported only when the opencv backend is asked for: it is an optional dependency."""
    try:
        import cv2
    except ImportError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"backend 'opencv' needs OpenCV, which did not import ({reason}): "
                          "pip install 'resizelab[opencv]' (or opencv-python-headless)") from None
    return cv2


def resize_opencv(images: torch.Tensor, size: int, method: str) -> torch.Tensor:
    """Per image, cv2.resize on the uint8 HWC array, as an OpenCV pipeline would. CPU, done once, cached.

    Nearest is INTER_NEAREST_EXACT: it samples the source pixel under each output pixel's centre,
    as PIL does; plain INTER_NEAREST floors dst * scale, which is half a source pixel off (the
    same off-centre rule as torch's legacy "nearest"). Linear, cubic and lanczos keep their fixed
    support when downsampling (no antialias); INTER_AREA averages each output pixel's footprint.
    """
    import numpy as np

    cv2 = cv2_module()
    flag = {
        "nearest": cv2.INTER_NEAREST_EXACT,
        "bilinear": cv2.INTER_LINEAR,
        "bicubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "lanczos": cv2.INTER_LANCZOS4,
    }[method]
    h, w = output_size(images.shape[-2], images.shape[-1], size)
    src = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    out = [cv2.resize(img, (w, h), interpolation=flag) for img in src]  # dsize is (width, height)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def resize_tensor(images: torch.Tensor, size: int, method: str, antialias: bool, chunk: int = 4096) -> torch.Tensor:
    """Batched resize on whatever device `images` lives on; uint8 in, uint8 out."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF2

    h, w = output_size(images.shape[-2], images.shape[-1], size)
    if (h, w) == tuple(images.shape[-2:]):
        return images
    pieces = []
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk]
        if method == "area":
            # Box average over each output pixel's footprint (adaptive average pooling).
            y = F.interpolate(x.float(), size=(h, w), mode="area").round_().clamp_(0, 255).to(torch.uint8)
        elif method == "nearest":
            # NEAREST_EXACT samples pixel centres, as PIL does; torch's legacy "nearest" is off by half a pixel.
            y = TF2.resize(x, [h, w], interpolation=InterpolationMode.NEAREST_EXACT, antialias=False)
        else:
            mode = InterpolationMode.BILINEAR if method == "bilinear" else InterpolationMode.BICUBIC
            y = TF2.resize(x, [h, w], interpolation=mode, antialias=antialias)
        pieces.append(y)
    return torch.cat(pieces).contiguous()


def backend_call(backend: str, method: str, antialias: bool) -> str:
    """The library call `resize` makes for (backend, method, antialias), as a user would write it: what a run's
    resize was, named where its accuracy is compared with a serving recipe's."""
    check_method(method, backend)
    aa = effective_antialias(method, backend, antialias)
    if backend == "pil":
        return f"torchvision.transforms.functional.resize(PIL image, S, interpolation={_pil_mode(method).name}) (Pillow)"
    if backend == "opencv":
        flag = {"nearest": "INTER_NEAREST_EXACT", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "area": "INTER_AREA",
                "lanczos": "INTER_LANCZOS4"}[method]
        return f"cv2.resize(img, (w, h), interpolation=cv2.{flag})"
    if method == "area":
        return "torch.nn.functional.interpolate(x.float(), (h, w), mode='area') rounded to uint8"
    if method == "nearest":
        return "torchvision.transforms.v2.functional.resize(uint8 batch, [h, w], NEAREST_EXACT)"
    return f"torchvision.transforms.v2.functional.resize(uint8 batch, [h, w], {method.upper()}, antialias={aa})"


def resize(images: torch.Tensor, size: int | None, method: str, antialias: bool, backend: str) -> torch.Tensor:
    """Resize a uint8 N x 3 x H x W batch so its shorter edge is `size` (None: unchanged)."""
    check_method(method, backend)
    if size is None:
        return images
    if method in LEARNED_INTERPOLATIONS:
        raise ConfigError(f"interpolation {method!r} is a learned resizer: it runs inside a trained model "
                          "(training.learned), not as a resize of its own")
    if backend in ("pil", "opencv"):
        h, w = output_size(images.shape[-2], images.shape[-1], size)
        if (h, w) == tuple(images.shape[-2:]):
            return images
        host_resize = resize_pil if backend == "pil" else resize_opencv
        return host_resize(images, size, method).to(images.device)
    return resize_tensor(images, size, method, effective_antialias(method, backend, antialias))


@dataclass(frozen=True)
class ResizeKey:
    data_key: str
    split: str
    size: int | None
    method: str
    antialias: bool
    backend: str

    def filename(self) -> str:
        aa = "aa" if self.antialias else "noaa"
        return f"{self.data_key}-{self.split}-{self.size}-{self.method}-{aa}-{self.backend}-nhwc.pt"


class ResizeCache:
    """Resized copies of a dataset split, kept in memory (LRU by bytes) and on disk.

    Sweeps revisit the same (size, method) many times over seeds; computing each once is what
    takes PIL's per-image cost out of every run but the first.
    """

    def __init__(self, max_bytes: int = 6 << 30, disk: bool = True):
        self.max_bytes = max_bytes
        self.disk = disk
        self._items: OrderedDict[ResizeKey, torch.Tensor] = OrderedDict()

    def get(self, key: ResizeKey, images: torch.Tensor) -> torch.Tensor:
        """The resized split for `key` as uint8 N x H x W x C, computed from `images` (N x C x H x W,
        on their device) when not cached. NHWC because a gathered batch is then channels_last for free."""
        out = self.lookup(key, images.device)
        if out is None:
            out = resize(images, key.size, key.method, key.antialias, key.backend).permute(0, 2, 3, 1).contiguous()
            self.store(key, out)
        return out

    def lookup(self, key: ResizeKey, device: torch.device) -> torch.Tensor | None:
        """The cached NHWC tensor for `key` (memory, then disk), or None."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key].to(device)
        if self.disk:
            from .tensorcache import load_tensors

            payload = load_tensors(self._path(key))
            if payload is not None and payload.get("images") is not None:
                out = payload["images"].to(device)
                self._put(key, out)
                return out
        return None

    def store(self, key: ResizeKey, images_nhwc: torch.Tensor) -> None:
        self._put(key, images_nhwc)
        nbytes = images_nhwc.numel() * images_nhwc.element_size()
        if self.disk and key.size is not None and nbytes <= DISK_CACHE_MAX_BYTES:
            from .tensorcache import save_tensors

            save_tensors(self._path(key), {"images": images_nhwc.cpu()})

    @staticmethod
    def _path(key: ResizeKey):
        from ..core.paths import cache_root

        return cache_root() / "resized" / key.filename()

    def _put(self, key: ResizeKey, value: torch.Tensor) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        total = sum(v.numel() * v.element_size() for v in self._items.values())
        while total > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            total -= old.numel() * old.element_size()
