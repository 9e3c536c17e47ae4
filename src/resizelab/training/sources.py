"""Model sources: an --arch spec parsed once into the library that builds it and what that library knows about it.

Three forms (core.choices.arch_form): a torchvision classification model (`torchvision.models.list_models`),
`timm:NAME` (timm's registry), and `package.module:callable` or `path/file.py:callable` (the user's factory,
called with `num_classes=N`, returning an nn.Module). `resolve` gives a `ModelSource`: the defaults the library
records beside its weights (mean/std, interpolation, input size, min size; torchvision's weights meta and
transforms, timm's pretrained_cfg) and how the input size enters construction (torchvision ViT's `image_size`,
timm's `img_size` + `dynamic_img_size`). `build` makes the model with a new head for the dataset's classes,
through each library's own means. The four built-in names (resnet18/34/50, mobilenet_v2) are built exactly as
before (training.models.build_model), so their runs keep their names and results.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..core.choices import ARCH_FORMS, ARCHS, RESNETS, arch_form
from ..core.errors import ConfigError, WeightsError, first_line
from ..core.optional import require
from .models import (IMAGENET_WEIGHTS, ModelInfo, file_state_dict, state_dict_misfit, build_model, hub_checkpoint_path,
                     load_state_dict_file)

SEED_MEAN, SEED_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Sizes tried, when a model cannot take one, to name the sizes that work (each is one forward of one image).
PROBE_SIZES = (8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 384, 448, 512)
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
# A callable's parameter shapes for its digest are taken at this class count (what the file builds, not the data).
DIGEST_CLASSES = 10


@dataclass(frozen=True)
class ModelSource:
    """What an --arch spec names and what its library records about it."""

    spec: str
    form: str  # torchvision, timm or callable
    name: str  # the library's model name, or where:callable
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    input_size: int | None = None  # the pretraining's input size in px, when the library says
    min_size: int = 1  # the smallest input the weights' meta allows (torchvision), 1 when unsaid
    patch_size: int | None = None  # a patch embedding's stride: inputs must be a multiple of it
    size_arg: str | None = None  # the constructor argument that fixes the input size (image_size, img_size)
    pinned_weights: str | None = None  # torchvision's weights enum, pinned (never DEFAULT); timm's hf_hub_id

    @property
    def builtin(self) -> bool:
        return self.form == "torchvision" and self.spec in ARCHS


# --- naming a model ------------------------------------------------------------------------------

def _closest(name: str, names: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"unknown {what} {name!r}{hint} (resizelab models lists them)"


@functools.lru_cache(maxsize=None)
def torchvision_names() -> tuple[str, ...]:
    from torchvision import models

    return tuple(models.list_models(module=models))


def timm_module():
    return require("timm", "timm", "--arch timm:NAME")


def pinned_weights_name(name: str) -> str | None:
    """torchvision's ImageNet weights of `name`, pinned by enum member (IMAGENET1K_V1 where it exists, as the four
    built-ins pin it), never DEFAULT, which moves with a torchvision upgrade. None: the model has no weights."""
    from torchvision.models import get_model_weights

    if name in IMAGENET_WEIGHTS:
        return IMAGENET_WEIGHTS[name]
    try:
        enum = get_model_weights(name)
    except (KeyError, ValueError):
        return None
    members = list(enum)
    chosen = next((m for m in members if m.name == "IMAGENET1K_V1"), None) or next(
        (m for m in members if m.name.startswith("IMAGENET1K")), members[0] if members else None)
    return None if chosen is None else f"{enum.__name__}.{chosen.name}"


def resolve(spec: str) -> ModelSource:
    """The ModelSource of an --arch spec; ConfigError (one line, with the closest names) when it names nothing."""
    form = arch_form(spec)
    if form is None:
        raise ConfigError(f"arch must be {ARCH_FORMS}; got {spec!r}")
    if form == "torchvision":
        return _torchvision_source(spec)
    if form == "timm":
        timm_module()  # asked every time, not remembered with the source: timm may be gone (or mocked away)
        return _timm_source(spec[len("timm:"):])
    return _callable_source(spec)


@functools.lru_cache(maxsize=None)
def _torchvision_source(name: str) -> ModelSource:
    from torchvision import models

    if name not in torchvision_names():
        raise ConfigError(_closest(name, list(torchvision_names()), "torchvision classification model"))
    pinned = pinned_weights_name(name)
    mean, std, interpolation, input_size, min_size = IMAGENET_MEAN, IMAGENET_STD, "bilinear", None, 1
    if pinned is not None:
        weights = models.get_weight(pinned)
        preset = weights.transforms()
        mean, std = tuple(preset.mean), tuple(preset.std)
        interpolation = preset.interpolation.value
        input_size = int(preset.crop_size[0])
        min_size = int(min(weights.meta.get("min_size", (1, 1))))
    patch_size = size_arg = None
    if models.get_model_builder(name).__module__.endswith(".vision_transformer"):
        with torch.device("meta"):  # shapes only: no memory, no init cost
            skeleton = models.get_model(name, weights=None)
        patch_size, size_arg = int(skeleton.patch_size), "image_size"
    return ModelSource(name, "torchvision", name, mean, std, interpolation, input_size, min_size, patch_size, size_arg, pinned)


@functools.lru_cache(maxsize=None)
def _timm_source(name: str) -> ModelSource:
    timm = timm_module()
    if not timm.is_model(name):
        raise ConfigError(_closest(name, timm.list_models(), "timm model"))
    with torch.device("meta"):
        skeleton = timm.create_model(name, pretrained=False)
        try:
            timm.create_model(name, pretrained=False, img_size=224)
            size_arg = "img_size"
        except TypeError:  # a model whose size is not fixed at construction (most CNNs)
            size_arg = None
    cfg = skeleton.pretrained_cfg
    patch = getattr(getattr(skeleton, "patch_embed", None), "patch_size", None)
    patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch) if patch is not None else None
    return ModelSource(f"timm:{name}", "timm", name, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                       cfg.get("interpolation", "bilinear"), int(cfg.get("input_size", (3, 224, 224))[-1]), 1, patch_size,
                       size_arg, cfg.get("hf_hub_id") or cfg.get("url"))


def _callable_source(spec: str) -> ModelSource:
    factory_of(spec)  # that it imports and is callable; what it returns is checked when it is built
    return ModelSource(spec, "callable", spec, IMAGENET_MEAN, IMAGENET_STD)


# --- the user's own factory ----------------------------------------------------------------------

_loaded: dict[str, tuple[str, Any]] = {}


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _import_where(where: str, spec: str):
    """The module a callable spec names, (re)loaded whenever its file changed since this process last loaded it,
    so that a digest and a build always see the file as it is."""
    if where.endswith(".py"):
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise ConfigError(f"arch {spec!r}: {path} is not a file; give path/to/file.py:callable or package.module:callable")
        digest = _file_digest(path)
        cached = _loaded.get(path)
        if cached is not None and cached[0] == digest:
            return cached[1]
        module_name = f"resizelab_user_{digest[:16]}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's code: any error is theirs, said in one line
            raise ConfigError(f"arch {spec!r}: importing {path} failed ({type(e).__name__}: {first_line(e)})") from None
        _loaded[path] = (digest, module)
        return module
    try:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            # `resizelab` is a console script: the folder it is run from is not on sys.path, as it is for `python -m`.
            if e.name != where.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ConfigError(f"arch {spec!r}: no module {e.name!r} to import (is its folder on PYTHONPATH?); give "
                          "package.module:callable or path/to/file.py:callable") from None
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"arch {spec!r}: importing {where} failed ({type(e).__name__}: {first_line(e)})") from None
    source_file = getattr(module, "__file__", None)
    if source_file and os.path.isfile(source_file):
        digest = _file_digest(source_file)
        cached = _loaded.get(where)
        if cached is not None and cached[0] != digest:
            module = importlib.reload(module)
        _loaded[where] = (digest, module)
    return module


def factory_of(spec: str):
    where, _, name = spec.rpartition(":")
    module = _import_where(where, spec)
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"arch {spec!r}: {where} has no {name!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"arch {spec!r}: {name} is a {type(target).__name__}, not a callable that returns an nn.Module")
    return target


def call_factory(spec: str, num_classes: int) -> nn.Module:
    factory = factory_of(spec)
    try:
        model = factory(num_classes=num_classes)
    except Exception as e:  # noqa: BLE001 - the user's code
        raise ConfigError(f"arch {spec!r}: calling it with num_classes={num_classes} raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"arch {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; the factory must "
                          "return the model, called as factory(num_classes=N)")
    return model


def model_digest(spec: str) -> str:
    """A callable's identity: SHA-256 over its source file and the parameter and buffer names and shapes of what it
    builds, so editing the model (or the file it lives in) names a new run and moving the file does not."""
    factory = factory_of(spec)
    h = hashlib.sha256()
    try:
        source_file = inspect.getsourcefile(factory)
    except TypeError:
        source_file = None
    if source_file and os.path.isfile(source_file):
        with open(source_file, "rb") as f:
            h.update(f.read())
    else:
        h.update(repr(getattr(factory, "__qualname__", factory)).encode())
    model = call_factory(spec, DIGEST_CLASSES)
    for key, value in model.state_dict().items():
        h.update(f"{key}\0{tuple(value.shape)}\0{value.dtype}\n".encode())
    return h.hexdigest()


# --- weights ------------------------------------------------------------------------------------

def torchvision_weights_url(name: str) -> str:
    from torchvision.models import get_weight

    from . import models

    if name in models.IMAGENET_WEIGHTS:  # the four built-ins: one address, models' own (what their runs always used)
        return models.imagenet_weights_url(name)
    pinned = pinned_weights_name(name)
    if pinned is None:
        raise ConfigError(f"torchvision has no ImageNet weights for {name}; use --weights none or a state_dict file")
    return get_weight(pinned).url


def _hf_cache_dir() -> str:
    # Read at call time (huggingface_hub reads its constants at import): a test or a user may set it after.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def timm_weights_file(name: str) -> str:
    """timm's pretrained weights for `name`, from the Hugging Face cache timm downloads into; never downloads.
    Verified like torch.hub's: a cached file is a link to a blob named by its SHA-256, which must match."""
    source = _timm_source(name)
    repo = source.pinned_weights
    if not repo or "/" not in repo or repo.startswith("http"):
        raise WeightsError(f"timm:{name} has no Hugging Face weights to look up; use --weights FILE or none")
    from huggingface_hub import try_to_load_from_cache

    cache = _hf_cache_dir()
    for filename in TIMM_FILES:
        path = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(path, str) and os.path.isfile(path):
            blob = os.path.basename(os.path.realpath(path))
            if re.fullmatch(r"[0-9a-f]{64}", blob):
                from .digests import file_sha256

                if file_sha256(path) != blob:
                    raise WeightsError(f"the cached timm weights {path} are not the file their name says (SHA-256 differs "
                                       f"from {blob[:12]}...); delete it and download it again with timm")
            return path
    raise WeightsError(f"timm's weights for {name} ({repo}) are not in the Hugging Face cache {cache}; fetch them where "
                       f"there is a network (timm.create_model({name!r}, pretrained=True)) and copy the cache, or pass "
                       "--weights FILE, or use --weights none")


