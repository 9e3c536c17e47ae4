"""The run configuration: every run option declared once, validated, resolved and hashed.

Each field of `RunConfig` carries its own declaration (`option(...)`: type, default, choices, help,
whether it is part of the experiment's identity). The CLI flags and their `--help`, the TOML keys of
a sweep file and the validation are all generated from it, so adding an option is one edit here.
Choice lists come from `core.choices`, a leaf that the implementing modules import too, so importing
this module does not import torch. A config is a value: it is resolved against a machine (precision auto,
the digests of data and weights files) by `training.planning.plan`, not by itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator

from .choices import available_recipes
from .choices import (ARCH_FORMS, AUGMENTS, BACKEND_INTERPOLATIONS, BACKENDS, DATASETS, GRAPHS, INTERPOLATIONS, LEARNED_INTERPOLATIONS,
                      NORMALIZATIONS,
                      OPTIMIZERS, PRECISIONS, RESNETS, SCHEDULES, SERVE_RECIPES, STEMS, arch_form, effective_antialias)
from .errors import ConfigError
MIN_SIZE_PX, MAX_SIZE_PX = 4, 1024
# BatchNorm normalises a training batch over its images: one image has no spread (and at 1x1 maps fails).
MIN_TRAIN_IMAGES = 2
NATIVE = "native"  # a test size: the test images as they are, whatever the train size
# synthetic:N[:M]: N training images (M test, default N / 5). 50,000 is CIFAR-10's size; a million 32 px
# images are 3 GB of uint8, about as much as one process should hold for a synthetic task.
SYNTHETIC_MIN, SYNTHETIC_MAX = 10, 1_000_000
SYNTHETIC_NATIVE_PX = 32
SYNTHETIC_MAX_BYTES = 4 << 30


def synthetic_spec(spec: str) -> tuple[int, int, int] | None:
    """(train images, test images, native px) of a synthetic data spec, None for other data: 'synthetic' is
    5,000 + 1,000 at 32 px; synthetic:N[:M] sets the counts, a trailing @PX the native size (synthetic:5000@256: the
    same task drawn at 256 px, for a large downscale factor without a download). Raises ConfigError when malformed."""
    if not (spec == "synthetic" or spec.startswith(("synthetic:", "synthetic@"))):
        return None
    body, at, px_text = spec.partition("@")
    if at and not px_text.isdigit():
        raise ConfigError(f"data {spec!r}: the native size after @ must be a whole number of px, e.g. synthetic:5000@256")
    px = int(px_text) if at else SYNTHETIC_NATIVE_PX
    if body == "synthetic":
        n_train, n_test = 5000, 1000
    else:
        parts = body.split(":")[1:]
        if len(parts) > 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"data {spec!r}: expected synthetic:N or synthetic:N:M with whole numbers of train (N) and test (M) "
                              "images, e.g. synthetic:50000 (CIFAR-10's size: 50,000 + 10,000), and optionally @PX")
        n_train = int(parts[0])
        n_test = int(parts[1]) if len(parts) == 2 else max(1, n_train // 5)
    if not (SYNTHETIC_MIN <= n_train <= SYNTHETIC_MAX and 1 <= n_test <= SYNTHETIC_MAX):
        raise ConfigError(f"data {spec!r}: N (training images) must be between {SYNTHETIC_MIN} and {SYNTHETIC_MAX:,} and M (test "
                          f"images) between 1 and {SYNTHETIC_MAX:,}; got N={n_train}, M={n_test}")
    if not MIN_SIZE_PX * 2 <= px <= MAX_SIZE_PX:
        raise ConfigError(f"data {spec!r}: the native size must be between {MIN_SIZE_PX * 2} and {MAX_SIZE_PX} px; got {px}")
    if (n_train + n_test) * 3 * px * px > SYNTHETIC_MAX_BYTES:
        raise ConfigError(f"data {spec!r}: {n_train + n_test:,} images of {px} px are {(n_train + n_test) * 3 * px * px / 2**30:.1f} GiB "
                          f"of uint8, more than the {SYNTHETIC_MAX_BYTES / 2**30:.0f} GiB a synthetic task may hold; use fewer images or px")
    return n_train, n_test, px


def synthetic_sizes(spec: str) -> tuple[int, int] | None:
    """(train, test) image counts of a synthetic data spec ('synthetic' is 5,000 + 1,000), None for other data.
    Raises ConfigError for a malformed count."""
    parsed = synthetic_spec(spec)
    return None if parsed is None else parsed[:2]


# --- value kinds: how a flag's text is parsed and how a value is checked ----------------------

def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true or false; got {text!r}")


def parse_auto_bool(text: str) -> bool | None:
    if str(text).strip().lower() == "auto":
        return None
    try:
        return parse_bool(text)
    except ConfigError:
        raise ConfigError(f"expected auto, true or false; got {text!r}") from None


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"expected a whole number; got {text!r}") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"expected a number; got {text!r}") from None


def _parse_size(text: str) -> int | None:
    return None if text.strip().lower() in ("native", "none") else parse_int(text)


def comma_items(text: str) -> list[str]:
    """The items of a comma-separated value; an empty one ("16,,32", "16,") is a typo, not a value to drop."""
    if not text.strip():
        return []
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise ConfigError(f"an empty item in {text!r}; separate the values with single commas")
    return items


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_int(t) for t in comma_items(text))


def _parse_optional_str(text: str) -> str | None:
    return None if text.strip().lower() in ("", "none", "same") else text


@dataclass(frozen=True)
class Kind:
    """How one option's values look: parsed from a flag, checked wherever they come from (flag, TOML, Python)."""

    parse: Callable[[str], Any]
    check: Callable[[str, Any], None]
    metavar: str
    none_text: str = "none"  # how a default of None reads in a help text: native (sizes), auto (auto booleans)
    # The values a search may try (`resizelab advise` generates its space from them): a closed choice's
    # list, a boolean's two values; empty for open kinds (sizes, rates), which a search is given explicitly.
    domain: tuple = ()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def whole(low: int, high: int | None = None, *, optional: bool = False, native: bool = False) -> Kind:
    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if not _is_int(value):
            raise ConfigError(f"{name} must be a whole number{' or native' if native else ''}; got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {bound}; got {value}")
    return Kind(_parse_size if native else parse_int, check, "PX" if native else "N", "native" if native else "none")


