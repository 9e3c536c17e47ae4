"""`resizelab bench`: training and evaluation throughput of three pipelines, side by side in one process.

(a) plain: per-image PIL Resize -> ToTensor -> Normalize in a torchvision-style dataset, DataLoader with
    workers, shuffle, fp32, NCHW, SGD 0.001/0.9;
(b) resizelab: the default pipeline of `resizelab run` for the same recipe;
(c) model-only: the same model and settings (precision, layout, single-window matmul) as (b) stepping on
    one pre-staged batch.
All pipelines of one size are set up and warmed first, then timed in rounds, one window each, back to
back: on a shared or throttling machine the speed drifts by tens of percent over minutes, and a drift
then moves every pipeline of a round alike. Start-up (time to the first step) is reported apart.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..training import provenance
from ..core.config import RunConfig, boolean, option, sizes_list, whole
from ..training.data import Dataset, load_dataset
from ..training.engine import Run
from ..core.errors import ConfigError
from ..training.sources import build
from ..training.pipeline import normalize, to_nhwc
from ..core.log import plural
from ..training.resize import ResizeCache
from ..training.runtime import autocast, resolve_device, synchronize

WARMUP_STEPS = 3


def default_recipe() -> RunConfig:
    # No download for a benchmark: the built-in synthetic set at CIFAR's size, random weights.
    return RunConfig(data="synthetic", weights="none")


@dataclass(frozen=True)
class BenchConfig:
    run: RunConfig = dataclasses.field(default_factory=default_recipe)  # the recipe; its size is set per row
    sizes: tuple[int, ...] = option((16, 32, 64, 128, 224), sizes_list(), "input sizes", flag="size", aliases=("--sizes",))
    # Scaled down by area above 32 px, never below 3 (steps_for).
    steps: int = option(20, whole(1), "timed training steps per window at <= 32 px, fewer by area above")
    windows: int = option(7, whole(1), "rounds of one timed window per pipeline; medians are reported")
    workers: int = option(2, whole(0), "DataLoader workers of the plain pipeline")
    eval_images: int = option(1000, whole(1), "test images timed for evaluation throughput")
    # Also time resizelab's pipeline with each of its settings changed, and all off.
    ablation: bool = option(True, boolean(), "skip timing resizelab's pipeline with each of its settings changed",
                            flag="no-ablation", switch=True)

    def __post_init__(self):
        if not self.sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 4 or s > 1024 for s in self.sizes):
            raise ConfigError(f"sizes must be whole numbers between 4 and 1024 px; got {self.sizes}")
        for name in ("steps", "windows", "eval_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more; got {self.workers}")

    def steps_for(self, size: int) -> int:
        # Equal work per window whatever the size: a 224 px step costs ~49x a 32 px one.
        return max(3, round(self.steps * min(1.0, (32 / size) ** 2)))


@dataclass
class PipelineTiming:
    train_images_per_second: float  # median over the timed windows
    eval_images_per_second: float | None
    time_to_first_step_seconds: float | None
    windows: list[float]  # images/s of each window, in round order
    precision: str
    channels_last: bool
    single_window_matmul: bool


def ratio(row: dict[str, PipelineTiming], num: str, den: str) -> float:
    """Median over rounds of the per-round ratio: each round's windows ran back to back."""
    return statistics.median(n / d for n, d in zip(row[num].windows, row[den].windows))


@dataclass
class BenchResult:
    config: BenchConfig
    machine: dict
    rows: dict[int, dict[str, PipelineTiming]]

    def to_json_dict(self) -> dict:
        rows = {}
        for size, pipes in self.rows.items():
            entry = {name: dataclasses.asdict(t) for name, t in pipes.items()}
            entry["b_over_a"] = ratio(pipes, "resizelab", "plain")
            entry["b_over_c"] = ratio(pipes, "resizelab", "model-only")
            rows[str(size)] = entry
        config = dataclasses.asdict(self.config)
        config["run"] = self.config.run.to_dict()
        return {"config": config, "machine": self.machine, "sizes": rows}


class PlainDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from the HWC array, then the transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _time_window(step: Callable[[], int], steps: int, device: torch.device) -> float:
    """Images/s of `steps` calls (CUDA events on a GPU, so queued work is counted, not just launched)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        images = sum(step() for _ in range(steps))
        end.record()
        end.synchronize()
        return images / (start.elapsed_time(end) / 1000)
    t0 = time.perf_counter()
    images = sum(step() for _ in range(steps))
    return images / (time.perf_counter() - t0)


@dataclass
class _Pipeline:
    """One way of training, set up and warm: `step()` trains on one batch and returns its size."""

    step: Callable[[], int]
    evaluate: Callable[[], float]  # images/s of one pass over the evaluation images
    first_step_seconds: float | None
    close: Callable[[], None] = lambda: None
    run: Run | None = None  # the engine Run behind resizelab's pipelines


def _first_step(step: Callable[[], int], t0: float, device: torch.device) -> float:
    """Seconds from t0 (before any set-up) to the end of the first training step, then the warm-up."""
    step()
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(WARMUP_STEPS):
        step()
    return first


@dataclass(frozen=True)
class Setting:
    """How resizelab's pipeline runs the model: what the ablation varies."""

    precision: str
    channels_last: bool
    single_window_matmul: bool

    def text(self) -> str:
        return f"{self.precision} {'CL' if self.channels_last else 'NCHW'}{' 1x1mm' if self.single_window_matmul else ''}"


PLAIN = Setting("fp32", False, False)


def plain_pipeline(cfg: BenchConfig, dataset: Dataset, size: int, device: torch.device) -> _Pipeline:
    """The classic recipe: per-image PIL Resize -> ToTensor -> Normalize, a DataLoader, fp32 NCHW, the same
    model and optimizer settings as the run's recipe."""
    from torchvision import transforms

    recipe = cfg.run
    t0 = time.perf_counter()
    native = dataset.native_size[0]
    steps = ([transforms.Resize(size)] if size != native else []) + [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    transform = transforms.Compose(steps)
    train_set = PlainDataset(dataset.train_images.permute(0, 2, 3, 1).numpy(), dataset.train_labels.numpy(), transform)
    test_set = PlainDataset(dataset.test_images[:cfg.eval_images].permute(0, 2, 3, 1).numpy(), dataset.test_labels[:cfg.eval_images].numpy(), transform)
    torch.manual_seed(recipe.seed)
    model, _ = build(recipe.arch, dataset.num_classes, "none", recipe.stem, size=size, normalize=recipe.normalize)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    criterion = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, num_workers=cfg.workers)
    iterator = iter(loader)

    def step() -> int:
        nonlocal iterator
        try:
            x, y = next(iterator)
        except StopIteration:  # an epoch boundary: a new iterator (and new workers), as a training loop makes
            iterator = iter(loader)
            x, y = next(iterator)
        model.train()
        loss = criterion(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(y)

    def evaluate_plain() -> float:
        model.eval()
        test_loader = torch.utils.data.DataLoader(test_set, batch_size=recipe.batch_size, shuffle=False, num_workers=cfg.workers)
        synchronize(device)
        t = time.perf_counter()
        with torch.inference_mode():
            n = sum(len(model(x.to(device)).argmax(1)) for x, _ in test_loader)
        synchronize(device)
        return n / (time.perf_counter() - t)

    def close() -> None:
        nonlocal iterator
        iterator = None  # shuts its workers down

    return _Pipeline(step, evaluate_plain, _first_step(step, t0, device), close)


def recipe_at(cfg: BenchConfig, dataset: Dataset, size: int, setting: Setting | None = None) -> RunConfig:
    """The run's recipe at one size (native: no resize), with a setting forced when the ablation asks."""
    changes: dict = {"size": None if size == dataset.native_size[0] else size,
                     "limit_test": min(cfg.eval_images, cfg.run.limit_test or cfg.eval_images)}
    if setting is not None:
        changes.update(dataclasses.asdict(setting))
    return dataclasses.replace(cfg.run, **changes)


def run_step(run: Run) -> Callable[[], int]:
    """`Run.step`, rolling over to the next epoch as `train()` does, for as many steps as a benchmark wants."""
    def step() -> int:
        if run.steps_in_epoch == run.steps_per_epoch:
            run.end_epoch(0.0)
            run.begin_epoch()
        return run.step()
    return step


def resizelab_pipeline(run_cfg: RunConfig, dataset: Dataset, cache: ResizeCache) -> _Pipeline:
    """What `resizelab run` does: an engine `Run` from the recipe, stepped by `Run.step` itself."""
    t0 = time.perf_counter()
    run = Run(run_cfg, dataset=dataset, cache=cache).setup()
    run.begin_epoch()
    step = run_step(run)
    first = _first_step(step, t0, run.device)
    test = run.test_images(run.config.test_size)
    labels = run.dataset.test_labels.to(run.device)

    def evaluate_resizelab() -> float:
        run.accuracy(test[:64], labels[:64])  # warm-up
        synchronize(run.device)
        t = time.perf_counter()
        run.accuracy(test, labels)
        return len(labels) / (time.perf_counter() - t)

    return _Pipeline(step, evaluate_resizelab, first, run=run)


def model_only_pipeline(run_cfg: RunConfig, dataset: Dataset, size: int, cache: ResizeCache) -> _Pipeline:
    """The same Run's step (`Run.step_on`) on one batch staged on the device: the model alone."""
    run = Run(run_cfg, dataset=dataset, cache=cache).setup()
    run.begin_epoch()
    device, n = run.device, run.config.batch_size
    x = normalize(to_nhwc(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device)), run.channels_last)
    y = torch.randint(0, dataset.num_classes, (n,), device=device)
    n_eval = min(1024, run.config.limit_test or 1024)
    xe = normalize(to_nhwc(torch.randint(0, 256, (n_eval, 3, size, size), dtype=torch.uint8, device=device)), run.channels_last)

    def step() -> int:
        return run.step_on(x, y)

    def eval_step() -> int:
        with torch.inference_mode(), autocast(device, run.precision):
            run.step_model(xe)
        return len(xe)

    def evaluate_model_only() -> float:
        run.step_model.eval()
        eval_step()
        return statistics.median(_time_window(eval_step, 1, device) for _ in range(5))

    _first_step(step, time.perf_counter(), device)
    return _Pipeline(step, evaluate_model_only, None, run=run)


