"""Findings: each sentence the classic study uses to explain its accuracies, as a claim with one deciding
measurement, the measured effect, its confidence interval, n, and a verdict computed from the data.

The study (ResNet-18 on CIFAR-10 at 32, 64 and 16 px, bilinear resize with antialias, as PIL does it)
explains its results without measuring them. Here each sentence is decided by one measurement, taken
from the results store (accuracy, per seed), from the test images (`resizelab spectrum`'s measures, per
image) or from the trained models (`resizelab probe` on each seed's saved weights). Sentences about
what *the study's* resize does are decided on the study's method (bilinear, antialias on, the runs'
backend); sentences comparing methods use every method the runs hold.

Verdict. Every claim has a threshold tau in the unit of its effect, oriented so that a larger effect is
what the claim says, and one or more cases (e.g. each resized size). Each case gets a confidence
interval; with k cases the intervals are simultaneous 95% intervals (Bonferroni: each at 1 - 0.05/k).
  supported:              every case's interval lies above tau;
  contradicted:           some case's interval lies below tau;
  not resolved at this n: anything else (an interval that contains tau, or fewer than 2 seeds);
  not measured:           the runs (or data, or saved weights) that decide it are not there.
Claim 7 asks whether *any* method differs, so it reads its cases the other way (see below).

Claims and their deciding measurements ("native": the data's own size, N = 32 px for CIFAR):
 1. "Resizing alters the spatial frequency content." Spectral change D of the study's resize at each
    resized size: the sum over frequency rings (width 1/N cycles per native px) of |resized - native|
    ring energy over the native energy, from the Hann-windowed power spectra of luma that `resizelab
    spectrum` uses, mean over test images; a ring a grid cannot hold has no energy. 0 = untouched.
    tau = 0.05.
 2. "Downscaling blends small details." 1 - kept_hi of the study's resize at each downsampled size:
    kept_hi is the resized / native energy in the upper half of the band the small size can hold
    (spectrum's kept_hi). Averaging neighbours attenuates there; point sampling keeps or folds energy
    there instead. tau = 0.05.
 3. "Upscaling introduces artifacts." added at each upsampled size: the share of the upsampled images'
    energy above the native Nyquist (spectrum's added), which a native image cannot hold. tau = 0.01.
 4. "Upscaling blurs." 1 - kept_hi at each upsampled size: the energy lost in the upper half of the
    native band. tau = 0.05.
 5. "The distortion cascades through the network." Linear CKA between native and resized inputs at
    the stem minus at the pooled features (probe), on each seed's native-size model (its weights saved
    by --save-weights), study's resize at each resized size: positive when the representations drift
    further apart with depth. CI over seeds. tau = 0.
 6. "Resizing compromises the residual connections." Mean over residual blocks of
    |ln(r_resized / r_native)|, r = ||residual branch|| / ||skip path|| (probe), same models and inputs
    as 5: how far the resize moves each block's balance of branch and skip. tau = ln 1.1 (a 10% shift).
 7. "The interpolation method significantly influences the performance change." Test-accuracy
    differences between every two methods (interpolation x effective antialias) at the same resized
    size, paired by seed. "Significantly" is read as by more than tau = 1 accuracy point: supported
    when some pair's interval lies beyond +-1 point; contradicted when every pair's interval lies
    within +-1 point; otherwise not resolved.
 8. "Bicubic is sharper than bilinear." kept_hi(bicubic) - kept_hi(bilinear), antialias on, at each
    resized size, paired over the same test images. tau = 0.
 9. "Nearest is the least desirable method." Accuracy of every other method minus nearest's at each
    resized size, paired by seed. tau = 0.
10. "Upsampling (64 px) degrades accuracy." Accuracy at the native size minus at each upsampled size,
    study's method, paired by seed. tau = 0.
11. "Downsampling (16 px) degrades it more." Accuracy at each upsampled size minus at each downsampled
    size, study's method, paired by seed. tau = 0.

Intervals. Accuracy differences: Student t over seeds, paired by seed where two configurations share at
least two seeds (else Welch's t over the unpaired seeds); probe effects: one-sample t over seeds (scipy.stats).
Signal effects have no seed: percentile bootstrap over the test images (scipy.stats.bootstrap, 4999
resamples, fixed generator), one resample of images for every quantity of a case, so native and
resized (or bicubic and bilinear) stay paired. Their point estimates are the ratios of means that
`resizelab spectrum` prints.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..core.choices import arch_form
from ..core.log import plural
from ..core.results import finite
from ..core.stats import t_interval

if TYPE_CHECKING:
    from ..store.runs import Group

SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_MEASURED = "supported", "contradicted", "not resolved at this n", "not measured"
STUDY_METHOD = ("bilinear", True)  # the classic study's resize: PIL bilinear, which always antialiases
LEVEL = 0.95  # joint confidence of a claim's intervals
BOOTSTRAP_RESAMPLES = 4999
SIGNAL_IMAGES = 500  # class-balanced test images for the signal measures
PROBE_IMAGES = 300  # ... and for the probes of each seed's model
# Options that may differ between the runs a findings table compares; anything else must be held fixed.
COMPARED = {"size", "interpolation", "antialias", "test_size", "test_interpolation"}


@dataclass(frozen=True)
class Claim:
    number: int
    key: str
    text: str  # the study's sentence
    measure: str  # the deciding measurement, short (the module docstring has the full definition)
    source: str  # accuracy | signal | probe
    unit: str
    threshold: float


CLAIMS = (
    Claim(1, "frequency", "Resizing alters the spatial frequency content",
          "spectral change D of the study's resize (share of native spectral energy moved); supported if D > 0.05 at every resized size",
          "signal", "fraction", 0.05),
    Claim(2, "blend", "Downscaling blends small details",
          "1 - kept_hi of the study's downsample (fine detail attenuated); supported if > 0.05 at every downsampled size",
          "signal", "fraction", 0.05),
    Claim(3, "artifacts", "Upscaling introduces artifacts",
          "added: share of the upsampled energy above the native Nyquist; supported if > 0.01 at every upsampled size",
          "signal", "fraction", 0.01),
    Claim(4, "blur", "Upscaling blurs",
          "1 - kept_hi of the study's upsample (native fine detail lost); supported if > 0.05 at every upsampled size",
          "signal", "fraction", 0.05),
    Claim(5, "cascade", "The distortion cascades through the network",
          "CKA(native, resized) at the stem minus at the pooled features, native-size model per seed; supported if > 0",
          "probe", "CKA", 0.0),
    Claim(6, "residual", "Resizing compromises the residual connections",
          "mean over blocks of |ln(residual/skip norm ratio, resized vs native)|, per seed; supported if > ln 1.1",
          "probe", "|ln ratio|", math.log(1.1)),
    Claim(7, "method", "The interpolation method significantly influences the performance change",
          "accuracy difference of every two methods at a resized size, paired by seed; supported if one lies beyond "
          "+-1 point, contradicted if all lie within +-1 point",
          "accuracy", "points", 1.0),
    Claim(8, "bicubic", "Bicubic is sharper than bilinear",
          "kept_hi(bicubic) - kept_hi(bilinear), antialiased, same images; supported if > 0 at every resized size",
          "signal", "fraction", 0.0),
    Claim(9, "nearest", "Nearest is the least desirable method",
          "accuracy of every other method minus nearest at each resized size, paired by seed; supported if all > 0",
          "accuracy", "points", 0.0),
    Claim(10, "upsample", "Upsampling (64 px) degrades accuracy",
          "accuracy at the native size minus at each upsampled size (study's method), paired by seed; supported if > 0",
          "accuracy", "points", 0.0),
    Claim(11, "downsample", "Downsampling (16 px) degrades accuracy more than upsampling",
          "accuracy at each upsampled size minus at each downsampled size (study's method), paired by seed; supported if > 0",
          "accuracy", "points", 0.0),
)
CLAIMS_BY_KEY = {c.key: c for c in CLAIMS}


@dataclass
class Estimate:
    """One case of a claim: the measured effect and its confidence interval."""

    case: str  # what was compared, e.g. "16 px" or "bicubic/aa - nearest at 16 px"
    value: float
    low: float
    high: float
    n: int
    how: str  # e.g. "paired t over seeds"


@dataclass
class Finding:
    claim: Claim
    verdict: str
    deciding: Estimate | None  # the case the verdict rests on
    cases: list[Estimate]
    level: float  # confidence of each case's interval (simultaneous LEVEL over the cases)
    note: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return finite(out)


@dataclass
class FindingsResult:
    findings: list[Finding]
    native_px: int | None
    setting: str  # what the claims about the study's resize were measured on
    signal_images: int
    files: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {"native_px": self.native_px, "setting": self.setting, "signal_images": self.signal_images,
                "findings": [f.to_json_dict() for f in self.findings], "files": self.files}


# --- intervals -------------------------------------------------------------------------------

def case_level(k: int) -> float:
    """Each of k intervals at this level makes them simultaneous LEVEL intervals (Bonferroni)."""
    return 1 - (1 - LEVEL) / max(1, k)


def difference(a: dict[int, float], b: dict[int, float], level: float, case: str) -> Estimate:
    """mean(a) - mean(b) over seeds: paired by seed when they share at least 2 seeds, else Welch's t."""
    from scipy import stats

    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        mean, low, high = t_interval([a[s] - b[s] for s in shared], level)
        return Estimate(case, mean, low, high, len(shared), "paired t over seeds")
    x, y = list(a.values()), list(b.values())
    mean = float(np.mean(x) - np.mean(y)) if x and y else math.nan
    if len(x) < 2 or len(y) < 2:
        return Estimate(case, mean, math.nan, math.nan, min(len(x), len(y)), "too few seeds")
    if np.std(x) == 0 and np.std(y) == 0:
        return Estimate(case, mean, mean, mean, min(len(x), len(y)), "Welch t over seeds")
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(level)
    return Estimate(case, mean, float(ci.low), float(ci.high), min(len(x), len(y)), "Welch t over seeds")


