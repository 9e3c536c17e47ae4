"""The run configuration: one validated dataclass, its canonical (resolved) form and its stable hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
BACKENDS = ("pil", "tensor", "opencv")
# What each backend can do; anything else is refused with this list in the message.
BACKEND_INTERPOLATIONS = {
    "pil": ("nearest", "bilinear", "bicubic", "area", "lanczos"),
    "tensor": ("nearest", "bilinear", "bicubic", "area"),
    "opencv": ("nearest", "bilinear", "bicubic", "area", "lanczos"),
}
ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")
RESNETS = ("resnet18", "resnet34", "resnet50")
STEMS = ("imagenet", "cifar")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine")
AUGMENTS = ("none", "crop-flip")
DATASETS = ("cifar10", "cifar100", "synthetic", "imagefolder:PATH")

# Fields that say where or how a run executes, not what it measures: two runs that differ only
# here are the same experiment, so they share a hash (and a sweep never repeats one).
EXECUTION_FIELDS = frozenset({"data_dir", "device", "compile", "deterministic", "eval_batch_size", "channels_last",
                              "single_window_matmul"})

MIN_SIZE_PX, MAX_SIZE_PX = 4, 1024


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _int_in(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number; got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}; got {value}")


def _float_in(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ConfigError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")


def effective_antialias(interpolation: str, backend: str, requested: bool) -> bool:
    """The antialias that actually happens, which torchvision does not always tell you.

    Nearest never filters (torchvision ignores the flag); area is a box filter over each output
    pixel's footprint, so it always antialiases; PIL's filters always widen their support when
    downsampling, so PIL bilinear/bicubic/lanczos always antialias whatever is requested. OpenCV's
    linear/cubic/lanczos never widen their kernel (they alias when downsampling; only INTER_AREA
    averages), so a request for antialias there is recorded as the False that happens. The value
    describes the filter; it only matters when the resize is a downsample.
    """
    if interpolation == "nearest":
        return False
    if interpolation == "area" or backend == "pil":
        return True
    if backend == "opencv":
        return False
    return bool(requested)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run. Validated on construction."""

    data: str = "cifar10"
    data_dir: str | None = None
    size: int | None = None  # train input size in px (square images: SxS); None = native, no resize
    test_size: int | None = None  # size for the headline test accuracy; None = same as size
    test_sizes: tuple[int, ...] = ()  # extra evaluation sizes (train at A, test at B)
    interpolation: str = "bilinear"
    test_interpolation: str | None = None  # None = same as interpolation
    antialias: bool = True
    backend: str = "tensor"
    arch: str = "resnet18"
    weights: str = "imagenet"  # imagenet | none | path to a state_dict file
    stem: str = "imagenet"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: str = "none"
    precision: str = "auto"
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    device: str = "auto"
    compile: bool = False
    deterministic: bool = False
    channels_last: bool | None = None  # None: auto, see train.resolve_channels_last
    single_window_matmul: bool = True  # convolutions with a 1x1 output as matrix products, see singlewindow.py
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self._validate_data()
        for name in ("size", "test_size"):
            value = getattr(self, name)
            if value is not None:
                _int_in(name, value, MIN_SIZE_PX, MAX_SIZE_PX)
        if not isinstance(self.test_sizes, tuple):
            object.__setattr__(self, "test_sizes", tuple(self.test_sizes))
        for value in self.test_sizes:
            _int_in("test_sizes", value, MIN_SIZE_PX, MAX_SIZE_PX)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        if self.test_interpolation is not None:
            _choice("test_interpolation", self.test_interpolation, INTERPOLATIONS)
        if not isinstance(self.antialias, bool):
            raise ConfigError(f"antialias must be true or false; got {self.antialias!r}")
        _choice("backend", self.backend, BACKENDS)
        for name in ("interpolation", "test_interpolation"):
            method = getattr(self, name)
            if method is not None and method not in BACKEND_INTERPOLATIONS[self.backend]:
                can = ", ".join(BACKEND_INTERPOLATIONS[self.backend])
                other = [b for b, ms in BACKEND_INTERPOLATIONS.items() if method in ms]
                raise ConfigError(
                    f"{name} {method!r} is not available with backend {self.backend!r} "
                    f"(it supports {can}); use backend {other[0]!r} for {method}"
                )
        _choice("arch", self.arch, ARCHS)
        _choice("stem", self.stem, STEMS)
        if self.stem == "cifar" and self.arch not in RESNETS:
            raise ConfigError(f"stem 'cifar' applies to ResNets ({', '.join(RESNETS)}); got arch {self.arch!r}")
        self._validate_weights()
        _int_in("epochs", self.epochs, 1, 10_000)
        _int_in("batch_size", self.batch_size, 1, 65_536)
        _int_in("eval_batch_size", self.eval_batch_size, 1, 65_536)
        _float_in("lr", self.lr, 0.0, 10.0, low_open=True)
        _float_in("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _float_in("weight_decay", self.weight_decay, 0.0, 1.0)
        _float_in("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("augment", self.augment, AUGMENTS)
        if self.augment != "none" and self.backend != "tensor":
            raise ConfigError(
                f"augment {self.augment!r} crops and flips before the resize, batch by batch on the device, "
                "which needs backend 'tensor'; use backend tensor or augment none"
            )
        _choice("precision", self.precision, PRECISIONS)
        _int_in("seed", self.seed, 0, 2**31 - 1)
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None:
                _int_in(name, value, 1)
        if not (self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.channels_last == "auto":  # as a sweep file spells it
            object.__setattr__(self, "channels_last", None)
        for name in ("compile", "deterministic", "channels_last", "single_window_matmul"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "channels_last" and value is None):
                allowed = "auto, true or false" if name == "channels_last" else "true or false"
                raise ConfigError(f"{name} must be {allowed}; got {value!r}")

    def _validate_data(self) -> None:
        if not isinstance(self.data, str):
            raise ConfigError(f"data must be one of {', '.join(DATASETS)}; got {self.data!r}")
        if self.data.startswith("imagefolder:"):
            path = self.data.split(":", 1)[1]
            if not path:
                raise ConfigError("data 'imagefolder:PATH' needs a PATH, e.g. imagefolder:./my-images")
            if not os.path.isdir(path):
                raise ConfigError(f"imagefolder path {path!r} is not a directory; expected PATH/train/<class>/* and PATH/val/<class>/*")
        elif self.data not in ("cifar10", "cifar100", "synthetic"):
            raise ConfigError(f"data must be one of {', '.join(DATASETS)}; got {self.data!r}")

    def _validate_weights(self) -> None:
        if self.weights in ("imagenet", "none"):
            return
        if not isinstance(self.weights, str) or not os.path.isfile(self.weights):
            raise ConfigError(f"weights must be 'imagenet', 'none' or a path to a state_dict file; {self.weights!r} is not a file")

    # --- derived views -------------------------------------------------------------------------

    @property
    def effective_antialias(self) -> bool:
        return effective_antialias(self.interpolation, self.backend, self.antialias)

    def resolved(self) -> "RunConfig":
        """The canonical form that names a run: absolute paths, defaults filled in, effective antialias.

        Two configs that would compute the same thing resolve to the same value, so they hash
        alike and a sweep runs them once.
        """
        changes: dict[str, Any] = {"antialias": self.effective_antialias}
        if self.data.startswith("imagefolder:"):
            changes["data"] = "imagefolder:" + os.path.abspath(self.data.split(":", 1)[1])
        if self.weights not in ("imagenet", "none"):
            changes["weights"] = os.path.abspath(self.weights)
        if self.data_dir is not None:
            changes["data_dir"] = os.path.abspath(self.data_dir)
        if self.test_size is None:
            changes["test_size"] = self.size
        if self.test_interpolation is None:
            changes["test_interpolation"] = self.interpolation
        extra = sorted(set(self.test_sizes) - {changes.get("test_size", self.test_size)})
        changes["test_sizes"] = tuple(extra)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["test_sizes"] = list(self.test_sizes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        values = dict(values)
        if "test_sizes" in values and values["test_sizes"] is not None:
            values["test_sizes"] = tuple(values["test_sizes"])
        return cls(**values)

    def config_hash(self) -> str:
        """Stable 16-hex-digit name of the experiment (execution-only fields left out)."""
        payload = {k: v for k, v in self.resolved().to_dict().items() if k not in EXECUTION_FIELDS}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """A short human name for tables and logs."""
        size = "native" if self.size is None else f"{self.size}px"
        aa = "aa" if self.effective_antialias else "no-aa"
        precision = "" if self.precision == "auto" else f" {self.precision}"
        return (f"{self.arch}/{self.stem} {size} {self.interpolation}/{aa}/{self.backend} w={_weights_tag_short(self.weights)}"
                f"{precision} seed={self.seed}")


def _weights_tag_short(weights: str) -> str:
    return weights if weights in ("imagenet", "none") else os.path.basename(weights)


def parse_auto_bool(text: str) -> bool | None:
    if str(text).strip().lower() == "auto":
        return None
    try:
        return parse_bool(text)
    except ConfigError:
        raise ConfigError(f"expected auto, true or false; got {text!r}") from None


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true or false; got {text!r}")


CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
