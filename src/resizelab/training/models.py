"""Model construction: torchvision architectures, ImageNet or local weights, CIFAR stem, new head."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core.choices import ARCHS, RESNETS, STEMS  # noqa: F401 - re-exported
from ..core.errors import ConfigError, WeightsError, first_line
from ..core.log import logger, plural

# Pinned rather than DEFAULT so that a torchvision upgrade cannot silently change the study.
IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
}
HEAD_PREFIXES = ("fc.", "classifier.")


@dataclass
class ModelInfo:
    weights_tag: str
    loaded_keys: int = 0
    skipped_keys: list[str] = field(default_factory=list)
    params: int = 0
    source: dict = field(default_factory=dict)  # what training.sources records: library, construction, normalisation


def hub_checkpoint_path(url: str) -> str:
    """Where torch.hub caches a checkpoint downloaded from `url` ($TORCH_HOME/hub/checkpoints)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def imagenet_weights_url(arch: str) -> str:
    """The address torchvision downloads `arch`'s pinned ImageNet checkpoint from."""
    from torchvision.models import get_weight

    return get_weight(IMAGENET_WEIGHTS[arch]).url


def imagenet_weights_status(arch: str) -> str:
    path = hub_checkpoint_path(imagenet_weights_url(arch))
    return f"present at {path}" if os.path.isfile(path) else f"missing (expected {path})"


def download_checkpoint(url: str, path: str) -> None:
    """Fetch `url` into torch.hub's cache, verified against the SHA-256 prefix in its file name.

    torch.hub writes to a temporary file and moves it into place only once the hash matched, so a
    failed or tampered download never leaves a file that a later run would trust.
    """
    import http.client

    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    hash_prefix = match.group(1) if match else None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, hash_prefix, progress=sys.stderr.isatty())
        logger.info("downloaded %s to %s (SHA-256 verified)", url, path)
    # What a failed download raises: no route or HTTP error (URLError is an OSError), a cut
    # connection, or torch.hub's RuntimeError for a hash that does not match.
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        raise WeightsError(
            f"ImageNet weights not found at {path} and the download from {url} failed ({first_line(e)}); "
            f"fetch that file on another machine and put it there (or set TORCH_HOME to a folder whose hub/checkpoints "
            f"holds it), pass --weights PATH to a local state_dict, or use --weights none"
        ) from None


def load_state_dict_file(path: str, what: str, advice: str = "give a file written by torch.save(model.state_dict(), "
                         "path), or --weights none or imagenet") -> dict:
    """torch.load with weights_only=True: a checkpoint is data, and a pickle that would run code is refused."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise WeightsError(f"{what} {path} cannot be read ({e.strerror or e}); {advice}") from None
    # torch.save writes a zip archive (or, long ago, a pickle, which starts with its protocol byte).
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise WeightsError(f"{what} {path} is not a file torch.save wrote (it starts with {head!r}); {advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # Parsing bytes from outside: whatever the unpickler or the zip reader raises (UnpicklingError for a
    # refused global, RuntimeError for a bad archive, EOFError when cut short, KeyError for an unknown
    # opcode) means the same to the user, who gets one line.
    except Exception as e:  # noqa: BLE001
        message = str(e)
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
        if refused:
            reason = f"it would import {refused.group(1)}, which torch.load(weights_only=True) refuses"
        elif "Weights only load failed" in message:  # torch's advice to drop weights_only is not ours to give
            reason = "torch.load(weights_only=True) cannot read it"
        else:
            reason = f"{type(e).__name__}: {first_line(e)}"
        raise WeightsError(f"{what} {path} is not a readable state_dict ({reason}); {advice}") from None

def imagenet_weights_digest(arch: str) -> str:
    """The SHA-256 of `arch`'s cached ImageNet checkpoint, checked against the prefix in its file name. Never
    downloads (`ensure_imagenet_weights` does): a checkpoint not here yet is a WeightsError, as missing data is."""
    return checkpoint_digest(imagenet_weights_url(arch), arch)


def checkpoint_digest(url: str, label: str) -> str:
    """The SHA-256 of the torch.hub checkpoint downloaded from `url` (the weights of `label`), checked against the
    prefix in its file name; never downloads."""
    from .digests import file_sha256

    path = hub_checkpoint_path(url)
    if not os.path.isfile(path):
        raise WeightsError(f"the ImageNet weights for {label} are not at {path} yet (their digest names the run); "
                           f"`resizelab run` fetches them from {url}, or put that file there, or use --weights none")
    digest = file_sha256(Path(path))
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    # torch.hub checks this prefix on download only; a file put or changed there later would be loaded and
    # tagged as torchvision's weights. Checked on every use, as a download is.
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(f"the cached ImageNet checkpoint {path} is not torchvision's file: its SHA-256 starts {digest[:len(match.group(1))]}, "
                           f"its name says {match.group(1)}; delete it, and the next run downloads it again (SHA-256 verified)")
    return digest


def _imagenet_state_dict(arch: str) -> tuple[dict, str]:
    url = imagenet_weights_url(arch)
    path = hub_checkpoint_path(url)
    if not os.path.isfile(path):
        download_checkpoint(url, path)
    imagenet_weights_digest(arch)
    state = load_state_dict_file(path, f"the cached ImageNet checkpoint for {arch}",
                                 "delete it, and the next run downloads it again (SHA-256 verified)")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"the cached ImageNet checkpoint {path} is not a state_dict (a dict of tensors); delete it to download again")
    return state, IMAGENET_WEIGHTS[arch]


def ensure_imagenet_weights(arch: str) -> None:
    """Download the ImageNet checkpoint into torch.hub's cache if it is not there (WeightsError offline)."""
    url = imagenet_weights_url(arch)
    path = hub_checkpoint_path(url)
    if not os.path.isfile(path):
        download_checkpoint(url, path)


