"""`resizelab probe`: what a resize does to a model's internal representation, without training.

Any --arch: the stages are found by the model's library (a ResNet's stem/layer1..4/pooled; timm's feature_info;
torchvision's `features` or `trunk_output` children, a ViT's encoder layers) or named with --probe-layers; the
residual ratios need blocks whose residual branch can be identified (torchvision's and timm's BasicBlock /
Bottleneck); the band shares need a first layer that is a convolution (a patch embedding is one). What a model
does not have is reported as not measured, with the reason. The ResNet measures in detail:

The test images are fed at their native size and, resized to S by each interpolation, at S; the
same model (random init by seed, ImageNet weights, a state_dict file, or with `run` the weights a
stored run saved with --save-weights, loaded whole into its own arch and stem) sees both. Per method:

- **CKA per stage.** Linear CKA (Kornblith et al. 2019) between the native and the resized
  activations of the stem (after the max-pool), layer1..layer4 and the pooled features. Maps of
  different spatial size are compared on the coarser of the two grids: the finer map is box-averaged
  onto it (adaptive average pooling, exact for whole ratios), then each image's map is one vector
  (channels x positions). A cell of the coarser grid covers the same patch of the image in both, so
  this compares features at the same place without inventing values (upsampling the coarse map would
  interpolate, which is what is being studied) and keeps the layout that global pooling would discard.
  1 = the same representation up to rotation and scale; near 0 = unrelated.
- **||residual|| / ||skip|| per block.** For every torchvision BasicBlock / Bottleneck, the norm of
  its residual branch (the output of its last BN, before the addition) over the norm of its skip path
  (the block's input, or its downsample's output), per image, mean over images; native and resized.
  Hooks sit on the real modules, so this is what the model computes.
- **conv1 response by frequency band.** The first convolution's output maps (before BN), mean-removed
  and Hann-windowed as in `resizelab spectrum`, split by radial frequency in cycles per *map* pixel
  into low (< 1/3 of the map's Nyquist), mid (1/3 to 2/3) and high (above 2/3, corners included):
  the share of the response energy in each, and the energy itself (mean variance per map). An
  upsampled input leaves the layer little to respond to at the top of its own grid.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.choices import BACKENDS
from ..core.config import check_threads_field, evaluation_threads_option
from ..core.config import (MAX_SIZE_PX, MIN_SIZE_PX, RunConfig, boolean, choice, option, option_default, preflight, run_option,
                           text, text_list, whole)
from ..core.config import check_whole as _int_in
from ..training.resize import effective_antialias
from ..core.errors import ConfigError
from ..core.log import plural
from ..core.results import finite
from ..store.database import DEFAULT_DB

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "pooled")
DEFAULT_SIZE = 16
BANDS = ("low", "mid", "high")
BATCH = 100


@dataclass(frozen=True)
class ProbeConfig:
    """What `resizelab probe` compares. Validated on construction, with the same checks as a run."""

    data: str = run_option("data", "cifar10, cifar100, synthetic or imagefolder:PATH; its test split is used")
    data_dir: str | None = run_option("data_dir")
    arch: str = run_option("arch", "any --arch of `resizelab run`; with --run, only to name again a run's "
                           "package.module:callable (a stored run never imports Python code by itself)")
    weights: str = run_option("weights", "imagenet, none (random init by --seed) or a path to a state_dict file")
    stem: str = run_option("stem", "imagenet or cifar")
    # None: with `run`, the run's train size when it resized (else DEFAULT_SIZE); else DEFAULT_SIZE.
    size: int | None = option(None, whole(MIN_SIZE_PX, MAX_SIZE_PX, optional=True), "the resized input size S in px, "
                              f"compared with the native images (default {DEFAULT_SIZE}; with --run, the run's train size if it "
                              "resized)", metavar="PX")
    interpolations: tuple[str, ...] = option(("nearest", "bilinear", "bicubic"), text_list(), "comma-separated methods",
                                             flag="interpolation")
    antialias: bool = option(True, boolean(), "true or false; the effective value is shown")
    # None: the run's own backend with --run, else run's default; so that a backend given is never overridden.
    backend: str | None = option(None, choice(BACKENDS, optional=True), "pil, tensor or opencv; with --run, the run's "
                                 f"own backend unless one is given (default {option_default('backend')})")
    limit: int = option(500, whole(1), "class-balanced test images", flag="limit_test", aliases=("--limit",))
    seed: int = option(0, whole(0, 2**31 - 1), "model init with --weights none, and the image subset")
    out: str = option("reports/probe", text("DIR"), "folder for probe.json and probe.csv", flag="report_dir",
                        aliases=("--out",))
    run: str | None = option(None, text("HASH", optional=True), "a stored run's config hash (or a unique prefix): probe "
                             "its saved weights (--save-weights), with its arch, stem and data (default: none, the model --weights gives)")
    db: str = option(DEFAULT_DB, text("PATH"), "the results store that holds --run")
    probe_layers: tuple[str, ...] = option((), text_list("MODULE[,MODULE...]"), "the modules whose outputs are compared "
                                           "(qualified names, as model.named_modules() gives them); default: the model's "
                                           "stages as its library names them")
    normalize: str = run_option("normalize")
    threads: int | None = evaluation_threads_option()

    def __post_init__(self) -> None:
        check_threads_field(self)
        if isinstance(self.probe_layers, (list, str)):
            object.__setattr__(self, "probe_layers", tuple([self.probe_layers] if isinstance(self.probe_layers, str) else self.probe_layers))
        value = self.interpolations
        object.__setattr__(self, "interpolations", tuple(dict.fromkeys((value,) if isinstance(value, str) else value)))
        if not self.interpolations:
            raise ConfigError("interpolations must list at least one value")
        if self.run is not None:
            self._take_from_run()  # a size left out is chosen once the data's native size is known (run_probe)
        elif self.size is None:
            object.__setattr__(self, "size", DEFAULT_SIZE)
        if self.backend is None:
            object.__setattr__(self, "backend", option_default("backend"))
        for method in self.interpolations:
            # One run config per method: data, weights, size, method x backend checked as `resizelab run` does.
            preflight(RunConfig(data=self.data, data_dir=self.data_dir, arch=self.arch, weights=self.weights, stem=self.stem,
                                size=self.size, interpolation=method, antialias=self.antialias, backend=self.backend, seed=self.seed))
        from ..training.sources import resolve

        resolve(self.arch)  # a name that is no model: one line with the closest names, before any data is read
        _int_in("limit", self.limit, 1)
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"out must be a folder path; got {self.out!r}")

    def _take_from_run(self) -> None:
        """Weights, arch, stem and data from the stored run; a different value given for one of them is an error."""
        from ..store.read import find_run

        from ..training.sources import check_named_code

        stored = find_run(self.db, self.run)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.weights != defaults["weights"]:
            raise ConfigError(f"give --weights or --run, not both: run {stored.config_hash} brings its own trained weights")
        check_named_code(stored.config.get("arch", ""), self.arch, defaults["arch"], stored.config_hash)
        object.__setattr__(self, "normalize", stored.config.get("normalize", "seed"))
        object.__setattr__(self, "_stored", stored)
        for name in ("data", "data_dir", "arch", "stem"):
            given, theirs = getattr(self, name), stored.config.get(name)
            if given != defaults[name] and given != theirs:
                raise ConfigError(f"{name} comes from run {stored.config_hash} ({theirs!r}); leave it out or probe another run")
            object.__setattr__(self, name, theirs)
        if self.backend is None:  # the methods are compared as the run resized, unless asked otherwise
            object.__setattr__(self, "backend", stored.config.get("backend"))
        object.__setattr__(self, "run", stored.config_hash)
        object.__setattr__(self, "weights", stored.weights_path)


@dataclass
class Measures:
    """What one input (native, or one resize method) does inside the model."""

    input: str  # "native" or the interpolation
    antialias: bool | None  # effective; None for native
    size_px: int
    cka: dict[str, float]  # vs native, per stage (absent for native)
    residual_ratio: dict[str, float]  # per block
    conv1_bands: dict[str, float]  # low/mid/high shares and "energy"


@dataclass
class ProbeResult:
    config: ProbeConfig
    weights_tag: str
    native_size_px: tuple[int, int]
    images: int
    grids: dict[str, tuple[int, int]]  # where each stage was compared
    native: Measures
    methods: list[Measures]
    seconds: float
    files: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON: a measure that is not a number (NaN: the CKA of a stage whose activations do not vary
        over the images, a ratio over a zero skip path) is written as null, since JSON has no NaN."""
        return finite({"config": dataclasses.asdict(self.config), "weights_tag": self.weights_tag,
                       "native_size_px": list(self.native_size_px), "images": self.images,
                       "grids": {k: list(v) for k, v in self.grids.items()}, "native": dataclasses.asdict(self.native),
                       "methods": [dataclasses.asdict(m) for m in self.methods], "seconds": self.seconds, "files": self.files})


