"""Planning: what a config will run as on this machine, resolved before it is hashed or stored.

`precision auto` becomes the precision this machine runs (bf16 on one CPU, fp32 on another: two
different runs), and data and weights read from files are named by the SHA-256 of their content, so
editing an image in place makes a new run while moving the folder does not. The ImageNet checkpoint in
torch.hub's cache is named by its SHA-256 too, checked against the prefix in its file name. The paths stay in the
config (they say where to read) but not in the hash; the requested precision is kept beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

from ..core.config import RunConfig, needs_data_digest
from ..core.errors import ConfigError, ResizelabError
from ..core.log import logger

_lock = threading.Lock()
_macs_memo: dict[tuple, tuple[int, int]] = {}
# A planning of many runs holds its digests here (see `many`); None outside one.
_batch: dict | None = None
# A planning that takes longer than this says what it is doing (once).
SLOW_PLANNING_SECONDS = 2.0


def plan(config: RunConfig) -> RunConfig:
    """`config` resolved, with precision, data digest and weights digest filled in (see the module docstring).
    A config planned already is returned as it is."""
    if config.is_planned:
        return config
    cfg = config.resolved()
    changes: dict = {}
    if cfg.precision_requested is None:
        changes["precision_requested"] = cfg.precision
    if cfg.precision == "auto":
        changes["precision"] = _once(("precision", *_precision_inputs(cfg)), "working out the precision of each run",
                                     lambda: auto_precision(cfg))
    if cfg.data_digest is None and needs_data_digest(cfg.data):
        changes["data_digest"] = _once(("data", cfg.data, cfg.data_dir), f"reading the files of {cfg.data} to name its runs",
                                       lambda: data_digest(cfg.data, cfg.data_dir))
    # The model first: a name that is no model, a factory that fails or a size it cannot take is said before the
    # weights are looked for.
    changes.update(plan_model(cfg))
    if cfg.weights_digest is None and cfg.weights == "imagenet":
        # The cached checkpoint, verified against the hash in its name: another file there is another run.
        from .sources import imagenet_weights_digest

        changes["weights_digest"] = _once(("imagenet", cfg.arch), f"reading the ImageNet weights of {cfg.arch}",
                                          lambda: imagenet_weights_digest(cfg.arch))
    elif cfg.weights_digest is None and cfg.weights != "none":
        changes["weights_digest"] = _once(("weights", cfg.weights), f"reading the weights file {cfg.weights}",
                                          lambda: weights_digest(cfg.weights))
    if _batch is not None:
        _batch["planned"] += 1
    return dataclasses.replace(cfg, **changes)


@contextlib.contextmanager
def many(runs: int) -> Iterator[None]:
    """Plan `runs` configs in one go: inside, each data digest, weights digest and auto precision is worked
    out once per distinct input and reused (outside, each `plan` checks the files again, which is what a
    long-lived process needs), and a planning still going after SLOW_PLANNING_SECONDS says, in one line,
    what it is doing. Nested uses share the outer one."""
    global _batch
    if _batch is not None:
        yield
        return
    _batch = state = {"memo": {}, "doing": "resolving each run", "planned": 0}

    def say() -> None:
        logger.info("planning %s runs: %s (%s planned so far) ...", f"{runs:,}", state["doing"], f"{state['planned']:,}")

    timer = threading.Timer(SLOW_PLANNING_SECONDS, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _batch = None


def _once(key: tuple, doing: str, compute: Callable[[], str]) -> str:
    """compute(), or inside `many` the value (or the error) it gave for `key` before."""
    state = _batch
    if state is None:
        return compute()
    memo = state["memo"]
    if key not in memo:
        state["doing"] = doing
        try:
            memo[key] = (compute(), None)
        except ResizelabError as e:  # missing data is missing for every run over it: looked for once
            memo[key] = (None, e)
        finally:
            state["doing"] = "resolving each run"
    value, error = memo[key]
    if error is not None:
        raise error
    return value


def plan_model(cfg: RunConfig) -> dict:
    """The model's part of planning: the spec resolved against its library (ConfigError with the closest names),
    a callable's model_digest, and every size the run feeds checked against what the model can take. The four
    built-in archs take any size and need nothing here."""
    from ..core.choices import ARCHS

    if cfg.arch in ARCHS:
        return {}
    from .sources import check_sizes, model_digest, resolve

    source = resolve(cfg.arch)
    changes = {}
    if source.form == "callable" and cfg.model_digest is None:
        changes["model_digest"] = _once(("model", cfg.arch), f"building {cfg.arch} to name its runs", lambda: model_digest(cfg.arch))
    if cfg.weights == "imagenet" and source.form == "callable":
        raise ConfigError(f"arch {cfg.arch!r} is your own factory: it has no ImageNet weights here; use --weights FILE or --weights none")
    train, tests = _fed_sizes(cfg)
    check_sizes(cfg.arch, cfg.stem, train, tests)
    return changes


def _fed_sizes(cfg: RunConfig) -> tuple[int | None, list[tuple[str, int]]]:
    """(train size, [(role, px)] of the test sizes) the run feeds; a native size is read from the data when it is
    here (None when it is not: the run itself then says what the model cannot take)."""
    from ..core.config import synthetic_spec

    native = None
    if synthetic_spec(cfg.data) is not None:
        native = synthetic_spec(cfg.data)[2]
    elif cfg.size is None or cfg.test_size is None:
        from ..core.errors import DataUnavailable
        from .data import load_dataset

        try:
            native = min(load_dataset(cfg.data, cfg.data_dir, download=False).native_size)
        except (DataUnavailable, ConfigError):
            native = None
    train = cfg.size if cfg.size is not None else native
    tests = [("test size", cfg.test_size if cfg.test_size is not None else native)]
    tests += [("test size", s) for s in cfg.test_sizes]
    return train, [(role, px) for role, px in tests if px is not None]


def _precision_inputs(cfg: RunConfig) -> tuple:
    """What `auto_precision` reads of a config: the device, the matmul choice and what sets the step's MACs."""
    return (cfg.device, cfg.single_window_matmul, cfg.arch, cfg.stem, cfg.data, cfg.data_dir, cfg.batch_size, cfg.size)