def file_state_dict(path: str) -> tuple[dict, str]:
    obj = load_state_dict_file(path, "weights file")
    # Accept the usual wrappers: {"state_dict": ...}, {"model": ...}, and DataParallel's "module." prefix.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict (a dict of tensors); save one with torch.save(model.state_dict(), path)")
    obj = {k.removeprefix("module."): v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        # Said now: trained from, it would only show as a diverged loss an epoch later, blamed on the learning rate.
        raise WeightsError(f"weights file {path} holds NaN or infinite values in {plural(len(bad), 'tensor')} (e.g. {bad[0]}); "
                           "it is not a usable state_dict: save it again from a model that trained without diverging")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return obj, f"file:{os.path.basename(path)}@{digest}"


def load_trained_weights(model: nn.Module, path: str, what: str, advice: str) -> str:
    """Load a whole trained state_dict (head and stem too) into `model`, strictly: a file of another architecture,
    stem or class count is one WeightsError naming what does not fit. Returns the weights tag (file name, SHA-256)."""
    state, tag = file_state_dict(path)
    own = model.state_dict()
    misfit = state_dict_misfit(own, state, set(own), set(state))
    if misfit:
        raise WeightsError(f"{what} {path} does not fit this model: {misfit}; {advice}")
    model.load_state_dict(state, strict=True)
    return tag


def state_dict_misfit(own: dict, state: dict, wanted: set[str], given: set[str]) -> str | None:
    """What keeps `state` from loading into a model whose state_dict is `own`, comparing the keys the model wants
    with those given: keys missing, keys unexpected, tensors of the wrong shape (a few of each named); None if it fits."""
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(wanted & given) if state[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if bad:
        parts.append(f"{plural(len(bad), 'tensor')} of the wrong shape (e.g. {bad[0]})")
    return "; ".join(parts) or None


def _load_backbone(model: nn.Module, state: dict, source: str, skip: tuple[str, ...]) -> ModelInfo:
    """Load every backbone tensor from `state`; the head (replaced anyway) and `skip` are left out."""
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith(HEAD_PREFIXES) and not k.startswith(skip)}
    given = {k for k in state if not k.startswith(HEAD_PREFIXES) and not k.startswith(skip)}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} backbone keys missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise WeightsError(f"{source} does not fit this architecture: {'; '.join(parts)}; check --arch and --stem")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(wanted) if state[k].shape != own[k].shape]
    if bad:
        raise WeightsError(f"{source} has {plural(len(bad), 'tensor')} of the wrong shape (e.g. {bad[0]}); check --arch and --stem")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    skipped = sorted(k for k in state if k not in wanted)
    return ModelInfo(weights_tag=source, loaded_keys=len(wanted), skipped_keys=skipped)


def build_model(arch: str, num_classes: int, weights: str = "none", stem: str = "imagenet") -> tuple[nn.Module, ModelInfo]:
    """A torchvision model with `num_classes` outputs; weights `imagenet`, `none` or a state_dict path."""
    from torchvision import models

    if arch not in IMAGENET_WEIGHTS:
        raise ConfigError(f"arch must be one of {', '.join(IMAGENET_WEIGHTS)}; got {arch!r}")
    if stem == "cifar" and arch not in RESNETS:
        raise ConfigError(f"stem 'cifar' applies to ResNets ({', '.join(RESNETS)}); got arch {arch!r}")
    # Built with the ImageNet head so that ImageNet checkpoints load key for key; replaced below.
    model = models.get_model(arch, weights=None, num_classes=1000)
    skip: tuple[str, ...] = ()
    if stem == "cifar":
        # The usual CIFAR ResNet stem: 3x3 stride-1 conv, no max-pool, so a 32 px input keeps
        # 32x32 feature maps in layer1. Its conv cannot take the 7x7 ImageNet kernel: re-initialised.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        skip = ("conv1.",)
    info = ModelInfo(weights_tag="none")
    if weights != "none":
        if weights == "imagenet":
            state, tag = _imagenet_state_dict(arch)
        else:
            state, tag = file_state_dict(weights)
            # A CIFAR-stem checkpoint (one saved by --save-weights) has the 3x3 stem conv: load it too,
            # or its model would come back with a random first layer.
            if skip and "conv1.weight" in state and state["conv1.weight"].shape == model.conv1.weight.shape:
                skip = ()
        info = _load_backbone(model, state, tag, skip)
    if arch in RESNETS:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    info.params = sum(p.numel() for p in model.parameters())
    return model, info


def count_macs(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu") -> int:
    """Multiply-accumulates of one forward pass per image (torch's FLOP counter counts 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_shape), device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
