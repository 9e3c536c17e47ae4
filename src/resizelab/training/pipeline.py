"""The on-device data path: the training split held as uint8 on the device, resized once (or per batch
when augmentation must come first), gathered by a seeded device-side permutation and normalised there.

No DataLoader and no per-image Python: a batch is an index slice, a gather and a few tensor ops.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F

from ..core.choices import AUGMENTS, LEARNED_INTERPOLATIONS  # noqa: F401 - AUGMENTS re-exported
from .data import Dataset
from .resize import ResizeCache, ResizeKey, output_size, resize_tensor

if TYPE_CHECKING:
    from ..core.config import RunConfig

# Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), as in the study being reproduced.
NORM_MEAN, NORM_STD = 0.5, 0.5
# Above this size a tensor-backend train set is resized batch by batch instead of held resized.
MAX_RESIZED_TRAIN_BYTES = 4 << 30


def stream_seed(seed: int, stream: str) -> int:
    """A seed of its own for each random stream of a run: two generators given the same seed would
    draw the same numbers, so the crop offsets would replay the batch order's stream."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def to_nhwc(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W stored as N x H x W x 3, so a gathered batch is channels_last for free."""
    return images.permute(0, 2, 3, 1).contiguous()


def normalize(batch_nhwc: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 NHWC -> float NCHW, the same float ops as ToTensor() then Normalize(0.5, 0.5): bit-exact."""
    x = batch_nhwc.permute(0, 3, 1, 2)
    if not channels_last:
        x = x.contiguous()
    return x.float().div(255).sub_(NORM_MEAN).div_(NORM_STD)


def crop_flip(batch: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """RandomCrop(H, padding=4) + RandomHorizontalFlip per image, for a whole uint8 NCHW batch at once."""
    n, c, h, w = batch.shape
    dev = batch.device
    padded = F.pad(batch, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def input_shape(cfg: "RunConfig", dataset: Dataset) -> tuple[int, int]:
    """(H, W) the classifier is trained on (for a learned resizer: what the resizer hands it)."""
    h, w = dataset.native_size
    return output_size(h, w, cfg.size) if cfg.size else (h, w)


def data_size(cfg: "RunConfig") -> int | None:
    """The size the data path resizes to: a learned resizer takes the stored source images as they are and
    resizes inside the model, so every arm of a comparison starts from the same source tensors."""
    return None if cfg.interpolation in LEARNED_INTERPOLATIONS else cfg.size


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of each batch of an epoch. A last batch of one image is folded into the one before:
    BatchNorm cannot normalise a single image whose maps are 1x1 (a ResNet at <= 32 px), and dropping it
    would leave that image out of training."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


class TrainData:
    """The training split on the device, and how to turn a batch of indices into model input.

    Resized once and kept: from the cache when an earlier run made it, else batch by batch as the
    first epoch meets each image (tensor backend), so the first step does not wait for the whole
    split; a complete first epoch leaves the resized split in the cache for later runs.
    """

    def __init__(self, cfg: "RunConfig", dataset: Dataset, device: torch.device, cache: ResizeCache, channels_last: bool):
        self.cfg, self.channels_last, self.cache = cfg, channels_last, cache
        self.labels = dataset.train_labels.to(device)
        out_h, out_w = self.shape = input_shape(cfg, dataset)
        self.learned = cfg.interpolation in LEARNED_INTERPOLATIONS
        projected = len(dataset.train_labels) * 3 * out_h * out_w
        # Augmentation must see native pixels, and a huge resized copy would not fit: both resize per batch.
        self.per_batch_resize = cfg.size is not None and (cfg.augment != "none" or (cfg.backend == "tensor" and projected > MAX_RESIZED_TRAIN_BYTES))
        self.key = ResizeKey(dataset.key, "train", data_size(cfg), cfg.interpolation, cfg.effective_antialias, cfg.backend)
        self.filling = False
        self.device = device
        # The one-off resize of the split, timed apart from training whichever path runs it (see TRAIN_SECONDS_INCLUDES).
        self.resize_seconds = 0.0
        native = dataset.train_images.to(device)
        if self.per_batch_resize:
            self.images = native
            self.resize_path = "per batch, every epoch (augmentation first)" if cfg.augment != "none" else "per batch, every epoch (too large to hold)"
        elif self.learned:
            self.images = to_nhwc(native)
            self.resize_path = f"source size: resized inside the model ({cfg.interpolation} learned resizer)"
        elif cfg.size is not None and cfg.backend == "tensor":
            cached = cache.lookup(self.key, device)
            self.filling = cached is None
            if self.filling:
                self.native = native
                self.images = torch.empty((len(native), out_h, out_w, native.shape[1]), dtype=torch.uint8, device=device)
                self.resize_path = "cold cache: resized batch by batch in the first epoch"
            else:
                self.images = cached
                self.resize_path = "warm cache: resized split read from the cache"
        else:  # native size, or PIL/OpenCV, which work image by image on the host: all at once, up front
            cached = cache.lookup(self.key, device) if cfg.size is not None else None
            if cfg.size is None:
                self.resize_path = "native size: no resize"
            elif cached is not None:
                self.resize_path = f"warm cache: {cfg.backend}-resized split read from the cache"
            else:
                self.resize_path = f"{cfg.backend}: whole split resized before training"
            if cached is not None:
                self.images = cached
            else:
                t0 = self._clock()
                self.images = cache.get(self.key, native)
                self.resize_seconds += self._clock() - t0
        self.order_generator = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "order"))
        self.augment_generator = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "augment"))

    def __len__(self) -> int:
        return len(self.labels)

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(batch_bounds(len(self), batch_size))

    def epoch(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass in a seeded device-side random order, as (normalised input, labels) batches."""
        perm = torch.randperm(len(self), device=self.labels.device, generator=self.order_generator)
        filling = self.filling
        for start, end in batch_bounds(len(self), batch_size):
            idx = perm[start:end]
            if filling:
                # A permutation meets every image exactly once, so this epoch fills the whole buffer.
                t0 = self._clock()
                x = self._resize(self.native[idx])
                self.images[idx] = x
                self.resize_seconds += self._clock() - t0
                yield normalize(x, self.channels_last), self.labels[idx]
            else:
                yield self.batch(idx)
        if filling:
            self.filling = False
            del self.native
            self.cache.store(self.key, self.images)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.filling:
            raise RuntimeError("TrainData.batch() before the first epoch() has resized every image; iterate epoch()")
        if not self.per_batch_resize:
            return normalize(self.images[idx], self.channels_last), self.labels[idx]
        x = self.images[idx]
        if self.cfg.augment == "crop-flip":
            x = crop_flip(x, self.augment_generator)
        return normalize(self._resize(x), self.channels_last), self.labels[idx]

    def _clock(self) -> float:
        """A host clock reading after the device's queued work: on CUDA the resize runs asynchronously."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _resize(self, batch_nchw: torch.Tensor) -> torch.Tensor:
        if self.learned:  # augmented at the source size; the model's resizer does the rest
            return to_nhwc(batch_nchw)
        return to_nhwc(resize_tensor(batch_nchw, self.cfg.size, self.cfg.interpolation, self.cfg.effective_antialias))
