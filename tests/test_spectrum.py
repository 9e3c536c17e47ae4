import json
import math

import pytest
import torch

from resizelab.cli import main
from resizelab.training.data import make_synthetic
from resizelab.core.errors import ConfigError
from resizelab.training.resize import resize
from resizelab.analysis.spectrum import (SpectrumConfig, energy_above_native_nyquist, luma, power_spectrum, psnr_db, radial_psd,
                                run_spectrum, ssim, zone_plate, zone_plate_scores)

from conftest import write_imagefolder


def grating(n: int, cycles: int) -> torch.Tensor:
    """A grey uint8 1 x 3 x n x n image varying as a cosine of `cycles` periods along x."""
    x = torch.arange(n, dtype=torch.float64)
    row = 127.5 + 100 * torch.cos(2 * math.pi * cycles * x / n)
    return row.round().to(torch.uint8).expand(1, 3, n, n).contiguous()


@pytest.mark.parametrize("size, method", [(32, None), (64, "bicubic"), (16, "bilinear"), (24, "bicubic")])
def test_a_sinusoids_spectrum_peaks_at_its_frequency_in_cycles_per_native_px(size, method):
    img = grating(32, 5)  # 5/32 cycles per native px, below the 16 px Nyquist (8/32)
    out = img if method is None else resize(img, size, method, True, "pil")
    psd = radial_psd(power_spectrum(luma(out)), (32, 32), bins=33)
    assert psd.nan_to_num(-1).argmax().item() == 5
    # The Hann window spreads a sinusoid over its bin and the two beside it, and nowhere else.
    far = torch.cat([psd[1:4], psd[7:]])
    assert psd[5] > 100 * far[~far.isnan()].max()
    # A 16 px image holds nothing above 8/32, a 64 px one up to 32/32.
    assert psd[9:].isnan().all() == (size == 16)
    if size == 64:  # power density is per (cycle/native px)^2, so a faithful upsample keeps its level
        native = radial_psd(power_spectrum(luma(img)), (32, 32), bins=33)
        assert psd[5] / native[5] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("cycles", [3, 8, 14])
def test_power_sums_to_the_variance_and_stays_at_the_sinusoids_frequency(cycles):
    img = luma(grating(32, cycles))
    power = power_spectrum(img)[0]
    assert power.sum().item() == pytest.approx(img.var(unbiased=False).item(), rel=0.01)
    rows, cols = [-1, 0, 1], [c for k in (cycles - 1, cycles, cycles + 1) for c in (k, -k)]
    assert power[rows][:, cols].sum().item() > 0.999 * power.sum().item()


def zp_alias(plate: torch.Tensor, size: int, method: str, antialias: bool, backend: str) -> float:
    return zone_plate_scores(resize(plate, size, method, antialias, backend), plate.shape[-1])[0]


def test_zone_plate_aliasing_nearest_and_unfiltered_above_antialiased_pil():
    plate = zone_plate(128)
    pil = zp_alias(plate, 64, "bilinear", True, "pil")
    assert pil < 0.05  # the triangle widened to the new pixel leaves little beyond the new Nyquist
    assert zp_alias(plate, 64, "nearest", False, "pil") > 0.9  # keeps every sample it takes: all aliased
    assert zp_alias(plate, 64, "bilinear", False, "tensor") > 5 * pil
    assert zp_alias(plate, 64, "bicubic", False, "tensor") > 10 * zp_alias(plate, 64, "bicubic", True, "tensor")
    assert zp_alias(plate, 32, "bilinear", False, "tensor") > zp_alias(plate, 32, "bilinear", True, "tensor")


def test_zone_plate_scores_sample_at_the_output_pixel_centres():
    # At 3x, an output pixel's centre is a native pixel's centre, which nearest copies: the passband
    # is then exact (uint8 rounding aside) and the stopband all aliases.
    plate = zone_plate(96)
    alias, pass_err = zone_plate_scores(resize(plate, 32, "nearest", False, "tensor"), 96)
    assert pass_err < 1e-4 and alias > 0.95


def test_opencv_linear_aliases_though_antialias_was_asked():
    pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'resizelab[opencv]'")
    plate = zone_plate(128)
    for size in (64, 32):
        assert zp_alias(plate, size, "bilinear", True, "opencv") > 5 * zp_alias(plate, size, "bilinear", True, "pil")
    # INTER_AREA averages the whole footprint: at 4x far less aliasing than linear's two taps of four.
    # (At 2x the 2x2 box and linear are the same filter, and a box is a weak prefilter: about 0.25 both.)
    assert zp_alias(plate, 32, "area", True, "opencv") < zp_alias(plate, 32, "bilinear", True, "opencv") / 5


def test_upsampling_artefacts_above_the_native_nyquist():
    images = make_synthetic(16, 0, seed=2).train_images
    added = {m: energy_above_native_nyquist(power_spectrum(luma(resize(images, 64, m, True, "pil"))), (32, 32))
             for m in ("nearest", "bilinear", "bicubic")}
    assert added["nearest"] > 5 * added["bilinear"] > 0
    assert added["nearest"] > 5 * added["bicubic"]
    assert energy_above_native_nyquist(power_spectrum(luma(images)), (32, 32)) == 0


