"""`resizelab serve`: one trained model evaluated under many serving recipes, without training again.

The model is a stored run's saved weights (`run`, trained with --save-weights), loaded whole into the arch,
stem and class count it was trained as, or a state_dict file (`weights`, with `arch` and `stem`). The test
split is resized from its stored originals by each recipe (training.recipes) to each size, once, and cached;
the evaluation is the run's own (`training.engine.classify`, with the run's precision and memory format), so
the recipe a run was trained and tested with gives back the run's own test accuracy, to the image.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.choices import SERVE_RECIPES, STEMS, arch_form, available_recipes, unavailable_recipes
from ..core.config import check_threads_field, evaluation_threads_option
from ..core.config import (MAX_SIZE_PX, MIN_SIZE_PX, RunConfig, check_arch, check_choice, check_whole, choice, option, preflight,
                           recipes_list, run_option, sizes_list, text, whole)
from ..core.errors import ConfigError
from ..core.log import plural
from ..core.results import ServeEval
from ..store.database import DEFAULT_DB


def skipped_line(skipped: dict[str, tuple[str, str, str]]) -> str:
    """One line: which recipes were left out because their library is missing, and the command that installs it."""
    by_extra: dict[tuple[str, str], list[str]] = {}
    for name, (_, extra, library) in skipped.items():
        by_extra.setdefault((extra, library), []).append(name)
    return "; ".join(f"skipped {', '.join(names)}: {library} is not installed (pip install 'resizelab[{extra}]')"
                     for (extra, library), names in by_extra.items())


def parse_recipes(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'available' (every recipe whose library is installed here), 'all', or recipe names (a comma-separated string
    or a sequence), checked, once each, in the order given."""
    items = [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value)
    if items == ["all"]:
        return SERVE_RECIPES
    if items == ["available"]:
        return available_recipes()
    if not items or not all(isinstance(t, str) and t for t in items):
        raise ConfigError(f"serve must be 'available', 'all' or recipe names separated by commas ({', '.join(SERVE_RECIPES)}); got {value!r}")
    for name in items:
        check_choice("serve recipe", name, SERVE_RECIPES)
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class ServeConfig:
    """What `resizelab serve` evaluates. Validated on construction; with `run`, resolved against the store.
    Each field is declared with `option(...)`, so `resizelab serve`'s flags are generated from it."""

    serve: tuple[str, ...] = option(("available",), recipes_list(), "serving recipes, comma-separated: "
                                    f"{', '.join(SERVE_RECIPES)}; all: every one (the cv2 ones need pip install "
                                    "'resizelab[opencv]'); available: every one whose library is installed here",
                                    metavar="RECIPE,...|available|all")
    run: str | None = option(None, text("HASH", optional=True), "a stored run's config hash (or a unique prefix) trained with "
                             "--save-weights: serve its weights, with its arch, stem, data, test subset and test size (default: none; "
                             "give --run or --weights)")
    db: str = option(DEFAULT_DB, text("PATH"), "the results store that holds --run")
    weights: str | None = option(None, text("FILE", optional=True), "or a state_dict file (torch.save(model.state_dict()), or "
                                 "a checkpoint holding one under 'state_dict' or 'model'), with --arch, --stem, --data and --test-sizes (default: none; give --run or --weights)")
    arch: str = option("resnet18", text("ARCH", check_arch), "the architecture of --weights (any --arch of `resizelab run`); "
                       "with --run, only to name again a run's package.module:callable, which a stored run never imports by itself")
    stem: str = option("imagenet", choice(STEMS), "the stem of --weights")
    data: str | None = run_option("data", "test data, any resolution (resized from its native size, shorter edge) "
                                  "(default: the run's, or cifar10)", default=None)
    data_dir: str | None = run_option("data_dir")
    # Flag --test-sizes, as `resizelab run` names its list of test sizes; several make several rows.
    test_sizes: tuple[int, ...] = option((), sizes_list(), "sizes in px, shorter edge (default: the run's test size)",
                                         aliases=("--test-size",))
    train_recipe: str | None = option(None, choice(SERVE_RECIPES, optional=True), "with --weights: the recipe it was trained "
                                      "with, the baseline of the changes (default: none, no changes given)", metavar="RECIPE")
    limit_test: int | None = option(None, whole(1, optional=True), "a class-balanced subset of N test images "
                                    "(default: the run's)")
    device: str = run_option("device", "where to evaluate")
    eval_batch_size: int = run_option("eval_batch_size")
    threads: int | None = evaluation_threads_option()

    def __post_init__(self) -> None:
        check_threads_field(self)
        asked = self.serve
        object.__setattr__(self, "serve", parse_recipes(self.serve))
        # Checked before anything loads: a recipe named (or `all`) whose library is missing stops here, in one line.
        missing = unavailable_recipes(self.serve)
        if missing:
            from ..core.errors import MissingDependency

            raise MissingDependency(skipped_line(missing).replace("skipped ", "serving with ", 1)
                                    + "; or leave --serve out to serve with every recipe installed here")
        if asked in ("available", ("available",), ["available"]):
            object.__setattr__(self, "_skipped", unavailable_recipes())
        object.__setattr__(self, "test_sizes", tuple(dict.fromkeys(self.test_sizes)))
        for size in self.test_sizes:
            check_whole("test size", size, MIN_SIZE_PX, MAX_SIZE_PX)
        if (self.run is None) == (self.weights is None):
            raise ConfigError("serve needs a model: --run HASH (a stored run with saved weights) or --weights FILE --arch ARCH, not both")
        if self.run is not None:
            self._take_from_run()
        else:
            check_arch("arch", self.arch)
            from ..training.sources import resolve

            resolve(self.arch)  # a name that is no model: one line with the closest names, before any data is read
            check_choice("stem", self.stem, STEMS)
            if self.weights not in ("imagenet", "none") and not os.path.isfile(self.weights):
                # Before asking for sizes: a missing file is the first thing to fix, whatever else is missing.
                raise ConfigError(f"weights {self.weights!r} is not a file; give --weights the state_dict file a run saved "
                                  "(--save-weights), or serve a stored run with --run HASH")
            if not self.test_sizes:
                raise ConfigError("with --weights, give --test-sizes PX[,PX...] (the size the model was trained at, and any other)")
            if self.train_recipe is not None:
                check_choice("train recipe", self.train_recipe, SERVE_RECIPES)
            if self.data is None:
                object.__setattr__(self, "data", "cifar10")
        if self.limit_test is not None:
            check_whole("limit test", self.limit_test, 1)
        check_whole("eval batch size", self.eval_batch_size, 1, 65_536)
        # The data, device and a weights file are checked as `resizelab run` checks them.
        preflight(RunConfig(data=self.data, data_dir=self.data_dir, arch=self.arch, stem=self.stem, device=self.device,
                            weights=self.weights if self.run is None else "none"))

    def _take_from_run(self) -> None:
        """Weights, arch, stem, data, test subset and sizes from the stored run; a clashing value is an error."""
        from ..core.choices import effective_antialias
        from ..store.read import find_run
        from ..training.recipes import training_recipe

        from ..training.sources import check_named_code

        stored = find_run(self.db, self.run)
        theirs = stored.config
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        check_named_code(theirs.get("arch", ""), self.arch, defaults["arch"], stored.config_hash)
        for name in ("stem", "data", "data_dir", "train_recipe") + (() if arch_form(theirs.get("arch", "")) == "callable" else ("arch",)):
            if getattr(self, name) != defaults[name]:
                raise ConfigError(f"{name} comes from run {stored.config_hash}; leave --{name.replace('_', '-')} out")
        for name in ("arch", "stem", "data", "data_dir"):
            object.__setattr__(self, name, theirs.get(name))
        if self.limit_test is None:
            object.__setattr__(self, "limit_test", theirs.get("limit_test"))
        if not self.test_sizes and theirs.get("test_size") is not None:
            object.__setattr__(self, "test_sizes", (theirs["test_size"],))
        test_method = theirs.get("test_interpolation") or theirs.get("interpolation")
        # The baseline is the run's own test resize, the backend's very call (`training_recipe`): a recipe that
        # only resembles it (v1 transforms.Resize for --backend tensor) would move every change it is compared with.
        backend = theirs.get("backend") or "tensor"
        object.__setattr__(self, "train_recipe", training_recipe(test_method, effective_antialias(test_method, backend,
                                                                                                  bool(theirs.get("antialias"))), backend))
        object.__setattr__(self, "run", stored.config_hash)
        object.__setattr__(self, "weights", stored.weights_path)
        object.__setattr__(self, "_stored", stored)