def one_sample(values: dict[int, float], level: float, case: str) -> Estimate:
    mean, low, high = t_interval(list(values.values()), level)
    return Estimate(case, mean, low, high, len(values), "t over seeds" if len(values) >= 2 else "too few seeds")


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, level: float, case: str) -> Estimate:
    """Percentile bootstrap over n images of statistic(image indices) (vectorised over leading axes)."""
    from scipy import stats

    value = float(statistic(np.arange(n)))
    if n < 2:
        return Estimate(case, value, math.nan, math.nan, n, "too few images")
    # Resampling image indices rather than values keeps every array of a case on the same images (paired).
    result = stats.bootstrap((np.arange(n),), lambda idx, axis=-1: statistic(idx), vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                             batch=200, confidence_level=level, method="percentile", rng=np.random.default_rng(0))
    ci = result.confidence_interval
    return Estimate(case, value, float(ci.low), float(ci.high), n, "bootstrap over images")


# --- verdicts --------------------------------------------------------------------------------

def _resolved(e: Estimate) -> bool:
    return not (math.isnan(e.low) or math.isnan(e.high))


def decide(claim: Claim, cases: list[Estimate], note: str = "") -> Finding:
    """Every case above the threshold: supported; any case below: contradicted; else not resolved."""
    level = case_level(len(cases))
    if not cases:
        return Finding(claim, NOT_MEASURED, None, [], level, note)
    below = [c for c in cases if _resolved(c) and c.high < claim.threshold]
    if below:
        return Finding(claim, CONTRADICTED, min(below, key=lambda c: c.high), cases, level, note)
    if all(_resolved(c) and c.low > claim.threshold for c in cases):
        return Finding(claim, SUPPORTED, min(cases, key=lambda c: c.low), cases, level, note)
    weakest = min(cases, key=lambda c: c.low if _resolved(c) else -math.inf)
    return Finding(claim, NOT_RESOLVED, weakest, cases, level, note)


