"""The engine: a `Run` built from a config (`setup()`, `step()`, `evaluate()`), and `train(config)`, a short
loop over it. `resizelab bench` times `Run.step` of this very class, so what is benchmarked is what runs.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable

import torch
import torch.nn as nn

from ..training import provenance
from ..core.config import MIN_TRAIN_IMAGES, RunConfig
from .data import Dataset, hold_out, load_dataset, subset
from ..core.errors import ConfigError, RunFailed
from .models import count_macs
from .sources import build, ensure_imagenet_weights
from .learned import attach as attach_resizer, is_learned
from .planning import plan
from .optim import make_optimizer, make_schedule
from .pipeline import MAX_RESIZED_TRAIN_BYTES, NORM_MEAN, NORM_STD, TrainData, input_shape, normalize
from ..core.log import console_logging, logger
from .progress import TrainProgress
from .recipes import library_version, served_images, training_recipe
from .resize import ResizeCache, ResizeKey, effective_antialias, output_size
from ..core.results import EXECUTION_DETAILS, EXECUTION_KEYS, TRAIN_SECONDS_INCLUDES, EpochResult, EvalResult, RunResult, ServeEval
from .runtime import (autocast, capture_graphs, peak_memory, ready_model, reset_peak_memory, resolve_channels_last,
                      resolve_device, resolve_graphs, resolve_precision, resolve_single_window_matmul, seed_everything,
                      synchronize, use_threads, available_memory_bytes)
from .threads import MachineLoad, ThreadPolicy, current_threads, set_threads

# An epoch's mean loss this many times the chance-level loss ln(C) counts as diverged.
DIVERGED_LOSS_FACTOR = 100


def check_memory(cfg: RunConfig, dataset: Dataset, device: torch.device) -> None:
    """Refuse, before allocating, a run whose resized splits cannot fit: without this a large --size on the full
    data allocates until the allocator fails, minutes in. Counts what this run holds at once: the resized
    training split (unless resized per batch), each resized test split, and the host's intermediate copy of a
    PIL/OpenCV resize; activations come on top, so this is a floor, not a promise."""
    h, w = dataset.native_size
    n_train, n_test = len(dataset.train_labels), len(dataset.test_labels)
    parts = []
    if cfg.size is not None:
        th, tw = output_size(h, w, cfg.size)
        train_bytes = n_train * 3 * th * tw
        per_batch = cfg.augment != "none" or (cfg.backend == "tensor" and train_bytes > MAX_RESIZED_TRAIN_BYTES)
        if not per_batch:
            # PIL and OpenCV build the resized split image by image on the host, then stack it: two copies.
            parts.append(("resized train split", train_bytes * (2 if cfg.backend != "tensor" else 1)))
    for size in dict.fromkeys([cfg.test_size, *cfg.test_sizes]):
        if size is not None:
            th, tw = output_size(h, w, size)
            parts.append((f"test split at {size} px", n_test * 3 * th * tw))
    needed = sum(b for _, b in parts)
    available = available_memory_bytes(device)
    if available is None or needed <= available:
        return
    detail = ", ".join(f"{name} {b / 2**30:.1f} GiB" for name, b in parts if b >= 2**27)
    raise ConfigError(f"size {cfg.size}: this run would hold about {needed / 2**30:.1f} GiB of resized images ({detail}) "
                      f"but {available / 2**30:.1f} GiB is available on {device}; lower --size or --test-sizes, use "
                      f"--limit-train/--limit-test N, or --backend tensor (resizes per batch when the split is too large)")


class Run:
    """One training run: its data on the device, model, optimizer and schedule, stepped one batch at a time."""

    def __init__(self, config: RunConfig, *, dataset: Dataset | None = None, cache: ResizeCache | None = None,
                 record_losses: bool = False, on_threads: Callable[[int], int] | None = None,
                 load: MachineLoad | None = None):
        # Planned: precision concrete and files named by content, so the result's hash is the one claimed.
        if config.weights == "imagenet" and config.weights_digest is None:
            # Their digest names the run, so they are fetched (on first use, as torchvision does) before planning.
            ensure_imagenet_weights(config.arch)
        self.config = plan(config)
        self.requested = config
        self._dataset, self._cache = dataset, cache
        self.record_losses = record_losses
        # Asked before the run takes more threads than it holds (the machine's thread ledger, in a sweep): the count granted.
        self.on_threads = on_threads
        self._load_given = load  # where the thread policy reads the machine's load (tests give a file of their own)
        self.losses: list[torch.Tensor] = []  # per step, on the device, when record_losses (tests compare them)

    def setup(self) -> "Run":
        """Load and place the data, build and ready the model, make the optimizer: everything before step one."""
        self.t_start = time.perf_counter()
        cfg = self.config
        self.device = device = resolve_device(cfg.device)
        # A deterministic run keeps its count too: the count sets oneDNN's summation order, so adapting to the
        # machine's load would make its last bits depend on what else ran.
        adaptive = cfg.threads is None and device.type == "cpu" and not cfg.deterministic
        # Read from here to the first step: what other processes keep busy while this run sets up.
        self._load = (self._load_given or MachineLoad()) if adaptive else None
        self.threads = use_threads(cfg.threads)  # before the run's first op
        # --threads N means N; without it a CPU run adapts its count to what the machine leaves free (training.threads).
        if adaptive and self.on_threads is not None:
            self.threads = set_threads(max(1, min(self.threads, self.on_threads(self.threads))))
        self.thread_policy = ThreadPolicy(self.threads, adaptive=adaptive)
        seed_everything(cfg.seed, cfg.deterministic)
        self.cache = self._cache if self._cache is not None else ResizeCache()
        if self._dataset is None:
            logger.info("loading %s", cfg.data)
        dataset = self._dataset if self._dataset is not None else load_dataset(cfg.data, cfg.data_dir)
        if cfg.data_digest is not None and dataset.key != cfg.data_digest:
            raise RunFailed(f"the data changed on disk since this run was planned (digest {dataset.key}, planned "
                            f"{cfg.data_digest}); run it again to plan it with the data as it is now")
        # A fixed subset seed: every run of a study sees the same images, whatever its own seed.
        self.dataset = subset(dataset, cfg.limit_train, cfg.limit_test, seed=0)
        self.val_images = self.val_labels = None
        if cfg.val_fraction:
            self.dataset, self.val_images, self.val_labels = hold_out(self.dataset, cfg.val_fraction)
        if len(self.dataset.train_labels) < MIN_TRAIN_IMAGES:
            raise ConfigError(f"{len(self.dataset.train_labels)} training image is too few for a batch: BatchNorm normalises "
                              f"over the batch and needs at least {MIN_TRAIN_IMAGES} images; give more training data")
        check_memory(cfg, self.dataset, device)
        logger.info("building %s (weights %s, %s stem) on %s", cfg.arch, cfg.weights, cfg.stem, device)
        model, self.model_info = build(cfg.arch, self.dataset.num_classes, cfg.weights, cfg.stem,
                                       size=input_shape(cfg, self.dataset), normalize=cfg.normalize)
        model.to(device)
        # Counted before ready_model's single-window swap: the architecture's MACs, whichever kernels run them.
        self.macs = count_macs(model, (3, *input_shape(cfg, self.dataset)), device)
        self.resizer: dict = {}
        if is_learned(cfg.interpolation):  # the resizer in front, trained with the model; its cost counted in the model's
            model, self.resizer = attach_resizer(model, cfg.interpolation, cfg.size, cfg.effective_antialias,
                                                 self.dataset.native_size, device)
            self.resizer["backbone_macs_per_image"], self.resizer["backbone_params"] = self.macs, self.model_info.params
            self.macs += self.resizer["macs_per_image"]
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
        self.bn_recalibrated: dict | None = None
        if adaptive:
            start = self.thread_policy.start_beside(self._load.busy_elsewhere(), self._load.cores)
            if start != self.threads:
                self.threads = set_threads(self.on_threads(start) if self.on_threads is not None else start)
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

    def adapt_threads(self, seconds: float, images: int) -> str | None:
        """Tell the thread policy what the last step took; it sets the count for the next steps. What a
        decision kept, for the progress line ("machine busy: 2 → 1 threads"), or None."""
        policy, step = self.thread_policy, self.steps_done - 1
        if not policy.adaptive:
            policy.observe(step, seconds, images)
            return None
        before = policy.threads
        wanted = policy.observe(step, seconds, images, self._load.idle_cores())
        if wanted != before:
            # Fewer is always granted (and frees the cores for another sweep); more only what the ledger has free.
            granted = self.on_threads(wanted) if self.on_threads is not None else wanted
            policy.refused(step, granted)
            set_threads(policy.threads)
        return policy.pop_message()

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

    def accuracy(self, images_nhwc: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float], list[list[int]]]:
        """Top-1 accuracy (percent), per-class accuracy and the confusion matrix (rows: true class, columns:
        predicted) of uint8 NHWC images, model in eval mode."""
        # Graphed models are graphed for training batches; evaluation batches are large enough to run eagerly.
        model = self.model if self.graphs != "off" else self.step_model
        return classify(model, images_nhwc, labels, self.dataset.classes, self.device, self.precision, self.channels_last,
                        self.config.eval_batch_size)

    def test_images(self, size: int | None) -> torch.Tensor:
        """The test split resized to `size` with the run's test method, uint8 NHWC on the device (cached)."""
        cfg = self.config
        key = ResizeKey(self.dataset.key, "test", None if is_learned(cfg.test_interpolation) else size, cfg.test_interpolation,
                        effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias), cfg.backend)
        return self.cache.get(key, self.dataset.test_images.to(self.device))

    def validate(self) -> float:
        """Accuracy (percent) on the held-out validation split, resized as the test split is (--val-fraction)."""
        cfg = self.config
        key = ResizeKey(self.dataset.key, "val", cfg.test_size, cfg.test_interpolation,
                        effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias), cfg.backend)
        images = self.cache.get(key, self.val_images.to(self.device))
        return self.accuracy(images, self.val_labels.to(self.device))[0]

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

    def serve(self) -> list[ServeEval]:
        """Accuracy under each --serve recipe at the test size and every extra test size, and under the run's own
        test resize (training_recipe: the catalogue recipe that is the same call, else backend:...), the baseline."""
        cfg = self.config
        if not cfg.serve:
            return []
        native = int(min(self.dataset.test_images.shape[-2:]))
        sizes = tuple(dict.fromkeys(native if s is None else s for s in [cfg.test_size, *cfg.test_sizes]))
        baseline = training_recipe(cfg.test_interpolation, effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias),
                                   cfg.backend)
        model = self.model if self.graphs != "off" else self.step_model
        if self.resizer:  # a plain resize where the learned one was: the backbone exported alone
            model, baseline = self.model.backbone, None
        return serve_model(model, self.dataset, cfg.serve, sizes, baseline, self.device, self.precision, self.channels_last,
                           cfg.eval_batch_size, self.cache)

    def serve_validation(self) -> list[ServeEval]:
        """Accuracy under each --serve recipe on the validation split, at the test size."""
        cfg = self.config
        if not cfg.serve or self.val_images is None:
            return []
        held = Dataset(self.dataset.name, self.dataset.classes, self.val_images[:0], self.val_labels[:0], self.val_images,
                       self.val_labels, f"{self.dataset.key}-heldout")
        size = int(min(held.test_images.shape[-2:])) if cfg.test_size is None else cfg.test_size
        baseline = training_recipe(cfg.test_interpolation, effective_antialias(cfg.test_interpolation, cfg.backend, cfg.antialias),
                                   cfg.backend)
        model = self.model if self.graphs != "off" else self.step_model
        return serve_model(model, held, cfg.serve, (size,), baseline, self.device, self.precision, self.channels_last,
                           cfg.eval_batch_size, self.cache)

    def execution(self) -> dict:
        """How this run executed (EXECUTION_KEYS): not part of its name, stored with each attempt."""
        cfg = self.config
        values = {"device": str(self.device), "channels_last": self.channels_last, "single_window_matmul": self.single_window_matmul,
                  "graphs": self.graphs,
                  "compile": cfg.compile, "deterministic": cfg.deterministic, "eval_batch_size": cfg.eval_batch_size,
                  "precision_requested": cfg.precision_requested, "resize_path": self.data.resize_path,
                  "data_path": cfg.imagefolder_path or (cfg.data_dir if cfg.data in ("cifar10", "cifar100") else None),
                  "weights_path": cfg.weights if cfg.weights not in ("imagenet", "none") else None,
                  **self.thread_policy.record()}
        # Beside the settings a report can split on: each change of threads (step, threads, why), steps per count.
        return {k: values[k] for k in (*EXECUTION_KEYS, *EXECUTION_DETAILS)}

    def recalibrate_batchnorm(self) -> dict | None:
        """--bn-recalibrate N: BatchNorm's running statistics estimated afresh, as a plain average over N training
        batches (resized and augmented as in training) through the final weights. What was done, for the run's
        provenance; None when off or the model has no BatchNorm."""
        n = self.config.bn_recalibrate
        layers = sum(isinstance(m, BATCH_NORMS) for m in self.model.modules())
        if not n or not layers:
            return None
        t0 = time.perf_counter()

        def batches():
            while True:  # more batches than an epoch holds: the next epoch's, in its own order
                for x, _ in self.data.epoch(self.config.batch_size):
                    yield x

        with torch.no_grad(), autocast(self.device, self.precision):
            torch.optim.swa_utils.update_bn(itertools.islice(batches(), n), self.model)
        synchronize(self.device)
        self.bn_recalibrated = {"batches": n, "layers": layers, "seconds": time.perf_counter() - t0}
        return self.bn_recalibrated

    def result(self, epochs: list[EpochResult], evals: list[EvalResult], eval_seconds: float) -> RunResult:
        cfg = self.config
        peak, peak_kind = peak_memory(self.device)
        train_seconds = sum(e.seconds for e in epochs)
        return RunResult(
            config=cfg, config_hash=cfg.config_hash(), epochs=epochs, train_seconds=train_seconds,
            images_per_second=sum(e.images for e in epochs) / train_seconds if train_seconds > 0 else float("nan"),
            test_accuracy=evals[0].accuracy, per_class_accuracy=evals[0].per_class_accuracy, evals=evals,
            resize_seconds=self.data.resize_seconds, prepare_seconds=self.prepare_seconds,
            time_to_first_step_seconds=(self.first_step_at or time.perf_counter()) - self.t_start,
            eval_seconds=eval_seconds, peak_memory_bytes=peak, peak_memory_kind=peak_kind, macs_per_image=self.macs,
            params=self.model_info.params + self.resizer.get("params", 0), resizer=self.resizer, effective_precision=self.precision, weights_tag=self.model_info.weights_tag,
            weights_loaded_keys=self.model_info.loaded_keys, input_shape=self.data.shape,
            provenance={**provenance.collect(self.device), "antialias_requested": self.requested.antialias,
                        "antialias_effective": cfg.effective_antialias, "backend": cfg.backend,
                        "weights_skipped_keys": self.model_info.skipped_keys, "normalize": {"mean": NORM_MEAN, "std": NORM_STD, **self.model_info.source},
                        "train_seconds_includes": TRAIN_SECONDS_INCLUDES, "per_batch_resize": self.data.per_batch_resize,
                        "resize_path": self.data.resize_path, "channels_last": self.channels_last,
                        "single_window_matmul": self.single_window_matmul, "graphs": self.graphs, "precision_requested": cfg.precision_requested,
                        "data_path": cfg.imagefolder_path, "data_dir": cfg.data_dir, "weights_path": self.execution()["weights_path"],
                        "bn_recalibrated": self.bn_recalibrated},
            execution=self.execution(),
        )


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def stale_batchnorm(run: Run, epochs: list[EpochResult], headline: EvalResult) -> str | None:
    """The warning for a model with BatchNorm that put every test image in one class although its last epoch
    trained above chance: the sign of running statistics that lag the weights (a short run from scratch)."""
    k = len(headline.confusion)
    if run.config.bn_recalibrate or not epochs or k < 2 or not any(isinstance(m, BATCH_NORMS) for m in run.model.modules()):
        return None
    predicted = [sum(row[j] for row in headline.confusion) for j in range(k)]
    train_accuracy = epochs[-1].train_accuracy
    if max(predicted) < sum(predicted) or train_accuracy is None or train_accuracy < 1.5 * 100 / k:
        return None
    return (f"every test image was put in one class although the last epoch trained to {train_accuracy:.1f}%: "
            "BatchNorm's running statistics likely lag the weights (a short run from scratch); "
            "--bn-recalibrate 50 estimates them afresh after training")