def threads_kind() -> Kind:
    """Torch threads: a whole number from 1 to 1024, or auto (None: adapted to the machine, training.threads)."""
    def parse(text: str) -> int | None:
        return None if text.strip().lower() == "auto" else parse_int(text)

    def check(name: str, value: Any) -> None:
        if value is None:
            return
        if not _is_int(value):
            raise ConfigError(f"{name} must be a whole number of threads or auto; got {value!r}")
        if not 1 <= value <= 1024:
            raise ConfigError(f"{name} must be auto or between 1 and 1024; got {value}")
    return Kind(parse, check, "{auto,N}", "auto")


def test_size_kind() -> Kind:
    """A test size: whole px, NATIVE (no resize at test: the images as they are) or None (the default: the
    train size, whatever it is). Two spellings because "native" and "as trained" differ whenever the train
    size is not native; a resolved config holds a number, or None for native."""
    def parse(text: str) -> int | str | None:
        lowered = text.strip().lower()
        if lowered == NATIVE:
            return NATIVE
        if lowered in ("same", "train"):
            return None
        return parse_int(text)

    def check(name: str, value: Any) -> None:
        if value is None or value == NATIVE:
            return
        if not _is_int(value):
            raise ConfigError(f"{name} must be a whole number, native (no resize at test) or same (the train size); got {value!r}")
        whole(MIN_SIZE_PX, MAX_SIZE_PX).check(name, value)
    return Kind(parse, check, "{PX,native,same}")


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Kind:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number; got {value!r}")
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        # NaN compares false with everything, so it would slip through the range test below.
        if not math.isfinite(value) or (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
            raise ConfigError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")
    return Kind(parse_float, check, "X")


def choice(valid: tuple[str, ...], *, optional: bool = False) -> Kind:
    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if value not in valid:
            close = difflib.get_close_matches(str(value), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{name} must be one of {', '.join(valid)}; got {value!r}{hint}")
    return Kind(_parse_optional_str if optional else str, check, "{" + ",".join(valid) + "}", domain=tuple(valid))


def check_whole(name: str, value: Any, low: int, high: int | None = None) -> None:
    """The whole-number check of run options, for other configs (spectrum, probe) to share its messages."""
    whole(low, high).check(name, value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    choice(tuple(choices)).check(name, value)


def boolean(*, auto: bool = False) -> Kind:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, bool) and not (auto and value is None):
            raise ConfigError(f"{name} must be {'auto, true or false' if auto else 'true or false'}; got {value!r}")
    return Kind(parse_auto_bool if auto else parse_bool, check, "{auto,true,false}" if auto else "{true,false}",
                "auto" if auto else "none", domain=(True, False))


def sizes_list() -> Kind:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list of sizes in px, e.g. [16, 32]; got {value!r}")
        for v in value:
            whole(MIN_SIZE_PX, MAX_SIZE_PX).check(name, v)
    return Kind(parse_sizes, check, "PX[,PX...]")


def recipes_list() -> Kind:
    """Serving recipe names (core.choices.SERVE_RECIPES), comma-separated; 'all' is every one, 'available' every
    one whose library is installed here."""
    def parse(text: str) -> tuple[str, ...]:
        items = comma_items(text)
        return SERVE_RECIPES if items == ["all"] else available_recipes() if items == ["available"] else tuple(items)

    def check(name: str, value: Any) -> None:
        if value in ("all", "available"):  # a sweep file's `serve = "all"`; the config turns it into the recipes
            return
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be 'all' or a list of serving recipes, e.g. ['pil-bilinear', 'cv2-linear']; got {value!r}")
        for v in value:
            choice(SERVE_RECIPES).check(f"{name} recipe", v)
    return Kind(parse, check, "RECIPE[,RECIPE...]|available|all")


def text_list(metavar: str = "NAME[,NAME...]") -> Kind:
    """Comma-separated names (the configs that take them check each against their own list)."""
    def check(name: str, value: Any) -> None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{name} must be a list of names; got {value!r}")
    return Kind(lambda text: tuple(comma_items(text)), check, metavar)


def bool_list() -> Kind:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, bool) for v in value):
            raise ConfigError(f"{name} must be a list of true/false values; got {value!r}")
    return Kind(lambda text: tuple(parse_bool(t) for t in comma_items(text)), check, "{true,false}[,...]")