def imagenet_weights_digest(spec: str) -> str:
    """SHA-256 of the pretrained checkpoint `--weights imagenet` loads for `spec`, verified; never downloads."""
    from .digests import file_sha256
    from .models import checkpoint_digest, imagenet_weights_digest as builtin_digest

    source = resolve(spec)
    if source.form == "callable":
        raise ConfigError(f"arch {spec!r} is your own factory: it has no ImageNet weights here; use --weights FILE or --weights none")
    if source.form == "timm":
        return file_sha256(Path(timm_weights_file(source.name)))
    if source.builtin:
        return builtin_digest(spec)
    return checkpoint_digest(torchvision_weights_url(source.name), f"{spec} ({source.pinned_weights})")


def ensure_imagenet_weights(spec: str) -> None:
    """Fetch torchvision's checkpoint into torch.hub's cache when missing (timm's are looked up only, never fetched)."""
    from .models import download_checkpoint

    source = resolve(spec)
    if source.form == "torchvision":
        url = torchvision_weights_url(source.name)
        path = hub_checkpoint_path(url)
        if not os.path.isfile(path):
            download_checkpoint(url, path)
    elif source.form == "timm":
        timm_weights_file(source.name)
    else:
        raise ConfigError(f"arch {spec!r} is your own factory: it has no ImageNet weights here; use --weights FILE or --weights none")