@dataclass
class ServeResult:
    config: ServeConfig
    weights_tag: str
    arch: str
    native_size_px: tuple[int, int]
    images: int
    evals: list[ServeEval]
    run_test_accuracy: float | None  # the stored run's own test accuracy at its test size, for comparison
    seconds: float
    precision: str
    notes: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        from ..core.results import finite

        config = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}
        return finite({"config": config, "weights_tag": self.weights_tag, "arch": self.arch,
                       "native_size_px": list(self.native_size_px), "images": self.images,
                       "evals": [dataclasses.asdict(e) for e in self.evals], "run_test_accuracy": self.run_test_accuracy,
                       "seconds": self.seconds, "precision": self.precision, "notes": self.notes})


def serve(cfg: ServeConfig) -> ServeResult:
    """Evaluate the configured model under every recipe of cfg.serve at every test size, on cfg.threads torch
    threads (auto: the cores other processes leave free); reads, never stores."""
    from ..training.threads import evaluation_threads

    with evaluation_threads(cfg.threads):
        return evaluate_serving(cfg)


def evaluate_serving(cfg: ServeConfig) -> ServeResult:
    """Evaluate the configured model under every recipe of cfg.serve at every test size; reads, never stores."""
    from ..core.errors import RunFailed
    from ..training.data import load_dataset, subset
    from ..training.engine import serve_model
    from ..training.models import load_trained_weights
    from ..training.sources import build, check_model_digest, stored_build_size
    from ..training.runtime import ready_model, resolve_device

    from ..core.log import logger

    t0 = time.perf_counter()
    stored = getattr(cfg, "_stored", None)
    skipped = getattr(cfg, "_skipped", {})
    if skipped:
        logger.info("%s", skipped_line(skipped))
    logger.info("serve: loading %s%s", cfg.data, f" (the data run {cfg.run} was trained on)" if stored is not None else "")
    dataset = load_dataset(cfg.data, cfg.data_dir)
    if stored is not None:
        digest = stored.config.get("data_digest")
        if digest is not None and dataset.key != digest:
            raise RunFailed(f"the data of run {cfg.run} changed on disk since it was trained (digest {dataset.key}, trained on "
                            f"{digest}); serve it on the data it was trained on")
    dataset = subset(dataset, None, cfg.limit_test, seed=0)  # the same test images as the run's own evaluation
    device = resolve_device(cfg.device)
    if stored is not None:
        check_model_digest(stored.config, cfg.run)
        model, _ = build(cfg.arch, dataset.num_classes, "none", cfg.stem, size=stored_build_size(stored),
                         normalize=stored.config.get("normalize", "seed"))
    else:
        model, _ = build(cfg.arch, dataset.num_classes, "none", cfg.stem, size=cfg.test_sizes[0])
    learned = learned_of(stored)
    if learned is not None:  # the stored weights hold the resizer in front of the backbone: rebuilt as trained
        from ..training.learned import wrap

        model = wrap(model, learned, int(stored.config["size"]), bool(stored.config.get("antialias")))
    if stored is not None:
        tag = load_trained_weights(model, cfg.weights, f"run {cfg.run}'s weights file",
                                   "train the run again with --save-weights --force to save them anew")
        # The file is named after the run already; the tag names the run once and the file's digest.
        tag = f"run {cfg.run}, weights sha256:{tag.rsplit('@', 1)[-1]}" if "@" in tag else f"run {cfg.run}"
        execution = stored.result.get("execution", {})
        # As the run evaluated itself: its precision and memory format change float rounding, so a prediction on the fence.
        precision = stored.result.get("effective_precision", "fp32")
        channels_last = bool(execution.get("channels_last", True))
        single_window = bool(execution.get("single_window_matmul", True))
    else:
        tag = load_trained_weights(model, cfg.weights, "weights file",
                                   f"give the --arch and --stem it was trained as, and --data with its {dataset.num_classes} classes")
        precision, channels_last, single_window = "fp32", True, True
    model = ready_model(model.to(device), single_window, channels_last)
    sizes = cfg.test_sizes or (int(min(dataset.test_images.shape[-2:])),)
    logger.info("serve: %s x %s on %d test images (each recipe resized once, then cached)", plural(len(cfg.serve), "recipe"),
                plural(len(sizes), "size"), len(dataset.test_labels))
    notes = [skipped_line(skipped)] if skipped else []
    if learned is not None:
        evals = serve_learned(model, dataset, learned, cfg, sizes, device, precision, channels_last)
        notes.append(f"run {cfg.run} learned its resizer ({learned}): served with it (the model as trained, fed the stored "
                     "source images) and without it (the backbone alone behind each plain recipe, as exporting only the "
                     "backbone would serve it)")
    else:
        evals = serve_model(model, dataset, cfg.serve, sizes, cfg.train_recipe, device, precision, channels_last,
                            cfg.eval_batch_size)
        if cfg.train_recipe is not None:
            from ..training.recipes import baseline_note

            notes.append(baseline_note(cfg.train_recipe))
    run_acc = stored.result.get("test_accuracy") if stored is not None else None
    return ServeResult(cfg, tag, cfg.arch, tuple(int(v) for v in dataset.test_images.shape[-2:]), len(dataset.test_labels), evals,
                       run_acc, time.perf_counter() - t0, precision, notes)