def test_ssim_of_an_image_with_itself_is_one_and_matches_hand_and_reference_values():
    x = luma(make_synthetic(4, 0, seed=3).train_images)
    assert torch.allclose(ssim(x, x), torch.ones(4, dtype=torch.float64), atol=1e-12)
    # Constant images: every window has the same means and no variance, so SSIM is the luminance term.
    c1 = (0.01 * 255) ** 2
    a, b = torch.full((1, 16, 16), 100.0), torch.full((1, 16, 16), 120.0)
    assert ssim(a, b).item() == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), rel=1e-12)
    # A textured pair; the value is scikit-image 0.26's structural_similarity(gaussian_weights=True,
    # sigma=1.5, use_sample_covariance=False, data_range=255), which follows Wang et al.'s code.
    yy, xx = torch.meshgrid(torch.arange(32.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64), indexing="ij")
    p = 128 + 60 * torch.sin(xx / 3.0) + 30 * torch.cos(yy / 5.0)
    q = 0.8 * p + 20 + 10 * torch.sin((xx + yy) / 2.0)
    assert ssim(p[None], q[None]).item() == pytest.approx(0.9165856728200087, abs=1e-9)


def test_psnr():
    x = make_synthetic(2, 0, seed=4).train_images
    assert psnr_db(x, x) == math.inf
    y = (x.int() + 1).clamp(max=255).to(torch.uint8)
    mse = (y.double() - x.double()).square().mean().item()
    assert psnr_db(x, y) == pytest.approx(10 * math.log10(255 ** 2 / mse))


@pytest.mark.slow
def test_run_spectrum_native_round_trip_is_lossless_and_files_are_written(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=5)
    cfg = SpectrumConfig(data=f"imagefolder:{root}", sizes=(16, 32, 64), interpolations=("nearest", "bilinear"),
                         backends=("pil", "tensor"), limit=15, out=str(tmp_path / "out"))
    result = run_spectrum(cfg)
    assert result.images == 15 and result.native_size_px == (32, 32)
    rows = {(r.size_px, r.interpolation, r.backend, r.antialias): r for r in result.rows}
    assert len(rows) == 3 * 5  # nearest x 2 backends, bilinear pil aa, tensor aa and no-aa
    for key, row in rows.items():
        if key[0] == 32:
            assert row.direction == "same" and row.rt_psnr_db == math.inf and row.rt_ssim == pytest.approx(1.0, abs=1e-12)
            assert row.kept == pytest.approx(1.0) and row.zp_alias is None and row.added is None
    assert rows[(16, "nearest", "pil", False)].zp_alias > 5 * rows[(16, "bilinear", "pil", True)].zp_alias
    assert rows[(64, "nearest", "pil", False)].rt_psnr_db == math.inf  # replicate, then take the centres back
    assert rows[(64, "bilinear", "pil", True)].added is not None and rows[(16, "bilinear", "pil", True)].added is None
    out = tmp_path / "out"
    for name in ("spectrum.json", "spectrum.csv", "psd.csv", "spectra.png", "spectrum_ratio.png", "zoneplate.png"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "spectrum.json").read_text())
    assert len(data["rows"]) == 15 and data["rows"][0]["size_px"] == 16
    assert any(r["rt_psnr_db"] == "inf" for r in data["rows"])
    assert (out / "spectrum.csv").read_text().splitlines()[0].startswith("size,dir,interpolation,backend,aa,kept")


def test_variants_are_measured_once_under_the_antialias_that_happens():
    cfg = SpectrumConfig(data="synthetic", interpolations=("nearest", "bilinear", "lanczos"), backends=("pil", "tensor"))
    assert [v.label for v in cfg.variants()] == [
        "nearest/no-aa/pil", "nearest/no-aa/tensor", "bilinear/aa/pil", "bilinear/aa/tensor", "bilinear/no-aa/tensor",
        "lanczos/aa/pil"]



def test_a_method_a_backend_cannot_do_is_said_not_silently_skipped(tmp_path):
    said = []
    cfg = SpectrumConfig(data="synthetic", sizes=(16,), interpolations=("lanczos",), backends=("pil", "tensor"), limit=10,
                         out=str(tmp_path / "out"))
    result = run_spectrum(cfg, progress=said.append)
    assert "lanczos: not measured on the tensor backend, which cannot do it" in said
    assert {(r.interpolation, r.backend) for r in result.rows} == {("lanczos", "pil")}


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": (2,)}, "sizes must be between 4 and 1024; got 2"),
    ({"sizes": ()}, "sizes must list at least one value"),
    ({"interpolations": ("cubic",)}, "interpolation must be one of nearest, bilinear"),
    ({"backends": ("cv2",)}, "backend must be one of pil, tensor, opencv"),
    ({"interpolations": ("lanczos",), "backends": ("tensor",)}, "add backend pil or opencv"),
    ({"antialias": ("yes",)}, "antialias must be true or false"),
    ({"limit": 0}, "limit must be at least 1"),
    ({"data": "imagenet"}, "data must be one of"),
])
def test_config_errors_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SpectrumConfig(**{"data": "synthetic", **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_json_and_bad_flag(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=3)
    assert main(["spectrum", "--data", f"imagefolder:{root}", "--size", "16", "--interpolation", "nearest,bilinear",
                 "--backend", "pil", "--limit", "9", "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["interpolation"], r["antialias"]) for r in data["rows"]] == [("nearest", False), ("bilinear", True)]
    assert main(["spectrum", "--data", f"imagefolder:{root}", "--size", "big"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "resizelab: error: --size: expected a whole number; got 'big'"