def _imagenet_state(source: ModelSource) -> tuple[dict, str]:
    if source.form == "timm":
        path = timm_weights_file(source.name)
        from timm.models import load_state_dict

        return load_state_dict(path), f"timm:{source.pinned_weights}"
    imagenet_weights_digest(source.spec)  # verified before it is read
    path = hub_checkpoint_path(torchvision_weights_url(source.name))
    state = load_state_dict_file(path, f"the cached ImageNet checkpoint for {source.name}",
                                 "delete it, and the next run downloads it again (SHA-256 verified)")
    return state, source.pinned_weights


# --- building -----------------------------------------------------------------------------------

def head_module(model: nn.Module, source: ModelSource) -> tuple[str, nn.Module] | None:
    """(qualified name, module) of the classifier's last layer, as its library names it: timm's pretrained_cfg
    'classifier'; torchvision's fc, classifier or heads (the last Linear, or Conv2d for SqueezeNet, inside it);
    a callable's get_classifier() when it has one, else its last Linear."""
    if source.form == "timm":
        name = model.pretrained_cfg.get("classifier") or "fc"
        name = name[0] if isinstance(name, (tuple, list)) else name
        return name, model.get_submodule(name)
    if source.form == "torchvision":
        for attr in ("fc", "classifier", "heads", "head"):
            part = getattr(model, attr, None)
            if isinstance(part, nn.Module):
                layers = [(n, m) for n, m in part.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
                if layers:
                    n, m = layers[-1]
                    return (f"{attr}.{n}" if n else attr), m
        return None
    getter = getattr(model, "get_classifier", None)
    if callable(getter) and isinstance(getter(), nn.Module):
        target = getter()
        name = next((n for n, m in model.named_modules() if m is target), None)
        if name:
            return name, target
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers else None


def _replace_head(model: nn.Module, name: str, old: nn.Module, num_classes: int) -> None:
    if isinstance(old, nn.Conv2d):
        new: nn.Module = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
    else:
        new = nn.Linear(old.in_features, num_classes)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _load_fitting(model: nn.Module, state: dict, tag: str, head: str | None) -> ModelInfo:
    """Load every tensor but the head's; what does not fit (a key missing, one too many, a shape) is one WeightsError."""
    own = model.state_dict()
    prefix = (head + ".") if head else None
    wanted = {k for k in own if not (prefix and k.startswith(prefix))}
    given = {k for k in state if not (prefix and k.startswith(prefix))}
    misfit = state_dict_misfit(own, state, wanted, given)
    if misfit:
        raise WeightsError(f"{tag} does not fit this model: {misfit}; check --arch")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return ModelInfo(weights_tag=tag, loaded_keys=len(wanted), skipped_keys=sorted(k for k in state if k not in wanted))


def construction_kwargs(source: ModelSource, size: int | None) -> dict[str, Any]:
    """What the input size changes in construction, through the library's own argument: torchvision ViT's
    image_size; timm's img_size, with dynamic_img_size where the model takes it (test sizes other than the train
    size then work, the position embedding resampled per forward)."""
    if source.size_arg is None or size is None:
        return {}
    if source.form == "timm":
        kwargs: dict[str, Any] = {"img_size": size}
        with torch.device("meta"):
            try:
                timm_module().create_model(source.name, pretrained=False, img_size=size, dynamic_img_size=True)
                kwargs["dynamic_img_size"] = True
            except TypeError:
                pass
        return kwargs
    return {source.size_arg: size}


def _square(size: int | tuple[int, int] | None) -> int | None:
    if size is None or isinstance(size, int):
        return size
    return int(size[0]) if size[0] == size[1] else int(max(size))


def build(spec: str, num_classes: int, weights: str = "none", stem: str = "imagenet", *,
          size: int | tuple[int, int] | None = None, normalize: str = "seed") -> tuple[nn.Module, ModelInfo]:
    """The model an --arch spec names, with `num_classes` outputs and weights imagenet, none or a file; `size`
    (the train input, px or (H, W)) for models whose construction fixes it; normalize weights puts the weights'
    own mean/std in front (a pre-hook, so state_dict keys stay the library's)."""
    source = resolve(spec)
    if stem == "cifar" and spec not in RESNETS:
        raise ConfigError(f"stem 'cifar' applies to ResNets ({', '.join(RESNETS)}); got arch {spec!r}")
    kwargs = construction_kwargs(source, _square(size))
    if source.builtin:
        model, info = build_model(spec, num_classes, weights, stem)
    elif source.form == "callable":
        if weights == "imagenet":
            raise ConfigError(f"arch {spec!r} is your own factory: it has no ImageNet weights here; use --weights FILE or --weights none")
        model = call_factory(spec, num_classes)
        info = ModelInfo(weights_tag="none")
        if weights != "none":
            state, tag = file_state_dict(weights)
            head = head_module(model, source)
            head_name = head[0] if head is not None and any(
                k.startswith(head[0] + ".") and v.shape != model.state_dict()[k].shape
                for k, v in state.items() if k in model.state_dict()) else None
            info = _load_fitting(model, state, tag, head_name)
    else:
        if source.form == "timm":
            model = timm_module().create_model(source.name, pretrained=False, **kwargs)
        else:
            from torchvision import models

            model = models.get_model(source.name, weights=None, num_classes=1000, **kwargs)
        head = head_module(model, source)
        info = ModelInfo(weights_tag="none")
        if weights != "none":
            state, tag = _imagenet_state(source) if weights == "imagenet" else file_state_dict(weights)
            state = _fit_positions(model, source, state, _square(size))
            info = _load_fitting(model, state, tag, head[0] if head else None)
        if source.form == "timm":
            model.reset_classifier(num_classes)
        elif head is not None:
            _replace_head(model, head[0], head[1], num_classes)
        else:
            raise ConfigError(f"arch {spec!r}: no classifier head (fc, classifier, heads) to replace for {num_classes} classes")
    info.params = sum(p.numel() for p in model.parameters())
    info.source = describe(source, kwargs, normalize)
    if normalize == "weights":
        attach_normalization(model, source.mean, source.std)
    return model, info


def _fit_positions(model: nn.Module, source: ModelSource, state: dict, size: int | None) -> dict:
    """Pretrained position embeddings resampled to the size the model was built for, by the library's own function."""
    if source.size_arg is None or size is None:
        return state
    if source.form == "torchvision":
        from torchvision.models.vision_transformer import interpolate_embeddings

        own = model.state_dict().get("encoder.pos_embedding")
        if own is not None and "encoder.pos_embedding" in state and state["encoder.pos_embedding"].shape != own.shape:
            return interpolate_embeddings(size, source.patch_size, state)
        return state
    filter_fn = getattr(importlib.import_module(type(model).__module__), "checkpoint_filter_fn", None)
    return filter_fn(state, model) if filter_fn is not None else state


def describe(source: ModelSource, kwargs: dict[str, Any], normalize: str) -> dict[str, Any]:
    """What a run records of its model: the library, the construction's size arguments, the pinned weights and the
    normalisation that ran."""
    mean, std = (source.mean, source.std) if normalize == "weights" else (SEED_MEAN, SEED_STD)
    return {"form": source.form, "name": source.name, "construction": kwargs, "pinned_weights": source.pinned_weights,
            "normalize": normalize, "mean": list(mean), "std": list(std), "weights_interpolation": source.interpolation,
            "weights_input_size": source.input_size}


def attach_normalization(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """The pipeline feeds (x - 0.5) / 0.5; this pre-hook turns that into (x - mean) / std per channel."""
    scale = [0.5 / s for s in std]
    shift = [(0.5 - m) / s for m, s in zip(mean, std)]

    def hook(module, args):
        x = args[0]
        a = torch.tensor(scale, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        b = torch.tensor(shift, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x * a + b, *args[1:])

    model.register_forward_pre_hook(hook)


def normalization(spec: str, normalize: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if normalize == "seed":
        return SEED_MEAN, SEED_STD
    source = resolve(spec)
    return source.mean, source.std


# --- sizes --------------------------------------------------------------------------------------

def _takes(spec: str, stem: str, build_size: int, sizes: list[int]) -> dict[int, str | None]:
    """For each of `sizes`: None when a model built for `build_size` takes that input, else the first line of why not
    (one build, one forward of one image per size)."""
    try:
        model, _ = build(spec, DIGEST_CLASSES, "none", stem, size=build_size)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a constructor that refuses this size (an assertion in the library)
        return {size: f"built for {build_size} px: {first_line(e, 160)}" for size in sizes}
    model.eval()
    out: dict[int, str | None] = {}
    for size in sizes:
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, size, size))
            out[size] = None
        except Exception as e:  # noqa: BLE001 - whatever the model's own code raises at this size
            out[size] = first_line(e, 160)
    return out


def sizes_that_work(spec: str, stem: str, fixed: bool) -> list[int]:
    """The PROBE_SIZES up to 256 px a model takes (each built for its size when the size is fixed at construction)."""
    source = resolve(spec)
    candidates = [s for s in PROBE_SIZES if s <= 256 and not (source.patch_size and s % source.patch_size)]
    if fixed:
        return [s for s in candidates if _takes(spec, stem, s, [s])[s] is None]
    works = _takes(spec, stem, candidates[0], candidates)
    return [s for s in candidates if works[s] is None]


_size_memo: dict[tuple, None] = {}


def check_sizes(spec: str, stem: str, train: int | None, tests: list[tuple[str, int]]) -> None:
    """ConfigError, in one line naming the sizes that work, when the model cannot take the train size or a test
    size (`tests`: (role, px)); checked with one forward of one image each, before anything trains."""
    source = resolve(spec)
    if source.builtin or train is None:
        return
    key = (spec, _loaded.get(spec.rpartition(":")[0], ("",))[0], stem, train, tuple(tests))
    if key in _size_memo:
        return
    checks = [("train size", train)] + [t for t in tests if t[1] != train]
    for role, px in checks:
        if source.patch_size and px % source.patch_size:
            raise ConfigError(f"arch {spec} cuts its input into {source.patch_size} px patches: {role} {px} px is not a multiple "
                              f"of {source.patch_size}; sizes that work: {source.patch_size}, {2 * source.patch_size}, "
                              f"{3 * source.patch_size}, ... px")
    fed = _takes(spec, stem, train, [px for _, px in checks])
    for role, px in checks:
        why = fed[px]
        if why is not None:
            fixed = source.size_arg is not None and not construction_kwargs(source, train).get("dynamic_img_size")
            if fixed and role != "train size" and _takes(spec, stem, px, [px])[px] is None:
                raise ConfigError(f"arch {spec} is built for one input size (its {source.size_arg}, the train size {train} px) "
                                  f"and cannot take {role} {px} px; test at {train} px, or train at {px} px")
            works = sizes_that_work(spec, stem, fixed)
            listed = ", ".join(map(str, works)) if works else "none of " + ", ".join(str(s) for s in PROBE_SIZES if s <= 256)
            raise ConfigError(f"arch {spec} cannot take {role} {px} px ({why}); sizes that work: {listed} px")
    _size_memo[key] = None


# --- a stored run's model ----------------------------------------------------------------------

def check_named_code(theirs: str, given: str, default: str, run: str) -> None:
    """A stored run whose model is the user's Python code is rebuilt only when the user names that code again: a
    results database never makes resizelab import a module by itself."""
    if arch_form(theirs) != "callable":
        return
    if given == default:
        raise ConfigError(f"run {run}'s model is Python code ({theirs}), which a stored run never imports by itself; "
                          f"give --arch {theirs} to build it")
    if given != theirs:
        raise ConfigError(f"run {run} was trained with --arch {theirs}; give that, not {given}")


def stored_build_size(stored) -> int | None:
    """The input size a stored run's model was built for (what a ViT's image_size was): its train input."""
    shape = stored.result.get("input_shape")
    return int(max(shape)) if shape else stored.config.get("size")


def check_model_digest(config: dict, run: str) -> None:
    """A callable's code must still build what the run trained, or its weights would be loaded into another model."""
    digest = config.get("model_digest")
    if digest is not None and model_digest(config["arch"]) != digest:
        raise ConfigError(f"the code of {config['arch']} changed since run {run} was trained (its model digest differs); "
                          "restore it, or train the run again")



# --- listing ------------------------------------------------------------------------------------

def parameter_count(spec: str, num_classes: int = 1000) -> int:
    """Parameters of the model as its library builds it (on the meta device: no memory, no init)."""
    source = resolve(spec)
    if source.form == "torchvision" and source.pinned_weights is not None and num_classes == 1000:
        from torchvision.models import get_weight

        return int(get_weight(source.pinned_weights).meta["num_params"])  # what torchvision records beside its weights
    try:
        with torch.device("meta"):
            model = _plain(source, num_classes)
    except Exception:  # noqa: BLE001 - some builders compute on tensors while building (RegNet): built for real then
        model = _plain(source, num_classes)
    return sum(p.numel() for p in model.parameters())


def _plain(source: ModelSource, num_classes: int) -> nn.Module:
    if source.form == "timm":
        return timm_module().create_model(source.name, pretrained=False, num_classes=num_classes)
    if source.form == "torchvision":
        from torchvision import models

        return models.get_model(source.name, weights=None, num_classes=num_classes)
    return call_factory(source.spec, num_classes)


@dataclass
class Listed:
    spec: str
    params: int | None
    weights: str | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def available(pattern: str | None = None, *, with_timm: bool = True) -> list[Listed]:
    """What --arch can name here: torchvision's classification models, and timm's when it is installed; `pattern`
    a shell-style filter (fnmatch) on the spec."""
    import fnmatch

    out = []
    for name in torchvision_names():
        if pattern is None or fnmatch.fnmatch(name, pattern):
            out.append(Listed(name, parameter_count(name), pinned_weights_name(name)))
    if with_timm and importlib.util.find_spec("timm") is not None:
        import timm

        for name in timm.list_models():
            spec = f"timm:{name}"
            if pattern is None or fnmatch.fnmatch(spec, pattern) or fnmatch.fnmatch(name, pattern):
                try:
                    params = parameter_count(spec)
                except Exception:  # noqa: BLE001 - a registry entry that does not build on meta: listed without a count
                    params = None
                try:
                    cfg = timm.models.get_pretrained_cfg(name)
                    weights = (cfg.hf_hub_id or cfg.url) if cfg is not None else None
                except Exception:  # noqa: BLE001
                    weights = None
                out.append(Listed(spec, params, weights))
    return out
