"""`resizelab spectrum`: what a resize does to the signal, measured on images rather than through a model.

For every size S and every (interpolation, backend, effective antialias) it measures:

- **Spectra.** The radially averaged power spectrum of the test images' luma (Rec. 601), native and
  resized, mean over images. Frequencies are in cycles per *native* pixel, so a 16 px image ends at
  0.25 and a 64 px one at 1.0 and both line up with the 32 px original (Nyquist 0.5). Each image is
  mean-removed and multiplied by a Hann window over its extent before the DFT: unwindowed, the DFT's
  periodic extension of a photo jumps at the borders and sprays power along both axes at every
  frequency. The window is one continuous function of the image area, so it smooths native and
  resized spectra alike (by +-1/N cycles per native px). (Moisan's periodic component avoids a window
  but counts the true neighbour difference across the wrap as a jump: it moves a third of a
  near-Nyquist grating's energy elsewhere, just where this measurement looks.) Power per DFT bin is
  |X|^2 / (h w)^2 over the window's mean square, which sums to the variance, and a bin covers
  1/N^2 (cycles/native px)^2 at every size, so sums over a frequency region compare across sizes.
- **kept** = energy of the resized images / energy of the native ones, over the frequencies both can
  hold (radius below the lower of the two Nyquists); **kept_hi** the same over the upper half of
  that band, where blur shows. Above 1 where folded aliases (downsampling) or a sharpening kernel's
  overshoot (bicubic) add energy.
- **added** (upsampling only): the fraction of the output's energy above the native Nyquist (outside
  the native DFT square), which a sampled image cannot have had: interpolation artefacts (the
  blocks of nearest, the ripples of a short kernel). 0 for ideal (sinc) interpolation.
- **Aliasing on a zone plate** (downsampling only). The zone plate (concentric-circle chirp, the test
  image clean-fid uses to show resize libraries aliasing) is 0.5 + 0.5 cos(pi f_max r^2 / r_max) in
  grey levels 0..255: its local frequency is f(r) = f_max r / r_max cycles/px, rising from 0 at the
  centre to f_max = 0.5 (the native Nyquist) at the corners, so the native image is alias-free. It is
  made at m times the data's native size (256 px for 32 px data) and resized by the same factor as
  the data (S/N), so aliasing depends on the factor as it does for the data. An ideal band-limited
  result is the zone plate where f(r) is below the new Nyquist f_new = 0.5 S/N and flat mid-grey
  where it is above, and aliasing leaves a signal at the place it came from, so:
  **zp_alias** = energy of (output - 127.5) where f(r) > 1.1 f_new, divided by the zone plate's own
  energy there: the fraction of the stopband's energy that survives as aliases (0 ideal, about 1
  for nearest, which keeps every sample it takes). **zp_pass_err** = energy of (output - zone plate)
  where f(r) < 0.9 f_new, over the zone plate's energy there: passband loss (blur, ringing). The 10%
  guard bands leave out the cut-off itself, where every real filter is in transition.
- **Round trip** native -> S -> native with the same method: **rt_psnr_db** from the mean squared
  error over all pixels and channels of all images (inf when exact), and **rt_ssim**, the mean SSIM
  (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255, on luma, windows
  inside the image only, as in their reference code) over images.

Variants that compute the same thing (PIL bilinear with antialias true and false; nearest with
either) are measured once, under the antialias that happened.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..core.plotting import fitted, log_axis, pyplot
from ..core.config import check_threads_field, evaluation_threads_option
from ..core.config import MAX_SIZE_PX, MIN_SIZE_PX, RunConfig, bool_list, option, run_option, sizes_list, text, text_list, whole
from ..core.config import check_choice as _choice
from ..core.config import check_whole as _int_in
from ..training.resize import BACKEND_INTERPOLATIONS, BACKENDS, INTERPOLATIONS, effective_antialias
from ..core.choices import LEARNED_INTERPOLATIONS
from ..store.database import DEFAULT_DB
from ..core.errors import ConfigError
from ..core.log import plural
from ..training.resize import output_size, resize

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601, as PIL's convert("L") and Wang et al.'s rgb2gray
ZONE_PLATE_PX = 256  # the zone plate is the native size times the largest whole factor up to this
ZONE_PLATE_MAX_OUTPUT_PX = 2048  # ...but small enough that the largest resized copy stays this size
GUARD = 0.1  # zone-plate guard band around the new Nyquist, as a fraction of it


@dataclass(frozen=True)
class SpectrumConfig:
    """What `resizelab spectrum` measures. Validated on construction; lists may be given as any sequence."""

    data: str = run_option("data", "cifar10, cifar100, synthetic or imagefolder:PATH; its test split is used")
    data_dir: str | None = run_option("data_dir")
    sizes: tuple[int, ...] = option((16, 64), sizes_list(), "comma-separated sizes in px, shorter edge", flag="size")
    interpolations: tuple[str, ...] = option(("nearest", "bilinear", "bicubic"), text_list(), "comma-separated methods",
                                             flag="interpolation")
    antialias: tuple[bool, ...] = option((True, False), bool_list(), "true, false or true,false; the effective value is shown")
    backends: tuple[str, ...] = option(("pil", "tensor"), text_list(), "comma-separated: pil, tensor, opencv", flag="backend")
    # Class-balanced test images (seed 0); fewer if the split is smaller.
    limit: int = option(500, whole(1), "class-balanced test images to measure", flag="limit_test", aliases=("--limit",))
    run: str | None = option(None, text("HASH", optional=True), "a stored run trained with a learned resizer (muller, "
                             "talebi) and --save-weights: its trained resizer is measured beside the fixed methods (default: fixed methods only)")
    db: str = option(DEFAULT_DB, text("PATH"), "the results store that holds --run")
    out: str = option("reports/spectrum", text("DIR"), "folder for spectrum.json, spectrum.csv, psd.csv and the figures",
                        flag="report_dir", aliases=("--out",))
    threads: int | None = evaluation_threads_option()
    figures: bool = True

    def __post_init__(self) -> None:
        check_threads_field(self)
        for name in ("sizes", "interpolations", "antialias", "backends"):
            value = getattr(self, name)
            if isinstance(value, (str, int, bool)):
                value = (value,)
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))  # ordered, duplicates dropped
            if not getattr(self, name):
                raise ConfigError(f"{name} must list at least one value")
        RunConfig(data=self.data, data_dir=self.data_dir)  # the same data checks and messages as a run
        for size in self.sizes:
            _int_in("sizes", size, MIN_SIZE_PX, MAX_SIZE_PX)
        for method in self.interpolations:
            _choice("interpolation", method, INTERPOLATIONS)
        if self.run is not None:
            self._take_learned_run()
        learned = [m for m in self.interpolations if m in LEARNED_INTERPOLATIONS and m != self.learned_method]
        if learned:
            raise ConfigError(f"interpolation {learned[0]!r} is a learned resizer: measure a trained one with --run HASH "
                              f"(a run trained with --interpolation {learned[0]} --save-weights), not by name")
        for value in self.antialias:
            if not isinstance(value, bool):
                raise ConfigError(f"antialias must be true or false; got {value!r}")
        for backend in self.backends:
            _choice("backend", backend, BACKENDS)
        for method in self.interpolations:
            if not any(method in BACKEND_INTERPOLATIONS[b] for b in self.backends):
                can = [b for b in BACKENDS if method in BACKEND_INTERPOLATIONS[b]]
                raise ConfigError(f"interpolation {method!r} is not available with backend {', '.join(self.backends)}; "
                                  f"add backend {' or '.join(can)}")
        _int_in("limit", self.limit, 1)
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"out must be a folder path; got {self.out!r}")

    @property
    def learned_method(self) -> str | None:
        stored = getattr(self, "_stored", None)
        return stored.config["interpolation"] if stored is not None else None

    def _take_learned_run(self) -> None:
        from ..store.read import find_run

        stored = find_run(self.db, self.run)
        method = stored.config.get("interpolation")
        if method not in LEARNED_INTERPOLATIONS:
            raise ConfigError(f"run {stored.config_hash} resized with {method!r}, not a learned resizer "
                              f"({', '.join(LEARNED_INTERPOLATIONS)}); give such a run to --run, or leave --run out")
        object.__setattr__(self, "_stored", stored)
        object.__setattr__(self, "run", stored.config_hash)
        object.__setattr__(self, "interpolations", tuple(dict.fromkeys((*self.interpolations, method))))
        if "tensor" not in self.backends:  # the learned resizer runs as torch ops: the tensor backend
            object.__setattr__(self, "backends", (*self.backends, "tensor"))

    def variants(self) -> list["Variant"]:
        """Every (interpolation, backend, effective antialias) the config asks for, each once."""
        out = []
        for method in self.interpolations:
            for backend in self.backends:
                if method not in BACKEND_INTERPOLATIONS[backend]:
                    continue  # lanczos with tensor in a grid that also has pil: the grid skips the hole
                for aa in self.antialias:
                    out.append(Variant(method, backend, effective_antialias(method, backend, aa)))
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Variant:
    interpolation: str
    backend: str
    antialias: bool  # effective

    @property
    def label(self) -> str:
        return f"{self.interpolation}/{'aa' if self.antialias else 'no-aa'}/{self.backend}"


@dataclass
class SpectrumRow:
    size_px: int
    direction: str  # down, up or same
    interpolation: str
    backend: str
    antialias: bool  # effective
    kept: float
    kept_hi: float
    added: float | None  # upsampling only
    zp_alias: float | None  # downsampling only
    zp_pass_err: float | None  # downsampling only
    rt_psnr_db: float | None  # None when the round trip cannot return to the native shape
    rt_ssim: float | None
    psd: list[float] = field(repr=False)  # radially averaged, on SpectrumResult.frequencies (NaN: outside)

    def to_json_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rt_psnr_db"] = _json_float(self.rt_psnr_db)
        out["psd"] = [_json_float(v) for v in self.psd]
        return out


@dataclass
class SpectrumResult:
    config: SpectrumConfig
    native_size_px: tuple[int, int]
    images: int
    zone_plate_px: int
    frequencies: list[float]  # radial bin centres, cycles per native px
    native_psd: list[float]
    rows: list[SpectrumRow]
    seconds: float
    files: list[str] = field(default_factory=list)
    zone_plates: dict[tuple[int, Variant] | str, torch.Tensor] = field(default_factory=dict, repr=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config), "native_size_px": list(self.native_size_px), "images": self.images,
            "zone_plate_px": self.zone_plate_px, "frequency_cycles_per_native_px": self.frequencies,
            "native_psd": [_json_float(v) for v in self.native_psd], "rows": [r.to_json_dict() for r in self.rows],
            "seconds": self.seconds, "files": self.files,
        }


def _json_float(value: float | None) -> float | str | None:
    # JSON has no inf or NaN: a lossless round trip is "inf", a frequency a size cannot hold is null.
    if value is None or math.isnan(value):
        return None
    return "inf" if math.isinf(value) else value


# --- signal measures -------------------------------------------------------------------------

def luma(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> float64 N x H x W grey levels (0..255)."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)
    return (images.to(torch.float64) * weights).sum(1)


def hann_window(h: int, w: int) -> torch.Tensor:
    """sin^2(pi t) along each axis at the pixel centres t = (i + 0.5) / n: one continuous window over
    the image's extent, so a 16 px and a 32 px image of the same scene get the same window."""
    wy = torch.sin(math.pi * (torch.arange(h, dtype=torch.float64) + 0.5) / h) ** 2
    wx = torch.sin(math.pi * (torch.arange(w, dtype=torch.float64) + 0.5) / w) ** 2
    return wy.view(-1, 1) * wx.view(1, -1)


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|DFT|^2 / (h w)^2 of each ... x H x W image, mean removed and Hann-windowed, over the window's
    mean square: it sums to the image's variance (exactly for stationary content, on average otherwise)."""
    h, w = x.shape[-2:]
    window = hann_window(h, w)
    centred = (x - x.mean(dim=(-2, -1), keepdim=True)) * window
    return torch.fft.fft2(centred).abs().square() / (float(h * w) ** 2 * window.square().mean())