def decide_any_difference(claim: Claim, cases: list[Estimate], note: str = "") -> Finding:
    """Claim 7: some pair differs by more than the threshold either way (its interval lies beyond
    +-threshold): supported; every interval within +-threshold: contradicted; else not resolved."""
    level = case_level(len(cases))
    if not cases:
        return Finding(claim, NOT_MEASURED, None, [], level, note)
    differs = [c for c in cases if _resolved(c) and (c.low > claim.threshold or c.high < -claim.threshold)]
    if differs:
        return Finding(claim, SUPPORTED, max(differs, key=lambda c: min(abs(c.low), abs(c.high))), cases, level, note)
    if all(_resolved(c) and -claim.threshold < c.low and c.high < claim.threshold for c in cases):
        return Finding(claim, CONTRADICTED, max(cases, key=lambda c: max(abs(c.low), abs(c.high))), cases, level, note)
    return Finding(claim, NOT_RESOLVED, max(cases, key=lambda c: abs(c.value) if not math.isnan(c.value) else -1), cases,
                   level, note)


def not_measured(key: str, why: str) -> Finding:
    return Finding(CLAIMS_BY_KEY[key], NOT_MEASURED, None, [], LEVEL, why)


# --- accuracy claims (7, 9, 10, 11): from the store ------------------------------------------

