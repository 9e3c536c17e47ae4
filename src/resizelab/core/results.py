"""What a run produced: `RunResult` and its JSON form, the one schema the store, the report and `--json` share."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from .config import RunConfig

TRAIN_SECONDS_INCLUDES = (
    "the training loop over all epochs: batch gather, normalisation, forward, backward and optimizer steps, the "
    "per-batch augmentation and resize of runs that must resize every epoch (augmentation first, or a split too "
    "large to hold resized), and torch.compile's compilation or the CUDA graph capture when --compile or --graphs asks for one; not the one-off resize of the "
    "training split (resize_seconds, whether it ran up front with PIL/OpenCV or batch by batch inside the first "
    "epoch on a cold cache, and 0 when read from the cache: provenance.resize_path says which), nor the dataset "
    "load, model construction or evaluation"
)
# Settings that change how a run executes (speed, float rounding) but not what it is: stored with each attempt,
# left out of the run's name, and columns a report can split on (`resizelab report --split-on`).
EXECUTION_KEYS = ("device", "channels_last", "single_window_matmul", "compile", "deterministic", "eval_batch_size",
                  "precision_requested", "resize_path", "data_path", "weights_path", "threads",
                  "threads_policy")
# What else the execution record holds, too detailed to split on: each change of torch threads the run's thread
# policy made, [step, threads, why] (training.threads), and how many steps ran with each count.
EXECUTION_DETAILS = ("thread_changes", "steps_by_threads")


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float  # percent, on the training batches as seen during the epoch
    seconds: float
    images: int
    val_accuracy: float | None = None  # percent, on the held-out validation split (--val-fraction) after the epoch


@dataclass
class EvalResult:
    size_px: int  # shorter edge after resizing (the native size when not resized)
    interpolation: str
    accuracy: float  # percent
    per_class_accuracy: dict[str, float]
    images: int
    seconds: float
    # Rows: true class, columns: predicted class, both in per_class_accuracy's order; counts of test images.
    confusion: list[list[int]] = field(default_factory=list)


@dataclass
class ServeEval:
    """Accuracy of a trained model on the test split resized by one serving recipe (training.recipes) to one size."""

    recipe: str
    size_px: int  # shorter edge after the recipe's resize
    accuracy: float  # percent
    per_class_accuracy: dict[str, float]
    images: int
    library: str  # the library and version that ran the recipe, e.g. "Pillow 11.0.0"
    seconds: float  # resize (0 from the cache) and evaluation
    baseline: bool = False  # the recipe is exactly the resize the model was trained and tested with


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
    resize_seconds: float  # the one-off resize of the training split in this run (0 from the cache); not in train_seconds
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
    weights_file: str | None = None  # the saved trained weights, relative to the results db's folder
    weights_sha256: str | None = None  # ... and their SHA-256, checked whenever they are read back (probe --run)
    # The trained weights while they travel to whoever writes the store (--save-weights); never in the JSON.
    state_dict: dict | None = field(default=None, repr=False, compare=False)
    execution: dict = field(default_factory=dict)  # EXECUTION_KEYS as they ran
    serving: list[ServeEval] = field(default_factory=list)  # one per --serve recipe and test size
    # The same on the held-out validation split (--val-fraction), what `advise` selects a serving recipe on.
    serving_val: list[ServeEval] = field(default_factory=list)
    # A learned resizer's cost (training.learned.attach), counted in macs_per_image and params too; empty for fixed methods.
    resizer: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        """Plain JSON types; measurements are always floats (an accuracy of 50 is 50.0), NaN becomes null."""
        out = asdict(replace(self, state_dict=None))
        del out["state_dict"]
        out["config"] = self.config.to_dict()
        out["epochs"] = len(self.epochs)
        out["epoch_history"] = [asdict(e) for e in self.epochs]
        out["input_shape"] = list(self.input_shape)
        for name in FLOAT_FIELDS:
            out[name] = float(out[name])
        return finite(out)


FLOAT_FIELDS = tuple(f.name for f in fields(RunResult) if f.type == "float")


def finite(value):
    """JSON has no NaN: store it as null rather than writing non-standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