def learned_of(stored) -> str | None:
    """The learned resizer a stored run trained in front of its model (training.learned), or None."""
    from ..core.choices import LEARNED_INTERPOLATIONS

    method = stored.config.get("interpolation") if stored is not None else None
    return method if method in LEARNED_INTERPOLATIONS else None


def serve_learned(model, dataset, method: str, cfg: ServeConfig, sizes: tuple[int, ...], device, precision: str,
                  channels_last: bool) -> list[ServeEval]:
    """A learned run served with its resizer (the baseline: the stored source images through the whole model,
    which gives back the run's accuracy) and without it (the backbone behind each recipe at each size)."""
    from ..training.engine import classify, serve_model
    from ..training.pipeline import to_nhwc
    from ..training.recipes import library_version

    t0 = time.perf_counter()
    labels = dataset.test_labels.to(device)
    acc, per_class, _ = classify(model, to_nhwc(dataset.test_images), labels, dataset.classes, device, precision, channels_last,
                                 cfg.eval_batch_size)
    size = model.resizer.size
    with_it = ServeEval(f"{method} (learned, in the model)", size, acc, per_class, len(labels), library_version("tensor-bilinear"),
                        time.perf_counter() - t0, baseline=True)
    return [with_it, *serve_model(model.backbone, dataset, cfg.serve, sizes, None, device, precision, channels_last,
                                  cfg.eval_batch_size)]