def run_hash(config: RunConfig) -> str:
    """The name of the run `config` plans to here (RunConfig.config_hash of the planned config)."""
    return plan(config).config_hash()


def auto_precision(cfg: RunConfig) -> str:
    """What `--precision auto` runs as here: runtime.resolve_precision, given the step's MACs when it needs them."""
    from .runtime import resolve_device, resolve_precision, resolve_single_window_matmul

    device = resolve_device(cfg.device)
    # `auto` (None) for the matmul means what runs on this device, as in Run.setup.
    single_window_matmul = resolve_single_window_matmul(cfg.single_window_matmul, device)
    macs_per_step = params = None
    if device.type == "cpu" and not single_window_matmul:
        # Only this choice depends on the step's compute per parameter (see resolve_precision).
        macs, params = _macs_and_params(cfg)
        macs_per_step = macs * cfg.batch_size
    return resolve_precision("auto", device, macs_per_step, params, single_window_matmul)


def _macs_and_params(cfg: RunConfig) -> tuple[int, int]:
    from .data import load_dataset
    from .models import count_macs
    from .pipeline import input_shape
    from .sources import build

    dataset = load_dataset(cfg.data, cfg.data_dir, download=False)
    shape = input_shape(cfg, dataset)
    key = (cfg.arch, cfg.stem, dataset.num_classes, shape)
    with _lock:
        if key not in _macs_memo:
            model, info = build(cfg.arch, dataset.num_classes, "none", cfg.stem, size=shape)
            _macs_memo[key] = (count_macs(model, (3, *shape)), info.params)
        return _macs_memo[key]


def data_digest(data: str, data_dir: str | None) -> str:
    """The content digest of a dataset read from files (what `Dataset.key` is for it). Never downloads:
    a sweep fetches its inputs first (sweep.ensure_inputs), so missing data here is a DataUnavailable."""
    from .data import CIFAR, cifar_digest, imagefolder_digest

    if data in CIFAR:
        return cifar_digest(data, Path(data_dir) if data_dir else None)
    if data.startswith("imagefolder:"):
        return imagefolder_digest(data.split(":", 1)[1])
    raise ConfigError(f"data {data!r} has no files to digest")


def weights_digest(path: str) -> str:
    from .digests import file_sha256

    if not os.path.isfile(path):
        raise ConfigError(f"weights must be 'imagenet', 'none' or a path to a state_dict file; {path!r} is not a file")
    return file_sha256(Path(path))
