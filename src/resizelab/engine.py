"""The engine: a `Run` built from a config (`setup()`, `step()`, `evaluate()`), and `train(config)`, a short
loop over it. `resizelab bench` times `Run.step` of this very class, so what is benchmarked is what runs.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn

from . import provenance
from .config import RunConfig
from .data import Dataset, load_dataset, subset
from .errors import RunFailed
from .models import build_model, count_macs
from .optim import make_optimizer, make_schedule
from .pipeline import NORM_MEAN, NORM_STD, TrainData, input_shape, normalize
from .progress import TrainProgress, logger
from .resize import ResizeCache, ResizeKey, effective_antialias
from .results import TRAIN_SECONDS_INCLUDES, EpochResult, EvalResult, RunResult
from .runtime import (autocast, capture_graphs, peak_memory, ready_model, reset_peak_memory, resolve_channels_last,
                      resolve_device, resolve_graphs, resolve_precision, resolve_single_window_matmul, seed_everything,
                      synchronize)

# An epoch's mean loss this many times the chance-level loss ln(C) counts as diverged.
DIVERGED_LOSS_FACTOR = 100


class Run:
    """One training run: its data on the device, model, optimizer and schedule, stepped one batch at a time."""

    def __init__(self, config: RunConfig, *, dataset: Dataset | None = None, cache: ResizeCache | None = None,
                 record_losses: bool = False):
        self.config = config.resolved()
        self.requested = config
        self._dataset, self._cache = dataset, cache
        self.record_losses = record_losses
        self.losses: list[torch.Tensor] = []  # per step, on the device, when record_losses (tests compare them)

    def setup(self) -> "Run":
        """Load and place the data, build and ready the model, make the optimizer: everything before step one."""
        self.t_start = time.perf_counter()
        cfg = self.config
        self.device = device = resolve_device(cfg.device)
        seed_everything(cfg.seed, cfg.deterministic)
        self.cache = self._cache if self._cache is not None else ResizeCache()
        if self._dataset is None:
            logger.info("loading %s", cfg.data)
        dataset = self._dataset if self._dataset is not None else load_dataset(cfg.data, cfg.data_dir)
        # A fixed subset seed: every run of a study sees the same images, whatever its own seed.
        self.dataset = subset(dataset, cfg.limit_train, cfg.limit_test, seed=0)
        logger.info("building %s (weights %s, %s stem) on %s", cfg.arch, cfg.weights, cfg.stem, device)
        model, self.model_info = build_model(cfg.arch, self.dataset.num_classes, cfg.weights, cfg.stem)
        model.to(device)
        # Counted before ready_model's single-window swap: the architecture's MACs, whichever kernels run them.
        self.macs = count_macs(model, (3, *input_shape(cfg, self.dataset)), device)
        self.single_window_matmul = resolve_single_window_matmul(cfg.single_window_matmul, device)
        self.precision = resolve_precision(cfg.precision, device, self.macs * cfg.batch_size, self.model_info.params,
                                           self.single_window_matmul)
        self.channels_last = resolve_channels_last(cfg.channels_last, device, self.precision, self.single_window_matmul)
        self.model = ready_model(model, self.single_window_matmul, self.channels_last)
        if cfg.size is not None and cfg.backend != "tensor":  # the host backends resize the whole split here, up front
            logger.info("resizing %d train images to %d px (%s, %s backend)", len(self.dataset.train_labels), cfg.size,
                        cfg.interpolation, cfg.backend)
        self.data = TrainData(cfg, self.dataset, device, self.cache, self.channels_last)
        logger.debug("train split: %s", self.data.resize_path)
        self.graphs = resolve_graphs(cfg.graphs, device, cfg.compile)
        if self.graphs == "reduce-overhead":
            self.step_model = torch.compile(model, mode="reduce-overhead")
        else:
            self.step_model = torch.compile(model) if cfg.compile else model
        # Graphs are recorded for one batch shape, the first step's (captured then, inside the timed epoch);
        # a batch of another shape (an epoch's last) runs eagerly on the same parameters.
        self._graphed, self._graph_shape = None, None
        self.optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.momentum, cfg.weight_decay)
        self.steps_per_epoch = self.data.steps_per_epoch(cfg.batch_size)
        self.scheduler = make_schedule(cfg.schedule, self.optimizer, cfg.epochs * self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" and device.type == "cuda" else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.epoch, self.steps_done, self.steps_in_epoch = 0, 0, 0
        self.first_step_at: float | None = None
        reset_peak_memory(device)
        synchronize(device)
        self.prepare_seconds = time.perf_counter() - self.t_start
        return self

    # --- training -------------------------------------------------------------------------------

    def begin_epoch(self) -> None:
        self.epoch += 1
        self.step_model.train()
        self._batches = self.data.epoch(self.config.batch_size)
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._images = 0
        self.steps_in_epoch = 0

    def step(self) -> int:
        """One optimisation step on the epoch's next batch; returns the number of images it trained on."""
        x, y = next(self._batches)
        n = self.step_on(x, y)
        if self.first_step_at is None:
            synchronize(self.device)
            self.first_step_at = time.perf_counter()
        return n

    def step_on(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """The optimisation step itself, on a given batch (the benchmark's model-only column feeds one batch)."""
        with autocast(self.device, self.precision, cache=self.graphs != "capture"):
            logits = self._forward(x)
            loss = self.criterion(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        # Accumulated on the device: no .item() per step, so no host sync in the loop.
        self._loss_sum += loss.detach().float() * y.shape[0]
        self._correct += (logits.detach().argmax(1) == y).sum()
        if self.record_losses:
            self.losses.append(loss.detach().float())
        self._images += y.shape[0]
        self.steps_in_epoch += 1
        self.steps_done += 1
        return y.shape[0]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.graphs == "off":
            return self.step_model(x)
        if self._graph_shape is None:
            self._graph_shape = x.shape
            self._graphed = capture_graphs(self.model, x, self.device, self.precision) if self.graphs == "capture" else self.step_model
        if x.shape != self._graph_shape:
            return self.model(x)
        if self.graphs == "reduce-overhead" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # a new training iteration: earlier graph outputs may be reused
        return self._graphed(x)

    @property
    def images_in_epoch(self) -> int:
        return self._images

    def running_loss(self) -> float:
        """Mean training loss of the epoch so far. Syncs with the device: for progress lines, not per step."""
        return self._loss_sum.item() / max(1, self._images)

    def end_epoch(self, seconds: float) -> EpochResult:
        """Close the epoch (the first one also completes the resize cache); raises RunFailed on divergence."""
        if next(self._batches, None) is not None:
            raise RuntimeError(f"end_epoch() after {self.steps_in_epoch} of {self.steps_per_epoch} steps")
        mean_loss = self._loss_sum.item() / max(1, self._images)
        # BatchNorm can keep an exploded loss finite, so "diverged" also means far above chance.
        chance_loss = math.log(max(2, self.dataset.num_classes))
        if not math.isfinite(mean_loss) or mean_loss > DIVERGED_LOSS_FACTOR * chance_loss:
            raise RunFailed(f"diverged: training loss {mean_loss:.4g} after epoch {self.epoch} (chance level is {chance_loss:.2f}); "
                            "lower --lr or use --precision fp32")
        return EpochResult(self.epoch, mean_loss, 100.0 * self._correct.item() / max(1, self._images), seconds, self._images)

    # --- evaluation -----------------------------------------------------------------------------

    @torch.inference_mode()
    def accuracy(self, images_nhwc: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float], list[list[int]]]:
        """Top-1 accuracy (percent), per-class accuracy and the confusion matrix (rows: true class, columns:
        predicted) of uint8 NHWC images, model in eval mode."""
        classes = self.dataset.classes
        k = len(classes)
        # Graphed models are graphed for training batches; evaluation batches are large enough to run eagerly.
        model = self.model if self.graphs != "off" else self.step_model
        model.eval()
        pairs = torch.zeros(k * k, dtype=torch.long, device=self.device)
        for start in range(0, len(labels), self.config.eval_batch_size):
            x = normalize(images_nhwc[start:start + self.config.eval_batch_size], self.channels_last)
            y = labels[start:start + self.config.eval_batch_size]
            with autocast(self.device, self.precision):
                pred = model(x).argmax(1)
            pairs += torch.bincount(y * k + pred, minlength=k * k)
        confusion = pairs.view(k, k).cpu()
        correct, totals = confusion.diagonal(), confusion.sum(1)
        per_class = {c: (100.0 * correct[i].item() / totals[i].item()) if totals[i] else float("nan") for i, c in enumerate(classes)}
        return 100.0 * correct.sum().item() / max(1, len(labels)), per_class, confusion.tolist()

    def test_images(self, size: int | None) -> torch.Tensor:
        """The test split resized to `size` with the run's test method, uint8 NHWC on the device (cached)."""
        cfg = self.config
        key = ResizeKey(self.dataset.key, "test", size, cfg.test_interpolation,
                        effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias), cfg.backend)
        return self.cache.get(key, self.dataset.test_images.to(self.device))

    def evaluate(self) -> list[EvalResult]:
        """Accuracy at the headline test size and at every extra test size."""
        cfg = self.config
        labels = self.dataset.test_labels.to(self.device)
        evals = []
        for size in [cfg.test_size, *(s for s in cfg.test_sizes if s != cfg.test_size)]:
            t0 = time.perf_counter()
            images = self.test_images(size)
            acc, per_class, confusion = self.accuracy(images, labels)
            evals.append(EvalResult(int(images.shape[1]) if size is None else size, cfg.test_interpolation, acc, per_class,
                                    len(labels), time.perf_counter() - t0, confusion))
        return evals

    def result(self, epochs: list[EpochResult], evals: list[EvalResult], eval_seconds: float) -> RunResult:
        cfg = self.config
        peak, peak_kind = peak_memory(self.device)
        train_seconds = sum(e.seconds for e in epochs)
        return RunResult(
            config=cfg, config_hash=cfg.config_hash(), epochs=epochs, train_seconds=train_seconds,
            images_per_second=sum(e.images for e in epochs) / train_seconds if train_seconds > 0 else float("nan"),
            test_accuracy=evals[0].accuracy, per_class_accuracy=evals[0].per_class_accuracy, evals=evals,
            prepare_seconds=self.prepare_seconds,
            time_to_first_step_seconds=(self.first_step_at or time.perf_counter()) - self.t_start,
            eval_seconds=eval_seconds, peak_memory_bytes=peak, peak_memory_kind=peak_kind, macs_per_image=self.macs,
            params=self.model_info.params, effective_precision=self.precision, weights_tag=self.model_info.weights_tag,
            weights_loaded_keys=self.model_info.loaded_keys, input_shape=self.data.shape,
            provenance={**provenance.collect(self.device), "antialias_requested": self.requested.antialias,
                        "antialias_effective": cfg.effective_antialias, "backend": cfg.backend,
                        "weights_skipped_keys": self.model_info.skipped_keys, "normalize": {"mean": NORM_MEAN, "std": NORM_STD},
                        "train_seconds_includes": TRAIN_SECONDS_INCLUDES, "per_batch_resize": self.data.per_batch_resize,
                        "resize_path": self.data.resize_path, "channels_last": self.channels_last,
                        "single_window_matmul": self.single_window_matmul, "graphs": self.graphs},
        )