def baseline_of(evals: list[ServeEval], size: int) -> ServeEval | None:
    return next((e for e in evals if e.size_px == size and e.baseline), None)


def resolution_note(result: ServeResult) -> str:
    """In words: what one model on these test images can resolve. Each change is a count of images; two accuracies
    near a on n images differ by chance within about 1.96 * sqrt(2 a (1 - a) / n) points (unpaired, so an upper
    bound on the paired noise), and n' = 2 a (1 - a) (1.96 / d)^2 images would resolve a change of d."""
    import math

    n = max(result.images, 1)
    accuracy = next((e.accuracy for e in result.evals if e.baseline), None)
    a = (accuracy if accuracy is not None else (result.evals[0].accuracy if result.evals else 50.0)) / 100
    a = min(max(a, 0.5 / n), 1 - 0.5 / n)
    noise = 196 * math.sqrt(2 * a * (1 - a) / n)
    changes = [abs(e.accuracy - b.accuracy) for e in result.evals if not e.baseline
               for b in [baseline_of(result.evals, e.size_px)] if b is not None]
    within = sum(1 for c in changes if c < noise)
    text = (f"one model on {n} test images: one image is {100 / n:.2f} points, and changes within about +-{noise:.1f} points "
            "can be chance")
    if changes and within:
        smallest = min((c for c in changes if c > 0), default=None)
        text += f"; {within} of the {len(changes)} changes here are within it"
        if smallest:
            needed = math.ceil(2 * a * (1 - a) * (1.96 * 100 / smallest) ** 2)
            text += f" (about {needed:,} test images would resolve a change of {smallest:.2f} points; more seeds show the spread)"
    return text


