"""Training and evaluation of one run: `train(config) -> RunResult`.

The dataset sits on the device as uint8, already resized (or resized batch by batch there when
augmentation must come first). A batch is a slice of a seeded device-side permutation, normalised
on the device; no DataLoader and no per-image Python in the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import provenance
from .config import RunConfig, effective_antialias
from .data import Dataset, load_dataset, subset
from .errors import ConfigError, RunFailed
from .models import build_model, count_macs
from .resize import ResizeCache, ResizeKey, output_size, resize_tensor
from .singlewindow import use_single_window_matmul

# Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), as in the study being reproduced.
NORM_MEAN, NORM_STD = 0.5, 0.5
# An epoch's mean loss this many times the chance-level loss ln(C) counts as diverged.
DIVERGED_LOSS_FACTOR = 100
# Above this size a tensor-backend train set is resized batch by batch instead of held resized.
MAX_RESIZED_TRAIN_BYTES = 4 << 30

TRAIN_SECONDS_INCLUDES = (
    "the training loop over all epochs: batch gather, on-device augmentation/resize (and, in the first epoch of a "
    "tensor-backend run whose resized split was not cached yet, resizing each batch once), normalisation, "
    "forward, backward and optimizer steps (and torch.compile's compilation when --compile is on); "
    "not the one-off dataset load and resize, model construction or evaluation"
)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float  # percent, on the training batches as seen during the epoch
    seconds: float
    images: int


@dataclass
class EvalResult:
    size_px: int  # shorter edge after resizing (the native size when not resized)
    interpolation: str
    accuracy: float  # percent
    per_class_accuracy: dict[str, float]
    images: int
    seconds: float


@dataclass
class RunResult:
    config: RunConfig  # resolved
    config_hash: str
    epochs: list[EpochResult]
    train_seconds: float
    images_per_second: float
    test_accuracy: float
    per_class_accuracy: dict[str, float]
    evals: list[EvalResult]
    prepare_seconds: float
    time_to_first_step_seconds: float
    eval_seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str
    macs_per_image: int
    params: int
    effective_precision: str
    weights_tag: str
    weights_loaded_keys: int
    input_shape: tuple[int, int]
    provenance: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        out = asdict(self)
        out["config"] = self.config.to_dict()
        out["epochs"] = len(self.epochs)
        out["epoch_history"] = [asdict(e) for e in self.epochs]
        out["input_shape"] = list(self.input_shape)
        return out


# --- device, precision, seeding --------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto")
    return device


# CPU autocast casts every weight to bf16 and every weight gradient back on each step, a cost that
# grows with the parameters, while bf16's gain grows with the step's compute. With the single-window
# matmul, layer4's large weights are cast only at the taps that meet pixels, and bf16 (channels_last)
# was the fastest setting from 8 to 224 px for ResNet-18, batch 32, on a 2-core AVX512-BF16 EPYC
# (BENCHMARKS.md). Without it, oneDNN's convolutions on 1x1 maps dominate small inputs and fp32 NCHW was
# faster at 16 and 24 px (45 and 81 MACs per parameter per step); bf16 won from 32 px (106).
CPU_BF16_MIN_MACS_PER_PARAM = 96


def resolve_precision(precision: str, device: torch.device, macs_per_step: int | None = None, params: int | None = None,
                      single_window_matmul: bool = True) -> str:
    """'auto': bf16 on CUDA (fp16 on GPUs without bf16) and on a CPU with native bf16, fp32 on other
    CPUs; with single_window_matmul off, a CPU picks bf16 only when a training step has at least
    CPU_BF16_MIN_MACS_PER_PARAM multiply-accumulates per parameter."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if not provenance.cpu_supports_bf16():
        return "fp32"
    if not single_window_matmul and macs_per_step is not None and params:
        return "bf16" if macs_per_step / params >= CPU_BF16_MIN_MACS_PER_PARAM else "fp32"
    return "bf16"


def resolve_channels_last(channels_last: bool | None, device: torch.device, precision: str, single_window_matmul: bool = True) -> bool:
    """None (auto): channels_last, except NCHW for fp32 on a CPU without the single-window matmul, where
    oneDNN's channels_last kernels for 1x1 maps made 16-32 px steps 10-18% slower."""
    if channels_last is not None:
        return channels_last
    return device.type == "cuda" or precision != "fp32" or single_window_matmul