def train(config: RunConfig, *, dataset: Dataset | None = None, cache: ResizeCache | None = None,
          progress: bool | TrainProgress = True) -> RunResult:
    """Train and evaluate one configuration. Raises RunFailed if the loss diverges or memory runs out.

    `progress`: bars on a terminal, log lines ("resizelab" logger) otherwise; False for neither.
    """
    reporter = progress if isinstance(progress, TrainProgress) else TrainProgress(enabled=progress)
    run = Run(config, dataset=dataset, cache=cache).setup()
    reporter.start(run)
    epochs: list[EpochResult] = []
    try:
        for _ in range(run.config.epochs):
            run.begin_epoch()
            reporter.begin_epoch()
            synchronize(run.device)
            t_epoch = time.perf_counter()
            for _ in range(run.steps_per_epoch):
                run.step()
                reporter.step()
            synchronize(run.device)
            epochs.append(run.end_epoch(time.perf_counter() - t_epoch))
            reporter.end_epoch(epochs[-1])
        t_eval = time.perf_counter()
        evals = run.evaluate()
    except torch.cuda.OutOfMemoryError:
        raise RunFailed(f"out of GPU memory at size {run.config.size} with batch {run.config.batch_size}; lower --batch-size") from None
    finally:
        reporter.close()
    result = run.result(epochs, evals, time.perf_counter() - t_eval)
    if run.config.save_weights:
        # Handed to whoever writes the store (this process, or a Ray driver), which saves it beside the db.
        result.state_dict = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in run.model.state_dict().items()}
    return result