def _interleaved(pipes: dict[str, _Pipeline], steps: int, windows: int, device: torch.device) -> dict[str, list[float]]:
    """Round-robin timed windows: a machine that speeds up or slows down (turbo, a noisy neighbour)
    shifts every pipeline alike, so ratios within a round stay fair."""
    rates: dict[str, list[float]] = {name: [] for name in pipes}
    for _ in range(windows):
        for name, pipe in pipes.items():
            rates[name].append(_time_window(pipe.step, steps, device))
    return rates


def _ablations(default: Setting, device: torch.device) -> dict[str, Setting]:
    """b with one optimisation changed at a time, and with all of them off: what each contributes."""
    variants = {"other precision": dataclasses.replace(default, precision="fp32" if default.precision != "fp32" else "bf16"),
                "other layout": dataclasses.replace(default, channels_last=not default.channels_last),
                "other 1x1 convs": dataclasses.replace(default, single_window_matmul=not default.single_window_matmul),
                "all off": PLAIN}
    bf16 = device.type == "cuda" or provenance.cpu_supports_bf16()  # emulated bf16 would say nothing useful
    return {name: s for name, s in variants.items() if s != default and (s.precision != "bf16" or bf16)}


def bench_size(cfg: BenchConfig, dataset: Dataset, size: int, device: torch.device, say: Callable[[str], None]) -> dict[str, PipelineTiming]:
    cache = ResizeCache(disk=False)  # shared by (b) and its ablations: one resized copy in memory
    say(f"{size} px: setting up (a) plain, (b) resizelab as `resizelab run` runs it, (c) the model alone")
    b = resizelab_pipeline(recipe_at(cfg, dataset, size), dataset, cache)
    # The setting `resizelab run` picked for this size, made explicit for (c) and the ablations.
    default = Setting(b.run.precision, b.run.channels_last, b.run.single_window_matmul)
    pipes = {"plain": plain_pipeline(cfg, dataset, size, device), "resizelab": b,
             "model-only": model_only_pipeline(recipe_at(cfg, dataset, size, default), dataset, size, cache)}
    settings = {"plain": PLAIN, "resizelab": default, "model-only": default}
    if cfg.ablation:
        for name, setting in _ablations(default, device).items():
            pipes[name] = resizelab_pipeline(recipe_at(cfg, dataset, size, setting), dataset, cache)
            settings[name] = setting
    say(f"{size} px: {plural(cfg.windows, 'round')} of {plural(cfg.steps_for(size), 'step')}, round-robin over "
        f"{plural(len(pipes), 'pipeline')}")
    rates = _interleaved(pipes, cfg.steps_for(size), cfg.windows, device)
    row = {}
    for name, pipe in pipes.items():
        pipe.close()
        eval_rate = pipe.evaluate() if name in ("plain", "resizelab", "model-only") else None
        row[name] = PipelineTiming(statistics.median(rates[name]), eval_rate, pipe.first_step_seconds, rates[name],
                                   **dataclasses.asdict(settings[name]))
    return row


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    device = resolve_device(cfg.run.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dataset = load_dataset(cfg.run.data, cfg.run.data_dir)
    machine = provenance.collect(device)
    machine["torch_threads"] = torch.get_num_threads()
    say = progress or (lambda m: None)
    rows = {size: bench_size(cfg, dataset, size, device, say) for size in cfg.sizes}
    return BenchResult(cfg, machine, rows)


ABLATION_COLUMNS = ("other precision", "other layout", "other 1x1 convs", "all off")


def _settings_text(t: PipelineTiming) -> str:
    return Setting(t.precision, t.channels_last, t.single_window_matmul).text()


def format_bench(result: BenchResult) -> str:
    cfg = result.config
    lines = [f"machine: {result.machine['device_name']}; torch {result.machine['torch']}; {cfg.run.arch}, batch {cfg.run.batch_size}, "
             f"data {cfg.run.data}; {cfg.windows} rounds, each timing every pipeline back to back",
             "",
             f"{'size':>5}  {'a plain':>8}  {'b resizelab':>11}  {'b runs as':>11}  {'c model':>8}  {'b/a':>5}  {'b/c':>5}  "
             f"{'1st step a':>10}  {'1st step b':>10}  {'eval a':>7}  {'eval b':>7}  {'eval c':>7}"]
    for size, row in result.rows.items():
        a, b, c = row["plain"], row["resizelab"], row["model-only"]
        lines.append(f"{size:>5}  {a.train_images_per_second:>8.0f}  {b.train_images_per_second:>11.0f}  {_settings_text(b):>11}  "
                     f"{c.train_images_per_second:>8.0f}  {ratio(row, 'resizelab', 'plain'):>5.2f}  {ratio(row, 'resizelab', 'model-only'):>5.2f}  "
                     f"{a.time_to_first_step_seconds:>9.2f}s  {b.time_to_first_step_seconds:>9.2f}s  "
                     f"{a.eval_images_per_second:>7.0f}  {b.eval_images_per_second:>7.0f}  {c.eval_images_per_second:>7.0f}")
    if cfg.ablation:
        lines += ["", "b with one setting changed, and with all off (training images/s, its setting, and its speed "
                  "relative to b in the same rounds):",
                  f"{'size':>5}  " + "  ".join(f"{name:>26}" for name in ABLATION_COLUMNS)]
        for size, row in result.rows.items():
            cells = [f"{row[n].train_images_per_second:>5.0f} {_settings_text(row[n]):>13} x{ratio(row, n, 'resizelab'):.2f}"
                     if n in row else f"{'-':>26}" for n in ABLATION_COLUMNS]
            lines.append(f"{size:>5}  " + "  ".join(f"{c:>26}" for c in cells))
    lines.append("")
    lines.append("images/s of training (eval: of evaluation), median over rounds; b/a and b/c: median of the per-round ratios. "
                 "a: PIL per image + DataLoader, fp32 NCHW; b: resizelab's default; c: b's model and settings stepping on "
                 "one pre-staged batch; 1st step: from the start of set-up to the end of the first training step")
    return "\n".join(lines)