def ready_model(model: nn.Module, single_window_matmul: bool, channels_last: bool) -> nn.Module:
    """The model as resizelab runs it, in place: 1x1-output convolutions as matmuls, the chosen memory format."""
    if single_window_matmul:
        use_single_window_matmul(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


# --- batches ---------------------------------------------------------------------------------

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


def input_shape(cfg: RunConfig, dataset: Dataset) -> tuple[int, int]:
    """(H, W) the model is trained on."""
    h, w = dataset.native_size
    return output_size(h, w, cfg.size) if cfg.size else (h, w)


class TrainData:
    """The training split on the device, and how to turn a batch of indices into model input.

    Resized once and kept: from the cache when an earlier run made it, else batch by batch as the
    first epoch meets each image (tensor backend), so the first step does not wait for the whole
    split; a complete first epoch leaves the resized split in the cache for later runs.
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device, cache: ResizeCache, channels_last: bool):
        self.cfg, self.channels_last, self.cache = cfg, channels_last, cache
        self.labels = dataset.train_labels.to(device)
        out_h, out_w = self.shape = input_shape(cfg, dataset)
        projected = len(dataset.train_labels) * 3 * out_h * out_w
        # Augmentation must see native pixels, and a huge resized copy would not fit: both resize per batch.
        self.per_batch_resize = cfg.size is not None and (cfg.augment != "none" or (cfg.backend == "tensor" and projected > MAX_RESIZED_TRAIN_BYTES))
        self.key = ResizeKey(dataset.key, "train", cfg.size, cfg.interpolation, cfg.effective_antialias, cfg.backend)
        self.filling = False
        native = dataset.train_images.to(device)
        if self.per_batch_resize:
            self.images = native
        elif cfg.size is not None and cfg.backend == "tensor":
            cached = cache.lookup(self.key, device)
            self.filling = cached is None
            if self.filling:
                self.native = native
                self.images = torch.empty((len(native), out_h, out_w, native.shape[1]), dtype=torch.uint8, device=device)
            else:
                self.images = cached
        else:  # native size, or PIL, which works image by image on the host: all at once, up front
            self.images = cache.get(self.key, native)
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)

    def __len__(self) -> int:
        return len(self.labels)

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass in a seeded device-side random order, as (normalised input, labels) batches."""
        perm = torch.randperm(len(self), device=self.labels.device, generator=generator)
        filling = self.filling
        for start in range(0, len(self), batch_size):
            idx = perm[start:start + batch_size]
            if filling:
                # A permutation meets every image exactly once, so this epoch fills the whole buffer.
                x = self._resize(self.native[idx])
                self.images[idx] = x
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
            x = crop_flip(x, self.generator)
        return normalize(self._resize(x), self.channels_last), self.labels[idx]

    def _resize(self, batch_nchw: torch.Tensor) -> torch.Tensor:
        return to_nhwc(resize_tensor(batch_nchw, self.cfg.size, self.cfg.interpolation, self.cfg.effective_antialias))


# --- evaluation ------------------------------------------------------------------------------

@torch.inference_mode()
def evaluate(model: nn.Module, images_nhwc: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
             device: torch.device, precision: str, batch_size: int, channels_last: bool = True) -> tuple[float, dict[str, float]]:
    """Top-1 accuracy (percent) and per-class accuracy, model in eval mode."""
    model.eval()
    correct = torch.zeros(len(classes), dtype=torch.long, device=device)
    for start in range(0, len(labels), batch_size):
        x = normalize(images_nhwc[start:start + batch_size], channels_last)
        y = labels[start:start + batch_size]
        with autocast(device, precision):
            pred = model(x).argmax(1)
        correct += torch.bincount(y[pred == y], minlength=len(classes))
    totals = torch.bincount(labels, minlength=len(classes)).cpu()
    correct = correct.cpu()
    per_class = {c: (100.0 * correct[i].item() / totals[i].item()) if totals[i] else float("nan") for i, c in enumerate(classes)}
    return 100.0 * correct.sum().item() / max(1, len(labels)), per_class


# --- the run ---------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a host clock measures it; nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor,
               device: torch.device, precision: str, scaler=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step under the run's precision; returns logits and loss, still on the device."""
    with autocast(device, precision):
        logits = model(x)
        loss = criterion(logits, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return logits, loss


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    # Linux reports KiB. Process-wide high-water mark, so in a sweep it is the peak so far.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"


def train(config: RunConfig, *, dataset: Dataset | None = None, cache: ResizeCache | None = None,
          progress: bool = True, on_epoch: Callable[[EpochResult], None] | None = None) -> RunResult:
    """Train and evaluate one configuration. Raises RunFailed if the loss diverges or memory runs out."""
    t_start = time.perf_counter()
    cfg = config.resolved()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic)
    cache = cache if cache is not None else ResizeCache()
    if dataset is None:
        dataset = load_dataset(cfg.data, cfg.data_dir)
    # A fixed subset seed: every run of a study sees the same images, whatever its own seed.
    dataset = subset(dataset, cfg.limit_train, cfg.limit_test, seed=0)
    model, info = build_model(cfg.arch, dataset.num_classes, cfg.weights, cfg.stem)
    model.to(device)
    # Counted before ready_model's single-window swap: the architecture's MACs, whichever kernels run them.
    macs = count_macs(model, (3, *input_shape(cfg, dataset)), device)
    precision = resolve_precision(cfg.precision, device, macs * cfg.batch_size, info.params, cfg.single_window_matmul)
    channels_last = resolve_channels_last(cfg.channels_last, device, precision, cfg.single_window_matmul)
    ready_model(model, cfg.single_window_matmul, channels_last)
    data = TrainData(cfg, dataset, device, cache, channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    optimizer = _optimizer(cfg, model)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps_per_epoch)
                 if cfg.schedule == "cosine" else None)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" and device.type == "cuda" else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    prepare_seconds = time.perf_counter() - t_start

    epochs: list[EpochResult] = []
    first_step_at: float | None = None
    perm_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    try:
        from tqdm import tqdm

        for epoch in range(1, cfg.epochs + 1):
            step_model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr, leave=False,
                       disable=not (progress and sys.stderr.isatty()))
            synchronize(device)
            t_epoch = time.perf_counter()
            for x, y in data.epoch(cfg.batch_size, perm_gen):
                logits, loss = train_step(step_model, optimizer, criterion, x, y, device, precision, scaler)
                if scheduler is not None:
                    scheduler.step()
                # Accumulated on the device: no .item() per step, so no host sync in the loop.
                loss_sum += loss.detach().float() * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
                if first_step_at is None:
                    synchronize(device)
                    first_step_at = time.perf_counter()
                bar.update()
            synchronize(device)
            seconds = time.perf_counter() - t_epoch
            bar.close()
            mean_loss = loss_sum.item() / len(data)
            # BatchNorm can keep an exploded loss finite, so "diverged" also means far above chance.
            chance_loss = math.log(max(2, dataset.num_classes))
            if not math.isfinite(mean_loss) or mean_loss > DIVERGED_LOSS_FACTOR * chance_loss:
                raise RunFailed(f"diverged: training loss {mean_loss:.4g} after epoch {epoch} (chance level is {chance_loss:.2f}); "
                                "lower --lr or use --precision fp32")
            result = EpochResult(epoch, mean_loss, 100.0 * correct.item() / len(data), seconds, len(data))
            epochs.append(result)
            if on_epoch is not None:
                on_epoch(result)
    except torch.cuda.OutOfMemoryError:
        raise RunFailed(f"out of GPU memory at size {cfg.size} with batch {cfg.batch_size}; lower --batch-size") from None

    train_seconds = sum(e.seconds for e in epochs)
    t_eval = time.perf_counter()
    evals = []
    test_labels = dataset.test_labels.to(device)
    test_native = dataset.test_images.to(device)
    for size in [cfg.test_size, *cfg.test_sizes]:
        t0 = time.perf_counter()
        key = ResizeKey(dataset.key, "test", size, cfg.test_interpolation,
                        effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias), cfg.backend)
        images = cache.get(key, test_native)
        acc, per_class = evaluate(step_model, images, test_labels, dataset.classes, device, precision, cfg.eval_batch_size, channels_last)
        evals.append(EvalResult(int(images.shape[1]) if size is None else size, cfg.test_interpolation, acc, per_class, len(test_labels), time.perf_counter() - t0))
    eval_seconds = time.perf_counter() - t_eval
    peak, peak_kind = _peak_memory(device)
    total_images = sum(e.images for e in epochs)
    return RunResult(
        config=cfg,
        config_hash=cfg.config_hash(),
        epochs=epochs,
        train_seconds=train_seconds,
        images_per_second=total_images / train_seconds if train_seconds > 0 else float("nan"),
        test_accuracy=evals[0].accuracy,
        per_class_accuracy=evals[0].per_class_accuracy,
        evals=evals,
        prepare_seconds=prepare_seconds,
        time_to_first_step_seconds=(first_step_at or time.perf_counter()) - t_start,
        eval_seconds=eval_seconds,
        peak_memory_bytes=peak,
        peak_memory_kind=peak_kind,
        macs_per_image=macs,
        params=info.params,
        effective_precision=precision,
        weights_tag=info.weights_tag,
        weights_loaded_keys=info.loaded_keys,
        input_shape=data.shape,
        provenance={**provenance.collect(device), "antialias_requested": config.antialias,
                    "antialias_effective": cfg.effective_antialias, "backend": cfg.backend,
                    "weights_skipped_keys": info.skipped_keys, "normalize": {"mean": NORM_MEAN, "std": NORM_STD},
                    "train_seconds_includes": TRAIN_SECONDS_INCLUDES, "per_batch_resize": data.per_batch_resize,
                    "channels_last": channels_last, "single_window_matmul": cfg.single_window_matmul},
    )