# --- measures --------------------------------------------------------------------------------

def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between n x p and n x q feature matrices (rows: the same n inputs), in float64.

    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred features, computed through the n x n
    Gram matrices when features outnumber inputs (the same value, cheaper)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.reshape(y.shape[0], -1).to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    if max(x.shape[1], y.shape[1]) > x.shape[0]:
        k, l_ = x @ x.T, y @ y.T
        num, den = (k * l_).sum(), torch.sqrt((k * k).sum() * (l_ * l_).sum())
    else:
        num = (y.T @ x).square().sum()
        den = torch.sqrt((x.T @ x).square().sum() * (y.T @ y).square().sum())
    return float(num / den) if den > 0 else math.nan


def _block_types() -> tuple[type, ...]:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    types: tuple[type, ...] = (BasicBlock, Bottleneck)
    import sys

    timm_resnet = sys.modules.get("timm.models.resnet")  # only when a timm model was built: never imported for this
    if timm_resnet is not None:
        types += (timm_resnet.BasicBlock, timm_resnet.Bottleneck)
    return types


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The blocks whose residual branch and skip path are known by name: torchvision's and timm's BasicBlock and
    Bottleneck (last BN bn2 or bn3, skip `downsample`)."""
    types = _block_types()
    return {name: m for name, m in model.named_modules() if isinstance(m, types) and hasattr(m, "bn2")}


def stage_modules(model: nn.Module, arch: str, layers: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """The modules whose outputs the probe compares, as the model's library names its stages; `layers` overrides."""
    names = dict(model.named_modules())
    if layers:
        for layer in layers:
            if layer not in names or not layer:
                import difflib

                close = difflib.get_close_matches(layer, [n for n in names if n], n=3)
                raise ConfigError(f"probe layer {layer!r} is not a module of {arch}" + (f"; closest: {', '.join(close)}" if close else ""))
        return {layer: names[layer] for layer in layers}
    if all(hasattr(model, a) for a in ("maxpool", "layer1", "layer4", "avgpool")) and not arch.startswith("timm:"):
        return {"stem": model.maxpool, "layer1": model.layer1, "layer2": model.layer2, "layer3": model.layer3,
                "layer4": model.layer4, "pooled": model.avgpool}
    feature_info = getattr(model, "feature_info", None)
    if feature_info is not None and hasattr(feature_info, "module_name"):  # timm
        found = [n for n in feature_info.module_name() if n in names]
        if found:
            return {n: names[n] for n in found}
    if isinstance(feature_info, list) and feature_info and isinstance(feature_info[0], dict):
        found = [f["module"] for f in feature_info if f.get("module") in names]
        if found:
            return {n: names[n] for n in found}
    for container in ("features", "trunk_output", "encoder.layers", "blocks", "stages"):
        part = names.get(container)
        if isinstance(part, nn.Sequential) and len(part) > 1:
            return {f"{container}.{n}": m for n, m in part.named_children()}
    children = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
    return dict(children[:-1] or children)  # the last one is the head, which is not a representation


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first convolution the input meets (a ResNet's conv1, a ViT's patch embedding), in definition order."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def band_shares(maps: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Energy of N x C x h x w maps in the low/mid/high radial bands of their own grid (summed over
    maps), and the summed energy; see the module docstring."""
    from .spectrum import power_spectrum

    power = power_spectrum(maps.to(torch.float64))
    fy = torch.fft.fftfreq(maps.shape[-2], dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(maps.shape[-1], dtype=torch.float64).view(1, -1)
    radius = torch.sqrt(fy ** 2 + fx ** 2) / 0.5  # in units of the map's Nyquist
    per_bin = power.reshape(-1, *power.shape[-2:]).sum(0)
    edges = [(0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, math.inf)]
    sums = torch.stack([per_bin[(radius >= lo) & (radius < hi)].sum() for lo, hi in edges])
    return sums, float(per_bin.sum())


class ResidualRatios:
    """Hooks on every BasicBlock / Bottleneck of a model: per image, the norm of the residual branch
    (its last BN's output, taken before the block adds the skip to it in place) and of the skip
    path (the downsample's output, or the block's input)."""

    def __init__(self, model: nn.Module):
        self.branch: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.skip: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.handles = []
        for name, block in residual_blocks(model).items():
            last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
            self.handles.append(last_bn.register_forward_hook(self._norm(self.branch[name])))
            if block.downsample is not None:
                self.handles.append(block.downsample.register_forward_hook(self._norm(self.skip[name])))
            else:
                self.handles.append(block.register_forward_pre_hook(self._input_norm(self.skip[name])))

    @staticmethod
    def _norm(store: list) -> Callable:
        def hook(module, inputs, output):
            store.append(output.detach().to(torch.float64).flatten(1).norm(dim=1))
        return hook

    @staticmethod
    def _input_norm(store: list) -> Callable:
        def hook(module, inputs):
            store.append(inputs[0].detach().to(torch.float64).flatten(1).norm(dim=1))
        return hook

    def ratios(self) -> dict[str, float]:
        """||residual|| / ||skip|| per block, mean over the images seen."""
        return {name: float((torch.cat(self.branch[name]) / torch.cat(self.skip[name])).mean()) for name in self.branch}

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class Recorder:
    """Forward hooks on a model's own modules. Each hook reduces what it sees at once (stage maps
    pooled to their comparison grid, norms per image, band energies), so memory stays small and a
    block's later in-place addition cannot change what was recorded."""

    def __init__(self, model: nn.Module, grids: dict[str, tuple[int, int]] | None = None,
                 stages: dict[str, nn.Module] | None = None):
        self.grids = grids
        self.stages: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.residual = ResidualRatios(model)
        self.bands = torch.zeros(3, dtype=torch.float64)
        self.energy = 0.0
        self.maps = 0
        self.handles = []
        # torchvision's Swin keeps its maps channels-last (N, H, W, C) between stages.
        self.channels_last_maps = hasattr(model, "permute") and type(model).__name__ == "SwinTransformer"
        modules = stages if stages is not None else stage_modules(model, "")
        for name, module in modules.items():
            self.handles.append(module.register_forward_hook(self._stage(name)))
        conv = first_conv(model)
        self.has_conv = conv is not None
        if conv is not None:
            self.handles.append(conv.register_forward_hook(self._conv1))

    def _stage(self, name: str) -> Callable:
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if output.dim() == 4 and self.channels_last_maps:
                output = output.permute(0, 3, 1, 2)
            self.shapes[name] = tuple(output.shape[1:])
            if self.grids is not None:
                grid = self.grids[name]
                if output.dim() == 4:
                    output = F.adaptive_avg_pool2d(output, grid)
                elif output.dim() == 3 and grid == (1, 1):
                    output = output.mean(1)  # tokens: as many as the size gives, compared by their mean
                self.stages[name].append(output.detach().to(torch.float64).flatten(1))
        return hook

    def _conv1(self, module, inputs, output) -> None:
        sums, total = band_shares(output.detach())
        self.bands += sums
        self.energy += total
        self.maps += output.shape[0] * output.shape[1]

    def close(self) -> None:
        self.residual.close()
        for handle in self.handles:
            handle.remove()

    def features(self, stage: str) -> torch.Tensor:
        return torch.cat(self.stages[stage])

    def ratios(self) -> dict[str, float]:
        return self.residual.ratios()

    def conv1_bands(self) -> dict[str, float]:
        if not self.has_conv:
            return {}
        shares = self.bands / self.bands.sum()
        return {**{band: float(s) for band, s in zip(BANDS, shares)}, "energy": self.energy / self.maps}