@torch.inference_mode()
def classify(model: nn.Module, images_nhwc: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], device: torch.device,
             precision: str, channels_last: bool, batch_size: int) -> tuple[float, dict[str, float], list[list[int]]]:
    """Top-1 accuracy (percent), per-class accuracy and confusion matrix of uint8 NHWC images, model in eval mode.
    One function for a run's own evaluation and for `resizelab serve`, so that serving a stored model with the
    recipe it was trained with gives back the run's accuracy exactly."""
    k = len(classes)
    model.eval()
    pairs = torch.zeros(k * k, dtype=torch.long, device=device)
    for start in range(0, len(labels), batch_size):
        x = normalize(images_nhwc[start:start + batch_size].to(device), channels_last)
        y = labels[start:start + batch_size].to(device)
        with autocast(device, precision):
            pred = model(x).argmax(1)
        pairs += torch.bincount(y * k + pred, minlength=k * k)
    confusion = pairs.view(k, k).cpu()
    correct, totals = confusion.diagonal(), confusion.sum(1)
    per_class = {c: (100.0 * correct[i].item() / totals[i].item()) if totals[i] else float("nan") for i, c in enumerate(classes)}
    return 100.0 * correct.sum().item() / max(1, len(labels)), per_class, confusion.tolist()


def serve_model(model: nn.Module, dataset: Dataset, recipes: tuple[str, ...], sizes: tuple[int, ...], baseline: str | None,
                device: torch.device, precision: str, channels_last: bool, batch_size: int,
                cache: ResizeCache | None = None) -> list[ServeEval]:
    """Accuracy of `model` on `dataset`'s test split under each recipe at each size (native sizes resized
    from the stored originals, shorter edge as Resize(S)); one ServeEval per (recipe, size). The baseline (the
    model's own training resize) is evaluated too, first, when `recipes` lacks it: every change has its reference."""
    cache = cache if cache is not None else ResizeCache()
    labels = dataset.test_labels.to(device)
    names = recipes if baseline is None or baseline in recipes else (baseline, *recipes)
    out = []
    for size in sizes:
        for name in names:
            t0 = time.perf_counter()
            images = served_images(cache, dataset.key, dataset.test_images, name, size, device)
            acc, per_class, _ = classify(model, images, labels, dataset.classes, device, precision, channels_last, batch_size)
            out.append(ServeEval(name, size, acc, per_class, len(labels), library_version(name), time.perf_counter() - t0,
                                 baseline=name == baseline))
    return out