def text(metavar: str, check: Callable[[str, Any], None] | None = None, *, optional: bool = False) -> Kind:
    def check_text(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string; got {value!r}")
        if check is not None:
            check(name, value)
    return Kind(str, check_text, metavar)


def _check_data(name: str, value: str) -> None:
    if value.startswith("imagefolder:"):
        if not value.split(":", 1)[1]:
            raise ConfigError("data 'imagefolder:PATH' needs a PATH, e.g. imagefolder:./my-images")
    elif value.startswith("synthetic"):
        if synthetic_sizes(value) is None:
            raise ConfigError(f"data must be one of {', '.join(DATASETS)}; got {value!r}")
    elif value not in ("cifar10", "cifar100"):
        raise ConfigError(f"data must be one of {', '.join(DATASETS)}; got {value!r}")


def check_arch(name: str, value: str) -> None:
    """The spelling of an --arch spec; whether the model exists is asked of its library when the run is planned
    (training.sources), so that this module imports no torch."""
    if arch_form(value) is None:
        raise ConfigError(f"{name} must be {ARCH_FORMS}; got {value!r}")


def _check_device(name: str, value: str) -> None:
    if not (value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {value!r}")


@dataclass(frozen=True)
class Option:
    """The declaration of one option of a config dataclass (kept in the field's metadata): RunConfig's run
    options, and the options of the sweep, bench, spectrum and probe configs. The CLI's flags, their metavars
    and their help texts (default included) are generated from it."""

    kind: Kind
    help: str
    identity: bool = True  # part of what the run measures, so part of its hash; False: where or how it executes
    grid: bool = True  # a comma-separated flag value makes a sweep axis
    flag: str | None = None  # the flag's name when it is not the field's ("size" for spectrum's sizes)
    metavar: str | None = None  # the flag's metavar when it is not the kind's
    # A flag without a value that sets the field to the opposite of its default (--retry-failed, --no-ablation).
    switch: bool = False
    # Older spellings still accepted (e.g. "--limit" for --limit-test): one name per concept across commands.
    aliases: tuple[str, ...] = ()

    def flag_name(self, field_name: str) -> str:
        return "--" + (self.flag or field_name).replace("_", "-")

    def help_text(self, default: Any) -> str:
        """The help, with the default generated from the declaration unless the help already says it."""
        if self.switch or re.search(r"(?<![-\w])default\b", self.help):  # the help says the default in its own words
            return self.help
        return f"{self.help} (default {default_text(default, self.kind)})"


def option(default: Any, kind: Kind, help: str, *, identity: bool = True, grid: bool = True,  # noqa: A002
           flag: str | None = None, metavar: str | None = None, switch: bool = False, aliases: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"option": Option(kind, help, identity, grid, flag, metavar, switch, aliases)})


def default_text(value: Any, kind: Kind | None = None) -> str:
    """A default as a flag would spell it: none/native/auto for None, true/false, comma-separated lists."""
    if value is None:
        return kind.none_text if kind is not None else "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(default_text(v) for v in value) or "none"
    return str(value)


def declared_options(cls: type) -> Iterator[tuple[str, Option]]:
    """(name, declaration) of every option a config dataclass declares with `option(...)`, in field order."""
    for f in fields(cls):
        if "option" in f.metadata:
            yield f.name, f.metadata["option"]


def declared_default(cls: type, name: str) -> Any:
    """The default of a config dataclass's field, as declared."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def derived(help: str) -> Any:  # noqa: A002
    """A field no one sets by hand: filled in when the run is planned (`planning.plan`), from what is on disk
    and what this machine runs. It is no flag and no sweep key, but it is stored and hashed with the config."""
    return field(default=None, metadata={"derived": help})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run. Validated on construction; touches no file."""

    data: str = option("cifar10", text("{cifar10,cifar100,synthetic[:N[:M]][@PX],imagefolder:PATH}", _check_data),
                       "dataset: CIFAR (downloaded on first use), the built-in synthetic task (5,000 + 1,000 images; "
                       "synthetic:N[:M] for N train and M test images, M = N/5 if left out: synthetic:50000 is CIFAR-10's size; "
                       "@PX draws it at PX px instead of 32, e.g. synthetic:5000@256), "
                       "or an ImageFolder tree PATH/train/<class>/*, PATH/val/<class>/*")
    data_dir: str | None = option(None, text("DIR", optional=True), "where CIFAR is found or downloaded "
                                  "(default $RESIZELAB_DATA_DIR or ~/.cache/resizelab/data)", identity=False)
    size: int | None = option(None, whole(MIN_SIZE_PX, MAX_SIZE_PX, optional=True, native=True),
                              "train input size in px, shorter edge, like torchvision's Resize(S); native: no resize")
    test_size: int | str | None = option(None, test_size_kind(),
                                         "size for the headline test accuracy: PX, native (no resize at test) or same "
                                         "(the default: the train size)")
    test_sizes: tuple[int, ...] = option((), sizes_list(), "extra test sizes, comma-separated (train at A, test at B) (default: none, the test size only)",
                                         grid=False)
    interpolation: str = option("bilinear", choice(INTERPOLATIONS), "resize method")
    test_interpolation: str | None = option(None, choice(INTERPOLATIONS, optional=True),
                                            "resize method for test images (default: the train method)")
    antialias: bool = option(True, boolean(), "antialias when downsampling; the effective value is recorded "
                             "(nearest never filters, PIL and area always do)")
    backend: str = option("tensor", choice(BACKENDS), "pil: torchvision's Resize on PIL images, once; "
                          "tensor: batched on the device")
    arch: str = option("resnet18", text("ARCH", check_arch), "architecture: a torchvision classification model (resnet18, "
                       "efficientnet_b0, vit_b_16, ...; `resizelab models` lists them), timm:NAME (pip install 'resizelab[timm]'), "
                       "or package.module:callable / path/file.py:callable, your own factory called with num_classes=N")
    weights: str = option("imagenet", text("{imagenet,none,PATH}"), "imagenet (torchvision's, downloaded on first use), "
                          "none, or a state_dict file")
    stem: str = option("imagenet", choice(STEMS), "imagenet: 7x7 stride-2 conv + max-pool; cifar: 3x3 stride-1 conv, "
                       "no max-pool (ResNets)")
    # Identity, but left out of the hash at its default so that every run stored before it existed keeps its name.
    normalize: str = option("seed", choice(NORMALIZATIONS), "input normalisation: seed (Normalize(0.5, 0.5), the study "
                            "being reproduced) or weights (the mean/std the model's weights were trained with, from "
                            "torchvision's weights meta or timm's pretrained_cfg); recorded")
    epochs: int = option(2, whole(1, 10_000), "training epochs")
    batch_size: int = option(32, whole(1, 65_536), "training batch size")
    lr: float = option(0.001, number(0.0, 10.0, low_open=True), "learning rate")
    momentum: float = option(0.9, number(0.0, 1.0, high_open=True), "SGD momentum")
    weight_decay: float = option(0.0, number(0.0, 1.0), "weight decay")
    optimizer: str = option("sgd", choice(OPTIMIZERS), "optimizer")
    schedule: str = option("constant", choice(SCHEDULES), "learning-rate schedule (cosine: to 0 over all steps)")
    label_smoothing: float = option(0.0, number(0.0, 1.0, high_open=True), "label smoothing")
    augment: str = option("none", choice(AUGMENTS), "crop-flip: random crop (padding 4) and flip before the resize, "
                          "per batch on the device (needs --backend tensor)")
    precision: str = option("auto", choice(PRECISIONS), "auto: bf16 on CUDA and on a CPU with native bf16, "
                            "fp32 on other CPUs; the precision that ran is recorded")
    seed: int = option(0, whole(0, 2**31 - 1), "random seed (weights of the new head, batch order, augmentation)")
    limit_train: int | None = option(None, whole(1, optional=True), "train on a class-balanced subset of N images (default: all of them)")
    limit_test: int | None = option(None, whole(1, optional=True), "test on a class-balanced subset of N images (default: all of them)")
    # Named only when nonzero (identity_payload), so the runs stored before it existed keep their names.
    val_fraction: float = option(0.0, number(0.0, 0.5, high_open=True), "hold out this share of the training images "
                                 "(class-balanced, the same images for every run) as a validation split, evaluated after "
                                 "every epoch; `advise` selects on it and reports the test split", grid=False)
    # Named only when nonzero (identity_payload), like val_fraction.
    bn_recalibrate: int = option(0, whole(0, 1_000_000), "after training, estimate BatchNorm's running statistics afresh "
                                 "from N training batches with the final weights (torch.optim.swa_utils.update_bn, "
                                 "'precise BN'); a short run from scratch otherwise tests with statistics of weights long "
                                 "gone, and a MobileNet can put every test image in one class; 0: off")
    device: str = option("auto", text("{auto,cpu,cuda,cuda:N}", _check_device), "where to train", identity=False)
    compile: bool = option(False, boolean(), "torch.compile the model", identity=False)
    graphs: str = option("auto", choice(GRAPHS), "CUDA graphs for the training step, compile or "
                         "capture time counted in train seconds: off (kernels launched one by one); capture "
                         "(torch.cuda.make_graphed_callables: forward and backward recorded at the first step, replayed "
                         "after; CUDA only); reduce-overhead (torch.compile(mode='reduce-overhead')); auto: off until "
                         "the GPU check says otherwise (training.runtime.CUDA_GRAPHS); what ran is recorded", identity=False)
    deterministic: bool = option(False, boolean(), "torch.use_deterministic_algorithms (default: fast mode)",
                                 identity=False)
    channels_last: bool | None = option(None, boolean(auto=True), "memory format; auto: channels_last, except NCHW "
                                        "for fp32 on a CPU with --single-window-matmul false", identity=False)
    single_window_matmul: bool | None = option(None, boolean(auto=True), "run a convolution whose output is 1x1 "
                                               "(layer4 of a ResNet at 32 px) as the matrix product it is: same result, "
                                               "faster on a CPU; auto: on (on CUDA: training.runtime.CUDA_SINGLE_WINDOW_MATMUL); "
                                               "what ran is recorded", identity=False)
    eval_batch_size: int = option(1024, whole(1, 65_536), "evaluation batch size", identity=False)
    # Execution, not identity, like the memory layout: the thread count changes oneDNN's summation order in the
    # last digits, not what the run is. No grid axis: runs that differ only here are one run (one hash).
    threads: int | None = option(None, threads_kind(), "torch threads the run computes with (intra-op; inter-op too in "
                                 "a fresh process); auto: at most the cores this run may use (this process's, or its "
                                 "share in a packed sweep or beside other sweeps), fewer while the machine is busy (on a "
                                 "CPU, unless --deterministic: the count whose steps are fastest now, training.threads); "
                                 "N: N, never adapted; what ran is recorded", identity=False, grid=False)
    # Not identity: evaluating the trained model under more resizes adds measurements, it changes nothing trained.
    serve: tuple[str, ...] = option((), recipes_list(), "after training, also evaluate under these serving recipes (resizelab "
                                    "serve's catalogue, or all) at the test size and every --test-sizes entry; stored with the "
                                    "run, the recipe it was trained with as the baseline (default: none, the run's own test resize only)", identity=False, grid=False)
    # Execution, not identity: saving the trained weights changes nothing the run measures, so a run
    # saved and one not saved are the same experiment (one hash, resumed and skipped alike).
    save_weights: bool = option(False, boolean(), "save the trained state_dict beside the results db "
                                "(<db folder>/weights/<config hash>-<attempt>.pt), named in the stored result as "
                                "weights_file, for `resizelab probe --run HASH`", identity=False, grid=False)
    # Filled in by planning. A path names where data or weights live, not what they hold: editing files in
    # place must change the run's name and moving them must not, so the hash takes these digests instead.
    data_digest: str | None = derived("SHA-256 over the dataset's files (ImageFolder images, CIFAR batches)")
    weights_digest: str | None = derived("SHA-256 of the weights file (for imagenet: of torchvision's cached checkpoint)")
    precision_requested: str | None = derived("the --precision asked for; `precision` holds what auto resolved to here")
    model_digest: str | None = derived("for a package.module:callable arch: SHA-256 over the factory's source file and the "
                                       "built model's parameter names and shapes (editing your model makes a new run)")

    def __post_init__(self) -> None:
        if isinstance(self.test_sizes, list):
            object.__setattr__(self, "test_sizes", tuple(self.test_sizes))
        if self.serve == "all" or self.serve == ["all"] or self.serve == ("all",):  # as a sweep file or Python spells it
            object.__setattr__(self, "serve", SERVE_RECIPES)
        elif self.serve == "available" or self.serve == ["available"] or self.serve == ("available",):
            object.__setattr__(self, "serve", available_recipes())
        elif isinstance(self.serve, list):
            object.__setattr__(self, "serve", tuple(self.serve))
        for name in ("channels_last", "single_window_matmul"):
            if getattr(self, name) == "auto":  # as a sweep file spells it
                object.__setattr__(self, name, None)
        if self.threads == "auto":  # as a sweep file or Python spells the default
            object.__setattr__(self, "threads", None)
        if self.test_size == "same":  # as a sweep file or Python may spell the default
            object.__setattr__(self, "test_size", None)
        for name, opt in options():
            opt.kind.check(name, getattr(self, name))
        for name in DERIVED_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} is filled in when a run is planned and must be a string; got {value!r}")
        if self.precision_requested is not None:
            choice(PRECISIONS).check("precision_requested", self.precision_requested)
        # Combinations no single option can check.
        for name in ("interpolation", "test_interpolation"):
            method = getattr(self, name)
            if method is not None and method not in BACKEND_INTERPOLATIONS[self.backend]:
                can = ", ".join(BACKEND_INTERPOLATIONS[self.backend])
                other = [b for b, ms in BACKEND_INTERPOLATIONS.items() if method in ms]
                raise ConfigError(f"{name} {method!r} is not available with backend {self.backend!r} "
                                  f"(it supports {can}); use backend {other[0]!r} for {method}")
        if self.interpolation in LEARNED_INTERPOLATIONS or self.test_interpolation in LEARNED_INTERPOLATIONS:
            self._check_learned()
        if self.limit_train is not None and self.limit_train < MIN_TRAIN_IMAGES:
            raise ConfigError(f"limit_train {self.limit_train} is too few images for a training batch: BatchNorm normalises "
                              f"over the batch and needs at least {MIN_TRAIN_IMAGES}; give limit_train {MIN_TRAIN_IMAGES} or more")
        if self.stem == "cifar" and self.arch not in RESNETS:
            raise ConfigError(f"stem 'cifar' applies to ResNets ({', '.join(RESNETS)}); got arch {self.arch!r}")
        if self.graphs == "capture" and self.compile:
            raise ConfigError("graphs 'capture' records the eager model and cannot be combined with compile; use "
                              "--graphs reduce-overhead for a compiled step replayed as CUDA graphs, or --compile false")
        if self.augment != "none" and self.backend != "tensor":
            raise ConfigError(f"augment {self.augment!r} crops and flips before the resize, batch by batch on the device, "
                              "which needs backend 'tensor'; use backend tensor or augment none")

    def _check_learned(self) -> None:
        """A learned resizer is part of the model and produces the one size it was trained for."""
        method = self.interpolation if self.interpolation in LEARNED_INTERPOLATIONS else self.test_interpolation
        if self.test_interpolation not in (None, self.interpolation):
            raise ConfigError(f"interpolation {self.interpolation!r} with test_interpolation {self.test_interpolation!r}: a learned "
                              f"resizer ({method}) is part of the trained model, so train and test use it alike; leave "
                              "--test-interpolation out (`resizelab serve` evaluates the model without it)")
        if self.size is None:
            raise ConfigError(f"interpolation {method!r} is a learned resizer to a size and needs --size PX (native: no resize, "
                              "nothing to learn)")
        other = [s for s in (self.test_size, *self.test_sizes) if s not in (None, self.size)]
        if other:
            raise ConfigError(f"interpolation {method!r} produces only the size it was trained for ({self.size} px); test size(s) "
                              f"{', '.join(map(str, other))} cannot be produced: leave --test-size/--test-sizes out")

    # --- derived views -------------------------------------------------------------------------

    @property
    def effective_antialias(self) -> bool:
        return effective_antialias(self.interpolation, self.backend, self.antialias)

    @property
    def imagefolder_path(self) -> str | None:
        return self.data.split(":", 1)[1] if self.data.startswith("imagefolder:") else None

    def resolved(self) -> "RunConfig":
        """The canonical form that names a run: absolute paths, defaults filled in, effective antialias.

        Two configs that would compute the same thing resolve to the same value, so they hash
        alike and a sweep runs them once. A planned config is resolved already, and returned as it is
        (its test_size None means native, no longer "the train size").
        """
        if self.is_planned:
            return self
        changes: dict[str, Any] = {"antialias": self.effective_antialias}
        if self.imagefolder_path is not None:
            changes["data"] = "imagefolder:" + os.path.abspath(self.imagefolder_path)
        if self.weights not in ("imagenet", "none"):
            changes["weights"] = os.path.abspath(self.weights)
        where, _, name = self.arch.rpartition(":")
        if arch_form(self.arch) == "callable" and where.endswith(".py"):
            changes["arch"] = f"{os.path.abspath(where)}:{name}"
        if self.data_dir is not None:
            changes["data_dir"] = os.path.abspath(self.data_dir)
        # Resolved to what is fed at test: a number, or None for the native size (as `size` spells it).
        if self.test_size is None:
            changes["test_size"] = self.size
        elif self.test_size == NATIVE:
            changes["test_size"] = None
        if self.test_interpolation is None:
            changes["test_interpolation"] = self.interpolation
        # Kept as given (sorted, once each), headline size included: "test at 16, 24, 32" is one setting
        # across a sweep over train sizes, so runs that share it group into one series.
        changes["test_sizes"] = tuple(sorted(set(self.test_sizes)))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["test_sizes"] = list(self.test_sizes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """A config from option values; a stored config's derived fields (digests, requested precision) are accepted too."""
        unknown = sorted(set(values) - set(CONFIG_FIELDS) - set(DERIVED_FIELDS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(CONFIG_FIELDS))}")
        return cls(**values)

    @property
    def is_planned(self) -> bool:
        """Whether everything the hash needs is resolved: precision, and the digest of each file input."""
        return (self.precision != "auto" and self.precision_requested is not None
                and (self.data_digest is not None or not needs_data_digest(self.data))
                and (self.weights_digest is not None or self.weights == "none")
                and (self.model_digest is not None or arch_form(self.arch) != "callable"))

    def config_hash(self) -> str:
        """Stable 16-hex-digit name of what runs: the planned config's identity (`identity_payload`). Only a
        planned config has one (its precision and the digests of its files are part of its name): plan it
        first, `resizelab.plan(config)` (training.planning), or use `resizelab.run_hash(config)`."""
        if not self.is_planned:
            raise ConfigError("this config is not planned yet (precision auto and the digests of its data and weights files "
                              "are resolved on the machine that runs it); name it with resizelab.run_hash(config), or "
                              "resizelab.plan(config).config_hash()")
        return identity_hash(self.to_dict())

    def label(self) -> str:
        """A short human name for tables and logs."""
        size = "native" if self.size is None else f"{self.size}px"
        aa = "aa" if self.effective_antialias else "no-aa"
        precision = "" if self.precision == "auto" else f" {self.precision}"
        weights = self.weights if self.weights in ("imagenet", "none") else os.path.basename(self.weights)
        return f"{self.arch}/{self.stem} {size} {self.interpolation}/{aa}/{self.backend} w={weights}{precision} seed={self.seed}"


def run_option(name: str, help: str | None = None, **changes: Any) -> Any:  # noqa: A002
    """A field of another config (spectrum, probe) that takes a run option: the run option's kind (parsing,
    metavar), default and help, unless `default`, `help` or another `option()` argument is given."""
    declared = next(f for f in fields(RunConfig) if f.name == name)
    default = changes.pop("default", declared.default)
    return option(default, declared.metadata["option"].kind, help or declared.metadata["option"].help, **changes)


def evaluation_threads_option() -> Any:
    """--threads of a command that only evaluates (serve, probe, spectrum): a run's kind, without its adapting."""
    return run_option("threads", "torch threads it computes with; auto: the cores other processes leave free as it "
                      "starts (at least one); N: N")


def check_threads_field(config: Any) -> None:
    """A config's `threads`: 'auto' (as Python may spell the default) is None, then checked as a run's --threads."""
    if config.threads == "auto":
        object.__setattr__(config, "threads", None)
    threads_kind().check("threads", config.threads)


def options() -> Iterator[tuple[str, Option]]:
    """(name, declaration) of every run option, in declaration order (derived fields are not options)."""
    return declared_options(RunConfig)


def option_default(name: str) -> Any:
    return declared_default(RunConfig, name)


CONFIG_FIELDS = tuple(name for name, _ in options())
DERIVED_FIELDS = tuple(f.name for f in fields(RunConfig) if "derived" in f.metadata)
IDENTITY_FIELDS = frozenset(name for name, opt in options() if opt.identity)


def needs_data_digest(data: str) -> bool:
    """Data read from files (CIFAR batches, ImageFolder images) is named by content; synthetic data by its code."""
    # Generated data (synthetic, synthetic:N[:M]) is named by its spec: the generator is seeded and versioned.
    return not (data == "synthetic" or data.startswith(("synthetic:", "synthetic@")))


def identity_payload(config: dict[str, Any]) -> dict[str, Any]:
    """What names a run, from a planned config's dict: every identity option, with data and weights that
    live in files named by their digests instead of their paths (the paths are where, not what)."""
    payload = {k: config.get(k) for k in sorted(IDENTITY_FIELDS)}
    for added in ("val_fraction", "bn_recalibrate"):
        if not payload.get(added):
            payload.pop(added, None)
    if str(payload.get("data", "")).startswith("imagefolder:"):
        payload["data"] = "imagefolder"
    if payload.get("weights") not in ("imagenet", "none"):
        payload["weights"] = "file"
    payload["data_digest"] = config.get("data_digest")
    payload["weights_digest"] = config.get("weights_digest")
    # Added after runs were stored: at their defaults they are left out, so those runs keep their names.
    if payload.get("normalize") in (None, "seed"):
        payload.pop("normalize", None)
    if config.get("model_digest") is not None:
        payload["model_digest"] = config["model_digest"]
    arch = str(payload.get("arch", ""))
    if arch_form(arch) == "callable" and arch.rpartition(":")[0].endswith(".py"):
        # A factory in a file is named by what it builds (model_digest), not where the file lies.
        payload["arch"] = "file:" + str(payload["arch"]).rpartition(":")[2]
    return payload


def identity_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(identity_payload(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def preflight(config: RunConfig) -> None:
    """The checks that need the filesystem, made where the run is planned (not in the constructor, so a
    config can be built and shipped to a machine that lacks these paths, such as a Ray worker's)."""
    path = config.imagefolder_path
    if path is not None and not os.path.isdir(path):
        raise ConfigError(f"imagefolder path {path!r} is not a directory; expected PATH/train/<class>/* and PATH/val/<class>/*")
    if config.weights not in ("imagenet", "none") and not os.path.isfile(config.weights):
        raise ConfigError(f"weights must be 'imagenet', 'none' or a path to a state_dict file; {config.weights!r} is not a file")


# --- overrides: one merge for presets, sweep files and the command line ------------------------

@dataclass
class GridSpec:
    """A sweep before expansion: fixed values, axes, variants laid over every point, seeds."""

    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    variants: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] | None = None

    def override(self, values: dict[str, Any]) -> "GridSpec":
        """What the user asked for beats what the preset or file says: a list value replaces (or makes) an
        axis, a scalar fixes the option; either way it wins over every variant's value. `seed` sets the seeds."""
        base, grid = dict(self.base), {k: list(v) for k, v in self.grid.items()}
        variants = [dict(v) for v in self.variants]
        seeds = self.seeds
        for key, value in values.items():
            if key == "seed":
                seeds = list(value) if isinstance(value, list) else [value]
                continue
            if isinstance(value, list) and len(value) > 1:
                grid[key] = value
                base.pop(key, None)
            else:
                base[key] = value[0] if isinstance(value, list) else value
                grid.pop(key, None)
            for variant in variants:
                variant.pop(key, None)
        return GridSpec(base, grid, variants, seeds)