@torch.inference_mode()
def record(model: nn.Module, images: torch.Tensor, grids: dict[str, tuple[int, int]] | None,
           stages: dict[str, nn.Module] | None = None) -> Recorder:
    """Run uint8 N x 3 x H x W images through the model (eval mode, fp32, Normalize(0.5, 0.5)) under a Recorder."""
    from ..training.pipeline import normalize, to_nhwc

    recorder = Recorder(model, grids, stages)
    try:
        for start in range(0, images.shape[0], BATCH):
            model(normalize(to_nhwc(images[start:start + BATCH]), channels_last=False))
    finally:
        recorder.close()
    return recorder


def comparison_grids(model: nn.Module, native: torch.Tensor, resized: torch.Tensor,
                     stages: dict[str, nn.Module] | None = None) -> dict[str, tuple[int, int]]:
    """Per stage, the coarser of the native and resized map grids (from one image each); for tokens (N x L x D), the
    whole sequence when both inputs give as many, else (1, 1): their mean; other outputs as they are, (0, 0)."""
    a, b = record(model, native[:1], None, stages).shapes, record(model, resized[:1], None, stages).shapes
    grids = {}
    for s in a:
        if len(a[s]) == 3:
            grids[s] = (min(a[s][1], b[s][1]), min(a[s][2], b[s][2]))
        elif len(a[s]) == 2:
            grids[s] = (a[s][0], 1) if a[s] == b[s] else (1, 1)
        else:
            grids[s] = (0, 0)
    return grids