@dataclass(frozen=True)
class AccuracyRecord:
    size_px: int
    interpolation: str
    antialias: bool  # effective
    seed: int
    accuracy: float  # percent


def _method_label(method: tuple[str, bool]) -> str:
    name, aa = method
    return name if name == "nearest" else f"{name}/{'aa' if aa else 'no-aa'}"


def accuracy_findings(records: list[AccuracyRecord], native_px: int) -> list[Finding]:
    """Claims 7, 9, 10 and 11 from finished runs (one record per run)."""
    table: dict[tuple[int, tuple[str, bool]], dict[int, float]] = {}
    for r in records:
        # At the native size nothing is resized: every method is the same computation.
        method = STUDY_METHOD if r.size_px == native_px else (r.interpolation, r.antialias)
        table.setdefault((r.size_px, method), {})[r.seed] = r.accuracy
    down = sorted({s for s, _ in table if s < native_px})
    up = sorted({s for s, _ in table if s > native_px})
    resized = down + up
    out = []

    pairs = []
    for size in resized:
        methods = sorted(m for s, m in table if s == size)
        pairs += [(size, a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    level = case_level(len(pairs))
    cases = [difference(table[(s, a)], table[(s, b)], level, f"{_method_label(a)} - {_method_label(b)} at {s} px") for s, a, b in pairs]
    out.append(decide_any_difference(CLAIMS_BY_KEY["method"], cases,
                                     "" if cases else "needs two or more methods at a resized size"))

    comparisons = [(size, m) for size in resized for s, m in sorted(table) if s == size and m[0] != "nearest"
                   and (size, ("nearest", False)) in table]
    level = case_level(len(comparisons))
    cases = [difference(table[(s, m)], table[(s, ("nearest", False))], level, f"{_method_label(m)} - nearest at {s} px")
             for s, m in comparisons]
    held_nearest = any(m == ("nearest", False) for s, m in table if s != native_px)
    out.append(decide(CLAIMS_BY_KEY["nearest"], cases, "" if cases else "needs nearest and another method at a resized size"
                      if held_nearest else "no run used nearest at a resized size"))

    native = table.get((native_px, STUDY_METHOD))
    ups = [s for s in up if (s, STUDY_METHOD) in table]
    downs = [s for s in down if (s, STUDY_METHOD) in table]
    level = case_level(len(ups))
    cases = [difference(native, table[(s, STUDY_METHOD)], level, f"{native_px} px - {s} px") for s in ups] if native else []
    out.append(decide(CLAIMS_BY_KEY["upsample"], cases,
                      "" if cases else f"needs the study's method at the native {native_px} px and at an upsampled size"))
    pairs_ud = [(u, d) for u in ups for d in downs]
    level = case_level(len(pairs_ud))
    cases = [difference(table[(u, STUDY_METHOD)], table[(d, STUDY_METHOD)], level, f"{u} px - {d} px") for u, d in pairs_ud]
    out.append(decide(CLAIMS_BY_KEY["downsample"], cases,
                      "" if cases else "needs the study's method at an upsampled and a downsampled size"))
    return out


# --- signal claims (1, 2, 3, 4, 8): from the test images -------------------------------------

@dataclass
class SignalMeasures:
    """Per test image (first axis), what one resize did to its spectrum, in native frequency units."""

    ring: np.ndarray  # images x rings: energy per ring of width 1/N cycles per native px
    hi: np.ndarray  # energy in the upper half [B/2, B) of the band both sizes hold (B: the lower Nyquist)
    native_hi: np.ndarray  # the native images' energy in that same band
    above: np.ndarray  # energy above the native Nyquist (outside the native DFT square)
    total: np.ndarray  # total energy


def _mean(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean over the images chosen by idx (any leading resample axes): the image axis is x's first."""
    return x[idx].mean(axis=idx.ndim - 1)


def spectral_change(res: SignalMeasures, native_ring: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def stat(idx):
        a, b = _mean(res.ring, idx), _mean(native_ring, idx)
        return np.abs(a - b).sum(-1) / b.sum(-1)
    return stat


def detail_lost(res: SignalMeasures) -> Callable[[np.ndarray], np.ndarray]:
    return lambda idx: 1 - _mean(res.hi, idx) / _mean(res.native_hi, idx)


def added_energy(res: SignalMeasures) -> Callable[[np.ndarray], np.ndarray]:
    return lambda idx: _mean(res.above, idx) / _mean(res.total, idx)


def sharper(a: SignalMeasures, b: SignalMeasures) -> Callable[[np.ndarray], np.ndarray]:
    """kept_hi(a) - kept_hi(b) on the same images."""
    return lambda idx: (_mean(a.hi, idx) - _mean(b.hi, idx)) / _mean(a.native_hi, idx)


def signal_findings(measures: dict[tuple[int, str], SignalMeasures], native_ring: np.ndarray, native_px: int,
                    note: str = "") -> list[Finding]:
    """Claims 1, 2, 3, 4 and 8 from per-image measures, keyed by (size, method) with the study's antialias."""
    n = len(native_ring)
    study = STUDY_METHOD[0]
    sizes = sorted(s for s, m in measures if m == study)
    down, up = [s for s in sizes if s < native_px], [s for s in sizes if s > native_px]
    out = []

    def claim(key: str, sizes_: list[int], make, missing: str) -> None:
        level = case_level(len(sizes_))
        cases = [bootstrap(make(measures[(s, study)]), n, level, f"{s} px") for s in sizes_]
        out.append(decide(CLAIMS_BY_KEY[key], cases, note if cases else missing))

    claim("frequency", down + up, lambda m: spectral_change(m, native_ring), "needs a resized size")
    claim("blend", down, detail_lost, "needs a downsampled size")
    claim("artifacts", up, added_energy, "needs an upsampled size")
    claim("blur", up, detail_lost, "needs an upsampled size")
    both = [s for s in down + up if (s, "bicubic") in measures]
    level = case_level(len(both))
    cases = [bootstrap(sharper(measures[(s, "bicubic")], measures[(s, study)]), n, level, f"{s} px") for s in both]
    out.append(decide(CLAIMS_BY_KEY["bicubic"], cases, note if cases else "needs bicubic and bilinear at a resized size"))
    return out


def measure_signal(images, native: tuple[int, int], sizes: list[int], methods: list[str], backend: str
                   ) -> tuple[dict[tuple[int, str], SignalMeasures], np.ndarray]:
    """Resize uint8 N x 3 x H x W test images to each size by each method (antialias on, as effective on
    `backend`) and measure each image's spectrum with spectrum.py's functions; the native rings too."""
    import torch

    from ..training.resize import effective_antialias, output_size, resize
    from .spectrum import frequency_index, luma, power_spectrum

    n_native = min(native)
    shapes = {s: output_size(*native, s) for s in sizes}
    largest = max([native, *shapes.values()], key=lambda hw: hw[0] * hw[1])
    rings = int(frequency_index(largest, native)[0].round().max()) + 1

    def per_image(power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        radius, axis = frequency_index(tuple(power.shape[-2:]), native)
        flat = power.reshape(power.shape[0], -1)
        ring = torch.zeros(power.shape[0], rings, dtype=torch.float64).index_add_(1, radius.round().long().flatten(), flat)
        return ring, radius

    native_power = power_spectrum(luma(images))
    native_ring, native_radius = per_image(native_power)
    out = {}
    for size in sizes:
        h, w = shapes[size]
        band = min(h * n_native / native[0], w * n_native / native[1], n_native) / 2  # as spectrum's kept_hi
        native_hi = native_power[:, (native_radius >= band / 2) & (native_radius < band)].sum(1)
        for method in methods:
            power = power_spectrum(luma(resize(images, size, method, effective_antialias(method, backend, True), backend)))
            ring, radius = per_image(power)
            _, axis = frequency_index(tuple(power.shape[-2:]), native)
            out[(size, method)] = SignalMeasures(
                ring.numpy(), power[:, (radius >= band / 2) & (radius < band)].sum(1).numpy(), native_hi.numpy(),
                power[:, axis > n_native / 2 + 1e-9].sum(1).numpy(), power.sum((1, 2)).numpy())
    return out, native_ring.numpy()


# --- probe claims (5, 6): from each seed's trained native-size model ------------------------

@dataclass(frozen=True)
class ProbeRecord:
    seed: int
    size_px: int  # the resized input size
    cka: dict[str, float]  # per stage, native vs resized
    ratio_native: dict[str, float]  # ||residual|| / ||skip|| per block
    ratio_resized: dict[str, float]


def cascade(record: ProbeRecord) -> float:
    """The drop in CKA from the first stage probed to the last (a ResNet's stem to its pooled features)."""
    stages = list(record.cka)
    return record.cka[stages[0]] - record.cka[stages[-1]]


def residual_shift(record: ProbeRecord) -> float:
    return float(np.mean([abs(math.log(record.ratio_resized[b] / record.ratio_native[b])) for b in record.ratio_native]))


def probe_findings(records: list[ProbeRecord], note: str = "", measures=(("cascade", cascade), ("residual", residual_shift))
                   ) -> list[Finding]:
    sizes = sorted({r.size_px for r in records})
    out = []
    for key, effect in measures:
        level = case_level(len(sizes))
        cases = [one_sample({r.seed: effect(r) for r in records if r.size_px == s}, level, f"{s} px input") for s in sizes]
        out.append(decide(CLAIMS_BY_KEY[key], cases, note))
    return out


# --- from a store ----------------------------------------------------------------------------

def applicable(groups: list[Group], native_px: int | None) -> bool:
    """Whether the runs form a findings study: only size, interpolation and antialias vary, and the native
    size and a resized size are both there."""
    if not groups or native_px is None:
        return False
    from ..store.runs import varying

    if set(varying([g.config for g in groups])) - COMPARED:
        return False
    sizes = {g.train_size for g in groups}
    return native_px in sizes and len(sizes) > 1


def compute_findings(groups: list[Group], db: str, out: Path, progress: Callable[[str], None] | None = None
                     ) -> FindingsResult | None:
    """The findings of these runs (None when they do not form a findings study); writes findings.json/.csv
    and the probes' files under `out`."""
    from ..training.data import balanced_subset, load_dataset
    from ..core.errors import ResizelabError
    from ..training.resize import effective_antialias

    say = progress or (lambda message: None)
    config = groups[0].runs[0]["config"] if groups else {}
    try:
        # Never a download from a report: data not on this machine means no signal rows, not a fetch.
        dataset = load_dataset(config["data"], config.get("data_dir"), download=False) if groups else None
    except ResizelabError:
        dataset = None
    native = tuple(dataset.native_size) if dataset is not None else None
    native_px = min(native) if native else next((g.train_size for g in groups if g.config["size"] is None), None)
    if not applicable(groups, native_px):
        return None
    backend = config["backend"]
    study_aa = effective_antialias(STUDY_METHOD[0], backend, True)
    setting = (f"{config['arch']} ({config['stem']} stem), weights {config['weights'] if config['weights'] in ('imagenet', 'none') else 'file'}, "
               f"{plural(config['epochs'], 'epoch')}, data {config['data']}, backend {backend}; the study's resize: bilinear, antialias "
               f"{'on' if study_aa else 'off (not available on this backend)'}")
    records = [AccuracyRecord(g.train_size, g.config["interpolation"], g.config["antialias"], r["config"]["seed"], r["test_accuracy"])
               for g in groups for r in g.runs]
    findings = {f.claim.key: f for f in accuracy_findings(records, native_px)}
    if not study_aa:
        for key in ("upsample", "downsample"):
            findings[key] = not_measured(key, "the study's antialiased bilinear resize is not available on this backend")

    images_n = 0
    if dataset is None:
        for c in CLAIMS:
            if c.source == "signal":
                findings[c.key] = not_measured(c.key, "the runs' data is not on this machine")
    elif not study_aa:
        for c in CLAIMS:
            if c.source == "signal":
                findings[c.key] = not_measured(c.key, "the study's antialiased bilinear resize is not available on this backend")
    else:
        # Only what the runs hold: the study's resize and bicubic (antialiased, as the claims say) at the sizes runs used them.
        held = {(g.train_size, g.config["interpolation"]) for g in groups if g.train_size != native_px
                and effective_antialias(g.config["interpolation"], backend, g.config["antialias"]) == study_aa}
        pairs = [(s, m) for s, m in sorted(held) if m in (STUDY_METHOD[0], "bicubic")]
        # The runs' own test images (a class-balanced --limit-test subset is a prefix of a larger one), at most SIGNAL_IMAGES.
        limit = min(SIGNAL_IMAGES, config.get("limit_test") or SIGNAL_IMAGES, len(dataset.test_labels))
        if pairs:
            say(f"findings: spectra of {limit} test images at {', '.join(sorted({str(s) for s, _ in pairs}, key=int))} px")
            images = dataset.test_images[balanced_subset(dataset.test_labels, limit)]
            images_n = len(images)
            measures = {}
            for method in sorted({m for _, m in pairs}):
                sizes = [s for s, m in pairs if m == method]
                part, native_ring = measure_signal(images, native, sizes, [method], backend)
                measures.update(part)
            findings.update({f.claim.key: f for f in signal_findings(measures, native_ring, native_px)})
        for f in signal_gaps(groups, native_px, backend, study_aa):
            findings[f.claim.key] = f

    for f in _probe(groups, native_px, db, out, backend, say, study_aa):
        findings[f.claim.key] = f
    result = FindingsResult([findings[c.key] for c in CLAIMS], native_px, setting, images_n)
    write_findings(result, out)
    return result


def signal_gaps(groups, native_px: int, backend: str, study_aa: bool) -> list[Finding]:
    """The signal claims the runs do not hold a run for, each "not measured" with what no run used: a claim about
    bicubic is not decided from a bicubic resize that no run trained with."""
    from ..training.resize import effective_antialias

    methods: dict[str, set[bool]] = {}
    sizes: dict[str, set[int]] = {}
    for g in groups:
        if g.train_size == native_px:
            continue
        m = g.config["interpolation"]
        methods.setdefault(m, set()).add(effective_antialias(m, backend, g.config["antialias"]))
        if effective_antialias(m, backend, g.config["antialias"]) == study_aa:
            sizes.setdefault(m, set()).add(g.train_size)
    study = STUDY_METHOD[0]
    out = []
    if not sizes.get(study):
        why = (f"no run used {study}" if study not in methods else f"no run used {study} with antialias") + \
            " (the study's resize) at a resized size"
        out += [not_measured(c.key, why) for c in CLAIMS if c.source == "signal"]
        return out
    if not any(s < native_px for s in sizes[study]):
        out.append(not_measured("blend", f"no run used a downsampled size (below {native_px} px) with {study}"))
    if not any(s > native_px for s in sizes[study]):
        out += [not_measured(k, f"no run used an upsampled size (above {native_px} px) with {study}") for k in ("artifacts", "blur")]
    if "bicubic" not in methods:
        out.append(not_measured("bicubic", "no run used bicubic"))
    elif not sizes.get("bicubic"):
        out.append(not_measured("bicubic", "no run used bicubic with antialias"))
    elif not sizes["bicubic"] & sizes[study]:
        out.append(not_measured("bicubic", f"no run used bicubic and {study} at the same resized size"))
    return out


def _probe(groups, native_px: int, db: str, out: Path, backend: str, say, study_aa: bool) -> list[Finding]:
    from ..store.weights import weights_folder
    from ..core.errors import ConfigError
    from .probe import ProbeConfig, run_probe

    if not study_aa:
        return [not_measured(k, "the study's antialiased bilinear resize is not available on this backend") for k in ("cascade", "residual")]
    arch = groups[0].config["arch"]
    if arch_form(arch) == "callable":
        # A results database never makes resizelab import code; `resizelab probe --run HASH --arch SPEC` names it.
        return [not_measured(k, f"these runs' model is Python code ({arch}), which a stored run never imports by itself; "
                                f"probe them with resizelab probe --run HASH --arch {arch}") for k in ("cascade", "residual")]
    natives = [g for g in groups if g.train_size == native_px and (g.config["interpolation"], g.config["antialias"]) == STUDY_METHOD]
    saved = [r for g in natives for r in g.runs if r["result"].get("weights_file")]
    if not saved:
        why = "the native-size runs have no saved weights; train them with --save-weights (the findings preset does)"
        return [not_measured(k, why) for k in ("cascade", "residual")]
    # Weights live beside the database (weights/): a store copied without that folder still gets its report.
    runs = [r for r in saved if (weights_folder(db).parent / r["result"]["weights_file"]).is_file()]
    if not runs:
        why = f"the native-size runs' saved weights are not in {weights_folder(db)} (a store moved without its weights folder?)"
        return [not_measured(k, why) for k in ("cascade", "residual")]
    resized = sorted({g.train_size for g in groups} - {native_px})
    records = []
    for run in runs:
        for size in resized:
            say(f"findings: probe of seed {run['config']['seed']}'s {native_px} px model with {size} px input")
            cfg = ProbeConfig(run=run["config_hash"], db=db, size=size, interpolations=(STUDY_METHOD[0],), antialias=True,
                              backend=backend, limit=PROBE_IMAGES, out=str(out / "probe" / f"{run['config_hash']}-{size}px"))
            try:
                result = run_probe(cfg)
            except ConfigError as e:  # a weights file that is not the run's own (find_run checks its SHA-256)
                return [not_measured(k, str(e)) for k in ("cascade", "residual")]
            m = result.methods[0]
            records.append(ProbeRecord(run["config"]["seed"], size, m.cka, result.native.residual_ratio, m.residual_ratio))
    if records and not records[0].ratio_native:
        return probe_findings(records, measures=(("cascade", cascade),)) + [not_measured(
            "residual", f"no residual blocks identified in {arch} (torchvision's or timm's BasicBlock/Bottleneck)")]
    return probe_findings(records)


# --- output ----------------------------------------------------------------------------------

def telling_digits(values: list[float], thresholds: list[float], digits: int, most: int = 6) -> int:
    """The fewest decimals, from `digits`, at which no shown value reads as a threshold it is not (0.0954 against
    ln 1.1 = 0.0953 needs 4: at 3 both are 0.095) nor on the other side of one, so a reader can tell from the
    printed interval whether it clears the threshold."""
    def tells(d: int) -> bool:
        for v in values:
            for t in thresholds:
                if math.isfinite(v) and v != t and (round(v, d) == round(t, d) or (round(v, d) > round(t, d)) != (v > t)):
                    return False
        return True
    while digits < most and not tells(digits):
        digits += 1
    return digits


def effect_text(f: Finding) -> str:
    e = f.deciding
    if e is None:
        return "-"
    thresholds = [f.claim.threshold, -f.claim.threshold] if f.claim.key == "method" else [f.claim.threshold]
    digits = telling_digits([e.low, e.high], thresholds, 1 if f.claim.unit == "points" else 3)
    ci = "" if not _resolved(e) else f" [{e.low:+.{digits}f}, {e.high:+.{digits}f}]" if f.claim.unit == "points" \
        else f" [{e.low:.{digits}f}, {e.high:.{digits}f}]"
    value = f"{e.value:+.{digits}f}" if f.claim.unit == "points" else f"{e.value:.{digits}f}"
    unit = " pts" if f.claim.unit == "points" else ""
    return f"{e.case}: {value}{unit}{ci}"


def rows(result: FindingsResult) -> list[dict[str, str]]:
    """The table as text cells: what the report templates and the terminal print."""
    out = []
    for f in result.findings:
        thresholds = [f.claim.threshold, -f.claim.threshold] if f.claim.key == "method" else [f.claim.threshold]
        d = telling_digits([v for c in f.cases for v in (c.low, c.high)], thresholds, 3)
        # A claim no run can decide says why in its verdict: "not measured (no run used bicubic)".
        verdict = f"{f.verdict} ({f.note})" if f.verdict == NOT_MEASURED and f.note else f.verdict
        out.append({"number": str(f.claim.number), "claim": f.claim.text, "effect": effect_text(f),
                    "n": "-" if f.deciding is None else plural(f.deciding.n, "image" if f.claim.source == "signal" else "seed"),
                    "verdict": verdict, "measure": f.claim.measure, "note": f.note,
                    "cases": "; ".join(f"{c.case}: {c.value:.{d}f} " + (f"[{c.low:.{d}f}, {c.high:.{d}f}]" if _resolved(c)
                                                                          else "(no interval: too few seeds)") for c in f.cases),
                    "level": f"{100 * f.level:.4g}%"})
    return out


def format_findings(result: FindingsResult) -> str:
    body = [[r["number"], r["claim"], r["effect"], r["n"], r["verdict"]] for r in rows(result)]
    header = ["#", "claim", "deciding case: effect [95% CI]", "n", "verdict"]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(b) for b in body])


def write_findings(result: FindingsResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "findings.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("claim", "text", "verdict", "case", "effect", "low", "high", "n", "interval", "level", "threshold", "unit"))
        for finding in result.findings:
            for case in finding.cases or [None]:
                writer.writerow((finding.claim.number, finding.claim.text, finding.verdict, case.case if case else "",
                                 case.value if case else "", case.low if case else "", case.high if case else "",
                                 case.n if case else "", case.how if case else "", finding.level, finding.claim.threshold,
                                 finding.claim.unit))
    (out / "findings.txt").write_text(format_findings(result) + "\n")
    result.files = [str(out / "findings.json"), str(out / "findings.csv"), str(out / "findings.txt")]
    with open(out / "findings.json", "w") as f:
        json.dump(result.to_json_dict(), f, indent=1)
