"""`resizelab bench`: training and evaluation throughput of three pipelines, side by side in one process.

(a) plain: per-image PIL Resize -> ToTensor -> Normalize in a torchvision-style dataset, DataLoader with
    workers, shuffle, fp32, NCHW, SGD 0.001/0.9;
(b) resizelab: the default pipeline of `resizelab run` for the same recipe;
(c) model-only: the same model, precision and layout as (b) stepping on one pre-staged batch.
Each figure is the median of several timed windows after a warm-up; start-up is reported apart.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import provenance
from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import ConfigError
from .models import build_model
from .resize import ResizeCache, resize
from .train import TrainData, autocast, evaluate, normalize, resolve_device, resolve_precision, to_nhwc, train_step

WARMUP_STEPS = 3


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (16, 32, 64, 128, 224)
    arch: str = "resnet18"
    batch_size: int = 32
    data: str = "synthetic"
    data_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    steps: int = 40  # per window at <= 32 px; scaled down by area above (never below 5)
    windows: int = 3
    workers: int = 2
    compile: bool = False
    eval_images: int = 1000
    ablation: bool = True  # also time resizelab with fp32 + NCHW and fp32 + channels_last

    def __post_init__(self):
        if not self.sizes or any(s < 4 or s > 1024 for s in self.sizes):
            raise ConfigError(f"sizes must be between 4 and 1024 px; got {self.sizes}")
        for name in ("batch_size", "steps", "windows", "eval_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more; got {self.workers}")

    def steps_for(self, size: int) -> int:
        # Equal work per window whatever the size: a 224 px step costs ~49x a 32 px one.
        return max(5, round(self.steps * min(1.0, (32 / size) ** 2)))


@dataclass
class PipelineTiming:
    train_images_per_second: float
    eval_images_per_second: float | None
    time_to_first_step_seconds: float | None
    windows: list[float] = field(default_factory=list)


@dataclass
class BenchResult:
    config: BenchConfig
    machine: dict
    precision: str
    rows: dict[int, dict[str, PipelineTiming]]

    def to_json_dict(self) -> dict:
        rows = {}
        for size, pipes in self.rows.items():
            entry = {name: dataclasses.asdict(t) for name, t in pipes.items()}
            entry["b_over_a"] = pipes["resizelab"].train_images_per_second / pipes["plain"].train_images_per_second
            entry["b_over_c"] = pipes["resizelab"].train_images_per_second / pipes["model-only"].train_images_per_second
            rows[str(size)] = entry
        return {"config": dataclasses.asdict(self.config), "machine": self.machine, "resizelab_precision": self.precision, "sizes": rows}


class PlainDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from the HWC array, then the transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_windows(step: Callable[[], int], steps: int, windows: int, device: torch.device) -> list[float]:
    """Images/s of `windows` timed windows of `steps` calls each (CUDA events on a GPU)."""
    rates = []
    for _ in range(windows):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            images = sum(step() for _ in range(steps))
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            t0 = time.perf_counter()
            images = sum(step() for _ in range(steps))
            seconds = time.perf_counter() - t0
        rates.append(images / seconds)
    return rates


def _first_step_then_windows(step: Callable[[], int], t0: float, cfg: BenchConfig, size: int,
                             device: torch.device) -> tuple[float, list[float]]:
    """Seconds from t0 to the first finished step, then the timed windows after a warm-up."""
    step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(WARMUP_STEPS):
        step()
    return first, _time_windows(step, cfg.steps_for(size), cfg.windows, device)


def _model(cfg: BenchConfig, num_classes: int, device: torch.device, channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model, _ = build_model(cfg.arch, num_classes, "none")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)


def bench_plain(cfg: BenchConfig, dataset: Dataset, size: int, device: torch.device) -> PipelineTiming:
    from torchvision import transforms

    native = dataset.native_size[0]
    steps = ([transforms.Resize(size)] if size != native else []) + [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    transform = transforms.Compose(steps)
    train_set = PlainDataset(dataset.train_images.permute(0, 2, 3, 1).numpy(), dataset.train_labels.numpy(), transform)
    test_set = PlainDataset(dataset.test_images[:cfg.eval_images].permute(0, 2, 3, 1).numpy(), dataset.test_labels[:cfg.eval_images].numpy(), transform)
    model, optimizer = _model(cfg, dataset.num_classes, device, channels_last=False)
    criterion = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.workers)
    iterator = iter(loader)

    def step() -> int:
        nonlocal iterator
        try:
            x, y = next(iterator)
        except StopIteration:  # an epoch boundary: a new iterator, as a training loop would make
            iterator = iter(loader)
            x, y = next(iterator)
        x, y = x.to(device), y.to(device)
        train_step(model, optimizer, criterion, x, y, device, "fp32")
        return len(y)

    model.train()
    first, rates = _first_step_then_windows(step, t0, cfg, size, device)
    del iterator
    model.eval()
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        n = sum(len(model(x.to(device)).argmax(1)) for x, _ in test_loader)
    _sync(device)
    return PipelineTiming(statistics.median(rates), n / (time.perf_counter() - t0), first, rates)


def bench_resizelab(cfg: BenchConfig, dataset: Dataset, size: int, device: torch.device, precision: str,
                    channels_last: bool = True) -> PipelineTiming:
    run_cfg = RunConfig(data="synthetic", size=size if size != dataset.native_size[0] else None, precision=precision,
                        batch_size=cfg.batch_size, weights="none", arch=cfg.arch, channels_last=channels_last,
                        compile=cfg.compile, device=str(device))
    t0 = time.perf_counter()
    model, optimizer = _model(cfg, dataset.num_classes, device, channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    data = TrainData(run_cfg, dataset, device, ResizeCache(disk=False))
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator(device=device).manual_seed(0)
    perm = torch.randperm(len(data), device=device, generator=gen)
    position = 0

    def step() -> int:
        nonlocal perm, position
        if position >= len(data):
            perm, position = torch.randperm(len(data), device=device, generator=gen), 0
        x, y = data.batch(perm[position:position + cfg.batch_size])
        position += cfg.batch_size
        train_step(step_model, optimizer, criterion, x, y, device, precision)
        return len(y)

    step_model.train()
    first, rates = _first_step_then_windows(step, t0, cfg, size, device)
    test = to_nhwc(resize(dataset.test_images[:cfg.eval_images].to(device), run_cfg.size, run_cfg.interpolation,
                          run_cfg.antialias, run_cfg.backend))
    labels = dataset.test_labels[:cfg.eval_images].to(device)
    evaluate(step_model, test[:64], labels[:64], dataset.classes, device, precision, 1024, channels_last)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    evaluate(step_model, test, labels, dataset.classes, device, precision, 1024, channels_last)
    eval_rate = len(labels) / (time.perf_counter() - t0)
    return PipelineTiming(statistics.median(rates), eval_rate, first, rates)


def bench_model_only(cfg: BenchConfig, dataset: Dataset, size: int, device: torch.device, precision: str) -> PipelineTiming:
    model, optimizer = _model(cfg, dataset.num_classes, device, channels_last=True)
    step_model = torch.compile(model) if cfg.compile else model
    criterion = nn.CrossEntropyLoss()
    x = normalize(to_nhwc(torch.randint(0, 256, (cfg.batch_size, 3, size, size), dtype=torch.uint8, device=device)))
    y = torch.randint(0, dataset.num_classes, (cfg.batch_size,), device=device)

    def step() -> int:
        train_step(step_model, optimizer, criterion, x, y, device, precision)
        return cfg.batch_size

    step_model.train()
    for _ in range(WARMUP_STEPS + 1):
        step()
    rates = _time_windows(step, cfg.steps_for(size), cfg.windows, device)
    step_model.eval()
    xe = normalize(to_nhwc(torch.randint(0, 256, (min(1024, cfg.eval_images), 3, size, size), dtype=torch.uint8, device=device)))

    def eval_step() -> int:
        with torch.inference_mode(), autocast(device, precision):
            step_model(xe)
        return len(xe)

    eval_step()
    eval_rates = _time_windows(eval_step, 1, cfg.windows, device)
    return PipelineTiming(statistics.median(rates), statistics.median(eval_rates), None, rates)


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dataset = load_dataset(cfg.data, cfg.data_dir)
    machine = provenance.collect(device)
    machine["torch_threads"] = torch.get_num_threads()
    rows: dict[int, dict[str, PipelineTiming]] = {}
    for size in cfg.sizes:
        say = progress or (lambda m: None)
        row = {}
        say(f"{size} px: plain pipeline")
        row["plain"] = bench_plain(cfg, dataset, size, device)
        say(f"{size} px: resizelab ({precision})")
        row["resizelab"] = bench_resizelab(cfg, dataset, size, device, precision)
        say(f"{size} px: model only")
        row["model-only"] = bench_model_only(cfg, dataset, size, device, precision)
        if cfg.ablation:
            say(f"{size} px: resizelab ablations")
            row["resizelab fp32 NCHW"] = bench_resizelab(cfg, dataset, size, device, "fp32", channels_last=False)
            row["resizelab fp32 channels_last"] = bench_resizelab(cfg, dataset, size, device, "fp32", channels_last=True)
        rows[size] = row
    return BenchResult(cfg, machine, precision, rows)


def format_bench(result: BenchResult) -> str:
    cfg = result.config
    lines = [f"machine: {result.machine['device_name']}; torch {result.machine['torch']}; {cfg.arch}, batch {cfg.batch_size}, "
             f"data {cfg.data}; resizelab precision {result.precision}; median of {cfg.windows} windows",
             "",
             f"{'size':>5}  {'a plain':>9}  {'b resizelab':>11}  {'c model':>9}  {'b/a':>5}  {'b/c':>5}  "
             f"{'first step a':>12}  {'first step b':>12}  {'eval a':>8}  {'eval b':>8}  {'eval c':>8}"]
    for size, row in result.rows.items():
        a, b, c = row["plain"], row["resizelab"], row["model-only"]
        lines.append(f"{size:>5}  {a.train_images_per_second:>9.0f}  {b.train_images_per_second:>11.0f}  {c.train_images_per_second:>9.0f}  "
                     f"{b.train_images_per_second / a.train_images_per_second:>5.2f}  {b.train_images_per_second / c.train_images_per_second:>5.2f}  "
                     f"{a.time_to_first_step_seconds:>11.2f}s  {b.time_to_first_step_seconds:>11.2f}s  "
                     f"{a.eval_images_per_second:>8.0f}  {b.eval_images_per_second:>8.0f}  {c.eval_images_per_second:>8.0f}")
    if cfg.ablation:
        lines += ["", "what each optimisation contributes (training images/s of resizelab's pipeline):",
                  f"{'size':>5}  {'fp32 NCHW':>10}  {'+channels_last':>14}  {'+' + result.precision + ' (default)':>16}"]
        for size, row in result.rows.items():
            lines.append(f"{size:>5}  {row['resizelab fp32 NCHW'].train_images_per_second:>10.0f}  "
                         f"{row['resizelab fp32 channels_last'].train_images_per_second:>14.0f}  {row['resizelab'].train_images_per_second:>16.0f}")
    lines.append("")
    lines.append("images/s of training (eval: of evaluation); a: PIL per image + DataLoader, fp32 NCHW; b: resizelab default; "
                 "c: b's model stepping on one pre-staged batch; first step: from start to the first finished training step")
    return "\n".join(lines)