# --- the probe -------------------------------------------------------------------------------

def _with_run_size(cfg: ProbeConfig, native: tuple[int, int]) -> ProbeConfig:
    """The run's train size when the run resized its input (the probe then compares what it trained on with
    native images); for a run at the native size that comparison is the identity, so DEFAULT_SIZE instead."""
    import copy

    from ..store.read import find_run
    from ..training.resize import output_size

    trained = find_run(cfg.db, cfg.run).config.get("size")
    size = trained if trained is not None and output_size(*native, trained) != native else DEFAULT_SIZE
    resolved = copy.copy(cfg)  # not dataclasses.replace: the config is already resolved against the store
    object.__setattr__(resolved, "size", size)
    return resolved


def load_run_weights(model: nn.Module, path: str, run: str) -> str:
    """Load a run's saved state_dict into the model it was trained as, every tensor (head and stem too);
    returns the weights tag: run:<hash> and the file's name and SHA-256 prefix."""
    import hashlib
    import os

    from ..core.errors import WeightsError
    from ..training.models import load_state_dict_file

    state = load_state_dict_file(path, f"run {run}'s weights file",
                                 "train the run again with --save-weights --force to save them anew")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise WeightsError(f"run {run}'s weights file {path} does not fit its own config ({str(e).splitlines()[0]}); "
                           "train the run again with --save-weights --force") from None
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return f"run:{run} ({os.path.basename(path)}@{digest})"