def format_serve(result: ServeResult) -> str:
    """The table: one row per recipe and size, accuracy and its change against the training recipe at that size."""
    lines = [f"{result.arch} ({result.weights_tag}) on {result.images} test images of {result.config.data} "
             f"({result.native_size_px[0]}x{result.native_size_px[1]} px), {result.precision}",
             "| recipe | size px | accuracy % | change vs train recipe (points) | library |", "|---|---|---|---|---|"]
    for e in result.evals:
        base = baseline_of(result.evals, e.size_px)
        change = "baseline" if e.baseline else ("" if base is None else f"{e.accuracy - base.accuracy:+.2f}")
        lines.append(f"| {e.recipe} | {e.size_px} | {e.accuracy:.2f} | {change} | {e.library} |")
    if result.run_test_accuracy is not None:
        lines.append(f"the run's own test accuracy: {result.run_test_accuracy:.2f} %")
    lines.append(resolution_note(result))
    lines.extend(result.notes)
    return "\n".join(lines)


# --- the train x serve matrix of a study (report section, `study --preset serve`) ----------------

def mismatch_claim():
    """The claim each off-diagonal cell is decided on, with the Findings' threshold for "the method matters"
    (claim 7, 1 accuracy point) and its rule (`findings.decide_any_difference`), not a copy of either."""
    from .findings import CLAIMS_BY_KEY, Claim

    threshold = CLAIMS_BY_KEY["method"].threshold
    return Claim(12, "mismatch", "Serving with another resize than the one a model was trained with changes its accuracy",
                 f"accuracy under the serving recipe minus under the training recipe, same model, same size, per seed; "
                 f"a mismatch that matters if the 95% interval lies beyond +-{threshold:g} point, not one if it lies within",
                 "accuracy", "points", threshold)


VERDICT_TEXT = {"supported": "a mismatch that matters", "contradicted": "does not matter (within +-{t:g} point)",
                "not resolved at this n": "not resolved at this n", "not measured": "not measured"}


def seeds_to_resolve(estimate, threshold: float, level: float = 0.95, most: int = 1000) -> int | None:
    """About how many seeds would put the 95% t interval of a change of this size and spread clear of the +-threshold
    band (either beyond it or within it); None when no number up to `most` would (the change sits on the threshold,
    or there is no spread to extrapolate from)."""
    import math

    from scipy import stats

    e = estimate
    if e.n < 2 or e.low != e.low or e.high == e.low:
        return None
    sd = (e.high - e.low) / 2 / stats.t.ppf(0.5 + level / 2, e.n - 1) * math.sqrt(e.n)
    gap = abs(abs(e.value) - threshold)
    for n in range(e.n + 1, most + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n) < gap:
            return n
    return None