def frequency_index(shape: tuple[int, int], native: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For an h x w DFT of an image resized from `native`: each bin's radius and its larger axis
    component, in units of 1/N cycles per native px (N = the native shorter side). Bin j of an
    h-point DFT is j/h cycles per resized px = j/H cycles per native px, whatever h is."""
    h, w = shape
    big_h, big_w = native
    n = min(big_h, big_w)
    fy = torch.fft.fftfreq(h, dtype=torch.float64) * h / big_h * n
    fx = torch.fft.fftfreq(w, dtype=torch.float64) * w / big_w * n
    fy, fx = fy.view(-1, 1).expand(h, w), fx.view(1, -1).expand(h, w)
    return torch.sqrt(fy ** 2 + fx ** 2), torch.maximum(fy.abs(), fx.abs())


def radial_psd(power: torch.Tensor, native: tuple[int, int], bins: int) -> torch.Tensor:
    """Mean power per bin in rings of width 1/N cycles per native px, times N_h N_w: a density in
    grey level^2 per (cycle/native px)^2, comparable across sizes. Rings the grid does not fill are NaN."""
    radius, _ = frequency_index(tuple(power.shape[-2:]), native)
    ring = radius.round().long().flatten()
    mean_power = power.reshape(-1, power.shape[-2] * power.shape[-1]).mean(0)
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, ring.clamp(max=bins - 1), mean_power)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, ring.clamp(max=bins - 1), torch.ones_like(mean_power))
    psd = total / count * (native[0] * native[1])
    # Only rings inside the grid's inscribed circle (its Nyquist along both axes) are whole rings.
    nyquist_ring = min(power.shape[-2] * min(native) / native[0], power.shape[-1] * min(native) / native[1]) / 2
    psd[torch.arange(bins) > nyquist_ring] = float("nan")
    psd[0] = float("nan")  # DC was removed
    return psd


def band_energy(power: torch.Tensor, native: tuple[int, int], low: float, high: float) -> float:
    """Mean over images of the energy in the ring low <= radius < high (units of 1/N cycles per native px)."""
    radius, _ = frequency_index(tuple(power.shape[-2:]), native)
    mask = (radius >= low) & (radius < high)
    return float(power.mean(0)[mask].sum())


def energy_above_native_nyquist(power: torch.Tensor, native: tuple[int, int]) -> float:
    """Fraction of the energy outside the native DFT's square |f_x|, |f_y| <= 0.5 cycles/native px."""
    _, axis = frequency_index(tuple(power.shape[-2:]), native)
    mean_power = power.mean(0)
    outside = axis > min(native) / 2 + 1e-9
    return float(mean_power[outside].sum() / mean_power.sum())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of each pair of N x H x W grey images (Wang et al. 2004), in float64.

    Gaussian-weighted local means, variances and covariance over every window position that lies
    inside the image (their reference code's 'valid' filtering); images smaller than the window
    get a window cut to their size.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    size = min(window, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2  # odd, so the window has a centre
    g = gaussian_window(size, sigma)

    def local_mean(z: torch.Tensor) -> torch.Tensor:
        z = F.conv2d(z[:, None], g.view(1, 1, -1, 1))
        return F.conv2d(z, g.view(1, 1, 1, -1))[:, 0]

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x ** 2
    var_y = local_mean(y * y) - mu_y ** 2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(-2, -1))


def psnr_db(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """PSNR of the mean squared error over every element of two uint8 batches; inf when identical."""
    mse = (a.to(torch.float64) - b.to(torch.float64)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


# --- zone plate ------------------------------------------------------------------------------

def zone_plate_radius(size_px: int, native_px: int) -> torch.Tensor:
    """Distance from the zone plate's centre, in native px, of each pixel centre of a size_px copy."""
    pos = (torch.arange(size_px, dtype=torch.float64) + 0.5) * native_px / size_px - native_px / 2
    return torch.sqrt(pos.view(-1, 1) ** 2 + pos.view(1, -1) ** 2)


def zone_plate_values(size_px: int, native_px: int, f_max: float = 0.5) -> torch.Tensor:
    """The continuous zone plate (grey levels) sampled at a size_px copy's pixel centres."""
    r = zone_plate_radius(size_px, native_px)
    r_max = native_px / math.sqrt(2)
    return 127.5 + 127.5 * torch.cos(math.pi * f_max * r ** 2 / r_max)


def zone_plate(native_px: int) -> torch.Tensor:
    """The native zone plate as a uint8 1 x 3 x Z x Z image (grey)."""
    z = zone_plate_values(native_px, native_px).round().to(torch.uint8)
    return z.expand(1, 3, native_px, native_px).contiguous()


def zone_plate_scores(out: torch.Tensor, native_px: int, f_max: float = 0.5) -> tuple[float, float]:
    """(zp_alias, zp_pass_err) of a downsampled zone plate (uint8 1 x 3 x z x z); see the module docstring."""
    z = out.shape[-1]
    y = luma(out)[0]
    ideal = zone_plate_values(z, native_px, f_max)
    local_f = f_max * zone_plate_radius(z, native_px) / (native_px / math.sqrt(2))
    f_new = 0.5 * z / native_px
    stop, passband = local_f > (1 + GUARD) * f_new, local_f < (1 - GUARD) * f_new
    aliased = (y - 127.5)[stop].square().sum() / (ideal - 127.5)[stop].square().sum()
    pass_err = (y - ideal)[passband].square().sum() / (ideal - 127.5)[passband].square().sum()
    return float(aliased), float(pass_err)


def zone_plate_size(native_px: int, sizes: tuple[int, ...]) -> int:
    factor = max(1, min(ZONE_PLATE_PX // native_px, ZONE_PLATE_MAX_OUTPUT_PX // max(sizes)))
    return native_px * factor


# --- the measurement -------------------------------------------------------------------------

def run_spectrum(cfg: SpectrumConfig, progress: Callable[[str], None] | None = None) -> SpectrumResult:
    """spectrum_now on cfg.threads torch threads (auto: the cores other processes leave free)."""
    from ..training.threads import evaluation_threads

    with evaluation_threads(cfg.threads):
        return spectrum_now(cfg, progress)


def spectrum_now(cfg: SpectrumConfig, progress: Callable[[str], None] | None = None) -> SpectrumResult:
    """Measure every size x variant of `cfg` on its test images and a zone plate; write files to cfg.out."""
    from ..core.paths import check_out_dir

    check_out_dir(Path(cfg.out), "--report-dir", create=False, what="output folder")  # before measuring, not after
    from ..training.data import balanced_subset, load_dataset

    say = progress or (lambda message: None)
    resizer = None
    if cfg.learned_method is not None:
        from ..training.learned import learned_resize, load_resizer

        stored = cfg._stored
        resizer = load_resizer(cfg.learned_method, int(stored.config["size"]), bool(stored.config.get("antialias")),
                               stored.weights_path, f"run {cfg.run}'s weights file")

    def do_resize(x: torch.Tensor, size: int, v: "Variant") -> torch.Tensor:
        if resizer is not None and v.interpolation == cfg.learned_method:
            return learned_resize(resizer, x, size)
        return resize(x, size, v.interpolation, v.antialias, v.backend)

    for method in cfg.interpolations:  # a hole in the grid is said, not left for the reader to notice
        missing = [b for b in cfg.backends if method not in BACKEND_INTERPOLATIONS[b]]
        if missing:
            say(f"{method}: not measured on the {', '.join(missing)} backend{'s' if len(missing) > 1 else ''}, which cannot do it")
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.data, cfg.data_dir)
    images = dataset.test_images[balanced_subset(dataset.test_labels, cfg.limit)]
    native = (int(images.shape[-2]), int(images.shape[-1]))
    n_native = min(native)
    max_out = max(max(output_size(*native, s)) for s in cfg.sizes)
    bins = int(math.ceil(max_out * n_native / min(native) / 2)) + 1
    frequencies = [k / n_native for k in range(bins)]
    grey = luma(images)
    native_power = power_spectrum(grey)
    native_psd = radial_psd(native_power, native, bins)
    zp_px = zone_plate_size(n_native, cfg.sizes)
    plate = zone_plate(zp_px)
    zone_plates: dict[Any, torch.Tensor] = {"native": plate}
    rows = []
    for size in cfg.sizes:
        out_shape = output_size(*native, size)
        direction = "same" if out_shape == native else ("down" if min(out_shape) < n_native else "up")
        say(f"{size} px ({direction}): {plural(len(cfg.variants()), 'variant')} on {plural(len(images), 'image')}")
        for v in cfg.variants():
            small = do_resize(images, size, v)
            power = power_spectrum(luma(small))
            band = min(out_shape[0] * n_native / native[0], out_shape[1] * n_native / native[1], n_native) / 2
            kept = band_energy(power, native, 0.5, band) / band_energy(native_power, native, 0.5, band)
            kept_hi = band_energy(power, native, band / 2, band) / band_energy(native_power, native, band / 2, band)
            added = energy_above_native_nyquist(power, native) if direction == "up" else None
            zp = do_resize(plate, zp_px * size // n_native, v)
            zone_plates[(size, v)] = zp
            zp_alias, zp_pass = zone_plate_scores(zp, zp_px) if direction == "down" else (None, None)
            # A learned resizer learned one direction; the way back is the bilinear resize it wraps.
            back = resize(small, n_native, "bilinear" if v.interpolation in LEARNED_INTERPOLATIONS else v.interpolation,
                          v.antialias, v.backend)
            rt_psnr = rt_ssim = None
            if back.shape == images.shape:
                rt_psnr = psnr_db(back, images)
                rt_ssim = float(ssim(luma(back), grey).mean())
            rows.append(SpectrumRow(size, direction, v.interpolation, v.backend, v.antialias, kept, kept_hi, added,
                                    zp_alias, zp_pass, rt_psnr, rt_ssim, radial_psd(power, native, bins).tolist()))
    result = SpectrumResult(cfg, native, len(images), zp_px, frequencies, native_psd.tolist(), rows,
                            time.perf_counter() - t0, zone_plates=zone_plates)
    write_outputs(result, Path(cfg.out))
    return result


# --- output ----------------------------------------------------------------------------------

TABLE_COLUMNS = ("size", "dir", "interpolation", "backend", "aa", "kept", "kept_hi", "added", "zp_alias", "zp_pass_err",
                 "rt_psnr_db", "rt_ssim")


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _table_cells(row: SpectrumRow) -> list[str]:
    return [str(row.size_px), row.direction, row.interpolation, row.backend, _cell(row.antialias), _cell(row.kept),
            _cell(row.kept_hi), _cell(row.added), _cell(row.zp_alias), _cell(row.zp_pass_err),
            _cell(row.rt_psnr_db, 2), _cell(row.rt_ssim, 4)]


def format_spectrum(result: SpectrumResult) -> str:
    body = [_table_cells(r) for r in result.rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(TABLE_COLUMNS)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    h, w = result.native_size_px
    lines = [f"{result.images} test images of {result.config.data} at {h}x{w} px; zone plate {result.zone_plate_px} px",
             line(list(TABLE_COLUMNS)), line(["-" * w for w in widths])] + [line(r) for r in body]
    lines += ["",
              "kept, kept_hi: resized / native energy below the lower Nyquist, and in its upper half (1 = kept)",
              "added: share of the output's energy above the native Nyquist (upsampling artefacts; 0 ideal)",
              "zp_alias: zone-plate energy beyond the new Nyquist left in as aliases (0 ideal, 1 = all of it)",
              "zp_pass_err: zone-plate error below the new Nyquist (blur); rt: native -> size -> native"]
    return "\n".join(lines)


def write_outputs(result: SpectrumResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "spectrum.json", out / "spectrum.csv", out / "psd.csv"]
    with open(out / "spectrum.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_COLUMNS)
        for row in result.rows:
            writer.writerow([row.size_px, row.direction, row.interpolation, row.backend, row.antialias, row.kept, row.kept_hi,
                             "" if row.added is None else row.added, "" if row.zp_alias is None else row.zp_alias,
                             "" if row.zp_pass_err is None else row.zp_pass_err,
                             "" if row.rt_psnr_db is None else row.rt_psnr_db, "" if row.rt_ssim is None else row.rt_ssim])
    with open(out / "psd.csv", "w", newline="") as f:
        # Tidy: one row per curve and frequency; the native spectrum is size "native".
        writer = csv.writer(f)
        writer.writerow(("size", "interpolation", "backend", "aa", "frequency_cycles_per_native_px", "psd"))
        for k, freq in enumerate(result.frequencies):
            if not math.isnan(result.native_psd[k]):
                writer.writerow(("native", "", "", "", freq, result.native_psd[k]))
        for row in result.rows:
            for freq, value in zip(result.frequencies, row.psd):
                if not math.isnan(value):
                    writer.writerow((row.size_px, row.interpolation, row.backend, row.antialias, freq, value))
    if result.config.figures:
        paths += [figure_spectra(result, out / "spectra.png"), figure_spectrum_ratio(result, out / "spectrum_ratio.png"),
                  figure_zone_plates(result, out / "zoneplate.png")]
    result.files = [str(p) for p in paths]
    with open(out / "spectrum.json", "w") as f:
        json.dump(result.to_json_dict(), f, indent=1)


# --- figures ---------------------------------------------------------------------------------

BACKEND_COLOURS = {"pil": "tab:blue", "tensor": "tab:orange", "opencv": "tab:green"}


def _curve_panels(result: SpectrumResult, path: Path, ratio: bool) -> Path:
    plt = pyplot()
    methods = list(dict.fromkeys(r.interpolation for r in result.rows))
    sizes = list(dict.fromkeys(r.size_px for r in result.rows))
    n_native = min(result.native_size_px)
    fig, axes = plt.subplots(len(methods), len(sizes), figsize=(4.2 * len(sizes), 3.0 * len(methods)),
                             squeeze=False, sharey=True)
    freqs = result.frequencies
    native = result.native_psd
    for i, method in enumerate(methods):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            if not ratio:
                ax.plot(freqs, native, color="black", lw=2.2, label=f"native {n_native} px")
            panel = [r for r in result.rows if r.interpolation == method and r.size_px == size]
            for k, row in enumerate(panel):
                ys = [p / q for p, q in zip(row.psd, native)] if ratio else row.psd
                # Each later line thinner, so identical results (PIL and tensor with antialias) stay visible.
                ax.plot(freqs, ys, color=BACKEND_COLOURS[row.backend], ls="-" if row.antialias else "--",
                        lw=1.2 + 1.6 * (len(panel) - 1 - k) / max(1, len(panel) - 1),
                        label=f"{row.backend}, {'aa' if row.antialias else 'no aa'}")
            new_nyquist = size / n_native / 2
            ax.axvline(0.5, color="grey", ls=":", lw=1)
            if size != n_native:
                ax.axvline(new_nyquist, color="crimson", ls=":", lw=1)
            if ratio:
                ax.axhline(1.0, color="black", lw=0.8)
                ax.set_xlim(0, min(0.5, new_nyquist) * 1.02)
            else:
                ax.set_xlim(0, max(0.5, new_nyquist) * 1.02)
            if ratio:
                log_axis(ax, "y", [0.05, 0.1, 0.2, 0.5, 1, 2, 5])
            else:
                ax.set_yscale("log")
            ax.set_title(f"{method}, {n_native} -> {size} px", fontsize=9)
            if i == len(methods) - 1:
                ax.set_xlabel("frequency (cycles per native px)")
            if j == 0:
                ax.set_ylabel("resized / native power" if ratio else "power (grey level$^2$ px$^2$)")
            ax.legend(loc="lower left", fontsize=7)
    what = ("power of the resized images over the native power, per frequency (1 = unchanged; below: blur; "
            "above: aliases or overshoot)" if ratio else "radially averaged power spectrum of luma, mean over images")
    fig.suptitle(fitted(fig, f"{what}\ndotted: native Nyquist (grey), resized Nyquist (red)", 9), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def figure_spectra(result: SpectrumResult, path: Path) -> Path:
    return _curve_panels(result, path, ratio=False)


def figure_spectrum_ratio(result: SpectrumResult, path: Path) -> Path:
    return _curve_panels(result, path, ratio=True)


def figure_zone_plates(result: SpectrumResult, path: Path) -> Path:
    """Rows: variants; columns: sizes. Each cell is Z x Z screen pixels: a downsampled plate is
    magnified with square pixels, an upsampled one shows its top-left Z x Z at 1:1 (the corner,
    where the rings are finest), so the figure adds no resampling of its own."""
    plt = pyplot()
    z = result.zone_plate_px
    sizes = list(dict.fromkeys(r.size_px for r in result.rows))
    variants = list(dict.fromkeys(Variant(r.interpolation, r.backend, r.antialias) for r in result.rows))
    n_native = min(result.native_size_px)
    dpi, label_px, title_px = 100, 190, 50
    width = (label_px + z * len(sizes) + 10 * len(sizes)) / dpi
    height = (title_px + (z + 30) * (len(variants) + 1)) / dpi
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    cell_w, cell_h = z / dpi / width, z / dpi / height

    def cell(row: int, col: int):
        left = (label_px + col * (z + 10)) / dpi / width
        bottom = 1 - (title_px + (row + 1) * (z + 30) - 8) / dpi / height
        ax = fig.add_axes([left, bottom, cell_w, cell_h])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        return ax

    ax = cell(0, 0)
    ax.imshow(result.zone_plates["native"][0, 0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(f"native zone plate, {z} px (0.5 cycles/px at the corners)", fontsize=8, loc="left")
    for row, v in enumerate(variants, start=1):
        for col, size in enumerate(sizes):
            img = result.zone_plates[(size, v)][0, 0]
            ax = cell(row, col)
            zp_size = img.shape[-1]
            if zp_size > z:
                ax.imshow(img[:z, :z].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                note = f"top-left {z} px at 1:1"
            else:
                ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest",
                          extent=(0, zp_size, zp_size, 0))
                note = "magnified"
                if zp_size < z:
                    # Where the rings reach the new Nyquist: outside it an ideal resize is flat grey.
                    # f(r) = 0.5 r / (z / sqrt 2) meets 0.5 zp_size / z at r = zp_size / sqrt 2 native px.
                    radius = zp_size / math.sqrt(2) * zp_size / z
                    ax.add_patch(plt.Circle((zp_size / 2, zp_size / 2), radius, fill=False, color="red", lw=0.8, ls="--"))
                    ax.set_xlim(0, zp_size)
                    ax.set_ylim(zp_size, 0)
            stat = next(r for r in result.rows if r.size_px == size and Variant(r.interpolation, r.backend, r.antialias) == v)
            alias = "" if stat.zp_alias is None else f", alias {stat.zp_alias:.2f}"
            ax.set_title(f"{n_native} -> {size} px ({zp_size} px, {note}){alias}", fontsize=7, loc="left")
            if col == 0:
                ax.set_ylabel(v.label.replace("/", "\n"), fontsize=9, rotation=0, ha="right", va="center", labelpad=8)
    fig.suptitle("Zone plate through each resize. Red dashed circle: where the rings reach the new Nyquist;\n"
                 "outside it an ideal downsample is flat grey, and any pattern there is aliasing.",
                 fontsize=9, x=0.02, ha="left", y=1 - 4 / dpi / height, va="top")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