def train(config: RunConfig, *, dataset: Dataset | None = None, cache: ResizeCache | None = None,
          progress: bool | TrainProgress = True, check: Callable[[], None] | None = None,
          on_threads: Callable[[int], int] | None = None) -> RunResult:
    """Train and evaluate one configuration. Raises RunFailed if the loss diverges or memory runs out.

    `progress`: bars on a terminal, log lines ("resizelab" logger) otherwise; False for neither.
    `check` is called between steps (and before evaluation); whatever it raises stops the run there:
    a lease that was taken over (store.Lease.check) ends training within one renewal period.
    `on_threads(n)` is asked before an adaptive CPU run (no --threads) computes with n threads, and told when it
    takes fewer; it returns the count granted (a sweep's share in the machine's thread ledger follows it).
    """
    if not isinstance(config, RunConfig):
        raise ConfigError(f"train takes a RunConfig (e.g. resizelab.RunConfig(data='synthetic', size=16)); got {config!r}")
    if check is not None and not callable(check):
        raise ConfigError(f"check must be a function called between steps, or None; got {check!r}")
    if on_threads is not None and not callable(on_threads):
        raise ConfigError(f"on_threads must be a function given a thread count and returning the count granted, or None; "
                          f"got {on_threads!r}")
    reporter = progress if isinstance(progress, TrainProgress) else TrainProgress(enabled=progress)
    # Called from Python with nothing set up to show log records: they go to stderr for this call.
    threads = current_threads()
    with console_logging(reporter.enabled):
        try:
            return _train(config, dataset=dataset, cache=cache, reporter=reporter, check=check, on_threads=on_threads)
        finally:
            # A run's threads are its own: the next run of this process starts from the process's share again.
            set_threads(threads)