def unresolved_text(estimate, threshold: float) -> str:
    """The verdict "not resolved at this n", said with what would resolve it."""
    needed = seeds_to_resolve(estimate, threshold)
    if needed is None:
        return (f"not resolved at this n: a change of {abs(estimate.value):.1f} points this close to the +-{threshold:g} point "
                "threshold, at this spread, needs more than 1,000 seeds" if estimate.n >= 2 else
                "not resolved at this n: one seed has no interval; run 3 or more")
    return f"not resolved at this n: about {needed} seeds would resolve a change of {abs(estimate.value):.1f} points at this spread"


@dataclass
class MatrixCell:
    train_recipe: str
    serve_recipe: str
    size_px: int
    change: Any  # findings.Estimate of (serve - train) accuracy in points: mean over seeds, 95% t interval, n
    verdict: str  # the findings verdict (supported: a mismatch that matters)

    @property
    def text(self) -> str:
        e = self.change
        cost = -e.value
        word = "costs" if cost >= 0 else "gains"
        low, high = (-e.high, -e.low) if cost >= 0 else (e.low, e.high)
        interval = f"[{low:.1f}, {high:.1f}]" if e.low == e.low else "(no interval)"
        threshold = mismatch_claim().threshold
        verdict = (unresolved_text(e, threshold) if self.verdict == "not resolved at this n"
                   else VERDICT_TEXT[self.verdict].format(t=threshold))
        return (f"serving with {self.serve_recipe} a model trained with {self.train_recipe} at {self.size_px} px {word} "
                f"{abs(cost):.1f} points {interval}, {e.n} seed{'s' if e.n != 1 else ''}: {verdict}")


def serving_matrix(groups) -> list[MatrixCell]:
    """Every (train recipe, serve recipe, size) of runs stored with --serve whose training resize is a recipe: the
    accuracy change against serving with the training recipe, per seed (each seed's model against itself), its
    mean and 95% interval, and the Findings' verdict. Runs of the same training recipe and size are pooled, so a
    study should hold everything but the resize fixed (the serve preset does)."""
    from .findings import LEVEL, decide_any_difference, one_sample

    changes: dict[tuple[int, str, str], dict[int, float]] = {}
    images: dict[tuple[int, str, str], int] = {}
    for g in groups:
        for run in g.runs:
            serving = run["result"].get("serving") or []
            base = {e["size_px"]: e for e in serving if e.get("baseline")}
            for e in serving:
                ref = base.get(e["size_px"])
                if ref is None or e.get("baseline") or e["accuracy"] is None or ref["accuracy"] is None:
                    continue
                key = (e["size_px"], ref["recipe"], e["recipe"])
                changes.setdefault(key, {})[run["config"].get("seed", 0)] = e["accuracy"] - ref["accuracy"]
                if e.get("images"):
                    images[key] = min(images.get(key, e["images"]), e["images"])
    claim = mismatch_claim()
    cells = []
    for key, by_seed in sorted(changes.items()):
        size, train, served = key
        estimate = one_sample(by_seed, LEVEL, f"{served} on a {train} model at {size} px")
        if key in images and estimate.low == estimate.low:
            # Seeds that agree to the image (40 test images, every seed +0.0) make a t interval of zero width, which
            # would call the change settled; the test split cannot tell a change below one image, so no interval is
            # narrower than one image either side.
            one_image = 100.0 / images[key]
            estimate = dataclasses.replace(estimate, low=min(estimate.low, estimate.value - one_image),
                                           high=max(estimate.high, estimate.value + one_image))
        cells.append(MatrixCell(train, served, size, estimate, decide_any_difference(claim, [estimate]).verdict))
    return cells