def run_probe(cfg: ProbeConfig, progress: Callable[[str], None] | None = None) -> ProbeResult:
    """probe_now on cfg.threads torch threads (auto: the cores other processes leave free)."""
    from ..training.threads import evaluation_threads

    with evaluation_threads(cfg.threads):
        return probe_now(cfg, progress)


def probe_now(cfg: ProbeConfig, progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Feed the native and the resized test images through one model and compare; write cfg.out."""
    from ..core.paths import check_out_dir

    check_out_dir(Path(cfg.out), "--report-dir", create=False, what="output folder")  # before measuring, not after
    from ..training.data import balanced_subset, load_dataset
    from ..training.resize import resize
    from ..training.sources import build

    say = progress or (lambda message: None)
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.data, cfg.data_dir)
    images = dataset.test_images[balanced_subset(dataset.test_labels, cfg.limit, cfg.seed)]
    if cfg.size is None:
        cfg = _with_run_size(cfg, (int(images.shape[-2]), int(images.shape[-1])))
    torch.manual_seed(cfg.seed)  # the random init of --weights none
    stored = getattr(cfg, "_stored", None)
    if cfg.run is not None:
        from ..training.sources import check_model_digest, stored_build_size

        check_model_digest(stored.config, cfg.run)
        model, info = build(cfg.arch, dataset.num_classes, "none", cfg.stem, size=stored_build_size(stored), normalize=cfg.normalize)
        info.weights_tag = load_run_weights(model, cfg.weights, cfg.run)
    else:
        model, info = build(cfg.arch, dataset.num_classes, cfg.weights, cfg.stem, size=min(images.shape[-2:]), normalize=cfg.normalize)
    model.eval()
    resized = {m: resize(images, cfg.size, m, cfg.antialias, cfg.backend) for m in cfg.interpolations}
    stages = stage_modules(model, cfg.arch, cfg.probe_layers)
    try:
        grids = comparison_grids(model, images, next(iter(resized.values())), stages)
    # A model built for one input size (a torchvision ViT's image_size) fed another: torch._assert raises AssertionError.
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"{cfg.arch} cannot take both the native {tuple(images.shape[-2:])} px and the {cfg.size} px input "
                          f"({str(e).splitlines()[0][:160]}); probe a model that takes both sizes") from None
    say(f"native {tuple(images.shape[-2:])} px: {plural(len(images), 'image')} through {cfg.arch}")
    native_rec = record(model, images, grids, stages)
    native = Measures("native", None, int(min(images.shape[-2:])), {}, native_rec.ratios(), native_rec.conv1_bands())
    methods = []
    for method, x in resized.items():
        say(f"{method}: {cfg.size} px")
        rec = record(model, x, grids, stages)
        cka = {s: linear_cka(native_rec.features(s), rec.features(s)) for s in stages}
        methods.append(Measures(method, effective_antialias(method, cfg.backend, cfg.antialias), cfg.size, cka,
                                rec.ratios(), rec.conv1_bands()))
    result = ProbeResult(cfg, info.weights_tag, (int(images.shape[-2]), int(images.shape[-1])), len(images), grids,
                         native, methods, time.perf_counter() - t0)
    write_outputs(result, Path(cfg.out))
    return result


# --- output ----------------------------------------------------------------------------------

def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in body]


def format_probe(result: ProbeResult) -> str:
    cfg = result.config
    # The antialias that ran, which can differ from the one asked for (PIL's bilinear and bicubic always have it).
    names = [m.input if m.input == "nearest" else f"{m.input}/{'aa' if m.antialias else 'no-aa'}" for m in result.methods]
    h, w = result.native_size_px
    lines = [f"{cfg.arch} ({cfg.stem} stem), weights {result.weights_tag}, {result.images} test images: native {h}x{w} px "
             f"vs {cfg.size} px ({cfg.backend})", "",
             "linear CKA, native vs resized (maps box-averaged to the coarser grid)"]
    stages = list(result.grids)
    lines += _table(["stage", "grid"] + names,
                    [[s, "x".join(map(str, result.grids[s]))] + [f"{m.cka[s]:.3f}" for m in result.methods] for s in stages])
    lines += ["", "||residual branch|| / ||skip path||, mean over images"]
    if not result.native.residual_ratio:
        lines.append(f"not measured: no residual blocks identified in {cfg.arch} (torchvision's or timm's BasicBlock/Bottleneck)")
        lines.append("")
    else:
        lines += _table(["block", "native"] + names,
                        [[b, f"{result.native.residual_ratio[b]:.3f}"] + [f"{m.residual_ratio[b]:.3f}" for m in result.methods]
                         for b in result.native.residual_ratio])
        lines.append("")
    if not result.native.conv1_bands:
        lines.append(f"first-layer response: not measured: {cfg.arch} has no convolution for its input to meet")
        return "\n".join(lines)
    lines += ["first convolution's response (conv1 of a ResNet, a ViT's patch embedding): share of energy by frequency band "
              "of its own grid (low < 1/3 Nyquist < mid < 2/3 < high)"]
    rows = [[f"native {h} px"] + [f"{result.native.conv1_bands[k]:.3f}" for k in BANDS] + [f"{result.native.conv1_bands['energy']:.4g}"]]
    rows += [[f"{n} {cfg.size} px"] + [f"{m.conv1_bands[k]:.3f}" for k in BANDS] + [f"{m.conv1_bands['energy']:.4g}"]
             for n, m in zip(names, result.methods)]
    lines += _table(["input", *BANDS, "energy"], rows)
    return "\n".join(lines)


def write_outputs(result: ProbeResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "probe.csv", "w", newline="") as f:
        # Tidy: one row per (input, measure, item).
        writer = csv.writer(f)
        writer.writerow(("input", "antialias", "size_px", "measure", "item", "value"))
        for m in [result.native, *result.methods]:
            for measure in ("cka", "residual_ratio", "conv1_bands"):
                for item, value in getattr(m, measure).items():
                    writer.writerow((m.input, "" if m.antialias is None else m.antialias, m.size_px, measure, item, value))
    result.files = [str(out / "probe.json"), str(out / "probe.csv")]
    with open(out / "probe.json", "w") as f:
        json.dump(result.to_json_dict(), f, indent=1, allow_nan=False)