def _train(config: RunConfig, *, dataset: Dataset | None, cache: ResizeCache | None, reporter: TrainProgress,
           check: Callable[[], None] | None, on_threads: Callable[[int], int] | None = None) -> RunResult:
    check = check or (lambda: None)
    run = Run(config, dataset=dataset, cache=cache, on_threads=on_threads).setup()
    reporter.start(run)
    said = run.thread_policy.pop_message()  # a run that starts with fewer threads than it may use says why
    if said:
        reporter.note(said)
    epochs: list[EpochResult] = []
    try:
        for _ in range(run.config.epochs):
            run.begin_epoch()
            reporter.begin_epoch()
            synchronize(run.device)
            t_epoch = time.perf_counter()
            resized_before = run.data.resize_seconds
            for _ in range(run.steps_per_epoch):
                check()
                t_step = time.perf_counter()
                images = run.step()
                said = run.adapt_threads(time.perf_counter() - t_step, images)
                if said:
                    reporter.note(said)
                reporter.step()
            synchronize(run.device)
            # A cold cache resizes inside the first epoch; that time is resize_seconds, not training.
            seconds = time.perf_counter() - t_epoch - (run.data.resize_seconds - resized_before)
            epochs.append(run.end_epoch(seconds))
            if run.val_images is not None:  # after the epoch's clock: validation is not training time
                epochs[-1].val_accuracy = run.validate()
            reporter.end_epoch(epochs[-1])
        check()
        recalibrated = run.recalibrate_batchnorm()
        if recalibrated:
            reporter.note(f"BatchNorm statistics of {recalibrated['layers']} layers estimated afresh from "
                          f"{recalibrated['batches']} training batches ({recalibrated['seconds']:.1f} s)")
        t_eval = time.perf_counter()
        evals = run.evaluate()
        said = stale_batchnorm(run, epochs, evals[0])
        if said:
            logger.warning(said)
    except torch.cuda.OutOfMemoryError:
        raise RunFailed(f"out of GPU memory at size {run.config.size} with batch {run.config.batch_size}; lower --batch-size") from None
    finally:
        reporter.close()
    result = run.result(epochs, evals, time.perf_counter() - t_eval)
    result.serving = run.serve()  # after eval_seconds: each recipe's resize and evaluation is timed in its own entry
    result.serving_val = run.serve_validation()
    if run.config.save_weights:
        # Handed to whoever writes the store (this process, or a Ray driver), which saves it beside the db.
        result.state_dict = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in run.model.state_dict().items()}
    return result
