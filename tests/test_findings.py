import math

import numpy as np
import pytest

from resizelab.analysis.findings import (CLAIMS, CLAIMS_BY_KEY, CONTRADICTED, NOT_MEASURED, NOT_RESOLVED, SUPPORTED, AccuracyRecord, ProbeRecord,
                                SignalMeasures, accuracy_findings, difference, probe_findings, signal_findings)

NATIVE = 32


def records(means: dict, seeds: int, sd: float, seed_offsets=None, rng_seed: int = 0) -> list[AccuracyRecord]:
    """One run per (size, method) and seed: mean + the seed's shared offset + independent noise of sd."""
    rng = np.random.default_rng(rng_seed)
    offsets = seed_offsets if seed_offsets is not None else [0.0] * seeds
    return [AccuracyRecord(size, method, aa, s, mean + offsets[s] + rng.normal(0, sd))
            for (size, method, aa), mean in means.items() for s in range(seeds)]


def verdicts(findings) -> dict[str, str]:
    return {f.claim.key: f.verdict for f in findings}


def study(native, up, down, nearest_down, nearest_up, bicubic_down, bicubic_up):
    return {(NATIVE, "bilinear", True): native, (64, "bilinear", True): up, (16, "bilinear", True): down,
            (16, "nearest", False): nearest_down, (64, "nearest", False): nearest_up,
            (16, "bicubic", True): bicubic_down, (64, "bicubic", True): bicubic_up}


def test_accuracy_claims_clearly_supported():
    found = accuracy_findings(records(study(80, 76, 68, 60, 73, 69, 76.5), seeds=5, sd=0.3), NATIVE)
    assert verdicts(found) == {"method": SUPPORTED, "nearest": SUPPORTED, "upsample": SUPPORTED, "downsample": SUPPORTED}
    up = next(f for f in found if f.claim.key == "upsample")
    assert up.deciding.case == "32 px - 64 px" and up.deciding.value == pytest.approx(4, abs=0.5) and up.deciding.n == 5
    assert up.deciding.how == "paired t over seeds" and up.deciding.low > 0


def test_accuracy_claims_clearly_contradicted():
    # 64 px beats the native size, 16 px beats 64 px, nearest beats every other method.
    found = verdicts(accuracy_findings(records(study(76, 80, 84, 90, 88, 83, 79), seeds=5, sd=0.3), NATIVE))
    assert found == {"method": SUPPORTED, "nearest": CONTRADICTED, "upsample": CONTRADICTED, "downsample": CONTRADICTED}
    # Every method within a fraction of a point, tightly measured: the method does not matter by a point.
    same = verdicts(accuracy_findings(records(study(80, 76, 68, 68, 76, 68, 76), seeds=5, sd=0.05), NATIVE))
    assert same["method"] == CONTRADICTED and same["nearest"] == NOT_RESOLVED
    # A difference that is real but under a point is not "significant" in the claim's sense either.
    small = verdicts(accuracy_findings(records(study(80, 76, 68, 67.6, 75.6, 68.3, 76), seeds=5, sd=0.05), NATIVE))
    assert small["method"] == CONTRADICTED and small["nearest"] == SUPPORTED


def test_accuracy_noise_is_not_resolved():
    found = accuracy_findings(records(study(*[70] * 7), seeds=3, sd=3.0, rng_seed=1), NATIVE)
    assert set(verdicts(found).values()) == {NOT_RESOLVED}


def test_pairing_by_seed_resolves_what_unpaired_seeds_cannot():
    # Large seed-to-seed swings shared by both configurations, a steady 1-point gap between them.
    offsets = [-6.0, 4.0, -2.0, 7.0, -3.0]
    a = {s: 70 + offsets[s] + 1.0 + 0.1 * (-1) ** s for s in range(5)}
    b = {s: 70 + offsets[s] for s in range(5)}
    paired = difference(a, b, 0.95, "a - b")
    unpaired = difference(a, {s + 10: v for s, v in b.items()}, 0.95, "a - b")
    assert paired.how == "paired t over seeds" and paired.low > 0.5 and paired.high < 1.5
    assert unpaired.how == "Welch t over seeds" and unpaired.low < 0 < unpaired.high
    assert paired.value == pytest.approx(unpaired.value)


def test_missing_runs_are_not_measured_and_one_seed_is_not_resolved():
    only_native = accuracy_findings(records({(NATIVE, "bilinear", True): 80}, seeds=3, sd=1), NATIVE)
    assert set(verdicts(only_native).values()) == {NOT_MEASURED} and all(f.note for f in only_native)
    one_seed = verdicts(accuracy_findings(records(study(80, 70, 60, 50, 65, 61, 71), seeds=1, sd=0), NATIVE))
    assert set(one_seed.values()) == {NOT_RESOLVED}


def native_ring(n: int = 200) -> np.ndarray:
    """Per image, the energy of a low and a high ring of the native spectrum."""
    total = np.random.default_rng(99).uniform(100, 200, n)
    return np.stack([total * 0.7, total * 0.3], axis=1)


def signal(factor_hi: float, noise: float, added: float = 0.0, n: int = 200, seed: int = 0) -> SignalMeasures:
    """A resize that scales the images' fine-detail energy by factor_hi (per-image noise of sd `noise`)
    and puts `added` of the output's energy above the native Nyquist."""
    rng = np.random.default_rng(seed)
    native_hi = rng.uniform(5, 15, n)
    hi = native_hi * np.clip(factor_hi + rng.normal(0, noise, n), 0, None)
    ring = native_ring(n) * np.array([1.0, factor_hi])
    return SignalMeasures(ring, hi, native_hi, ring.sum(1) * added, ring.sum(1))


def test_signal_claims_supported_contradicted_and_unresolved():
    blurred = {(16, "bilinear"): signal(0.4, 0.05), (64, "bilinear"): signal(0.5, 0.05, added=0.03),
               (16, "bicubic"): signal(0.55, 0.05, seed=0), (64, "bicubic"): signal(0.7, 0.05, added=0.02)}
    found = {f.claim.key: f for f in signal_findings(blurred, native_ring(), NATIVE)}
    assert {k: f.verdict for k, f in found.items()} == {"frequency": SUPPORTED, "blend": SUPPORTED, "artifacts": SUPPORTED,
                                                        "blur": SUPPORTED, "bicubic": SUPPORTED}
    blend = found["blend"].deciding
    assert blend.value == pytest.approx(0.6, abs=0.02) and blend.low < blend.value < blend.high and blend.n == 200
    # Nothing attenuated (even sharpened), nothing added above Nyquist, bicubic softer than bilinear.
    untouched = {(16, "bilinear"): signal(1.2, 0.02), (64, "bilinear"): signal(1.0, 0.001),
                 (16, "bicubic"): signal(1.0, 0.02), (64, "bicubic"): signal(0.9, 0.001)}
    found = {f.claim.key: f.verdict for f in signal_findings(untouched, native_ring(), NATIVE)}
    assert found == {"frequency": CONTRADICTED, "blend": CONTRADICTED, "artifacts": CONTRADICTED, "blur": CONTRADICTED,
                     "bicubic": CONTRADICTED}
    # Attenuation near the threshold, buried in per-image noise.
    noisy = {(16, "bilinear"): signal(0.95, 0.8, n=30), (64, "bilinear"): signal(0.95, 0.8, added=0.01, n=30),
             (16, "bicubic"): signal(0.95, 0.8, n=30, seed=1), (64, "bicubic"): signal(0.95, 0.8, n=30, seed=2)}
    found = {f.claim.key: f.verdict for f in signal_findings(noisy, native_ring(30), NATIVE)}
    assert found["blend"] == found["blur"] == found["bicubic"] == NOT_RESOLVED


def probe(seed: int, size: int, stem: float, pooled: float, shift: float) -> ProbeRecord:
    blocks = {f"layer{i}.0": 0.5 + 0.1 * i for i in range(1, 5)}
    return ProbeRecord(seed, size, {"stem": stem, "pooled": pooled}, blocks, {b: r * shift for b, r in blocks.items()})


def test_probe_claims_supported_contradicted_and_unresolved():
    drift = [probe(s, size, 0.95 + 0.005 * s, 0.4 + 0.02 * s, 1.5 - 0.01 * s) for s in range(3) for size in (16, 64)]
    assert {f.claim.key: f.verdict for f in probe_findings(drift)} == {"cascade": SUPPORTED, "residual": SUPPORTED}
    absorbed = [probe(s, size, 0.6 + 0.01 * s, 0.95 - 0.01 * s, 1.01 + 0.002 * s) for s in range(3) for size in (16, 64)]
    assert {f.claim.key: f.verdict for f in probe_findings(absorbed)} == {"cascade": CONTRADICTED, "residual": CONTRADICTED}
    noise = [probe(s, 16, 0.8, 0.8 + d, m) for s, (d, m) in enumerate([(-0.2, 1.3), (0.25, 0.9), (0.05, 1.05)])]
    assert {f.claim.key: f.verdict for f in probe_findings(noise)} == {"cascade": NOT_RESOLVED, "residual": NOT_RESOLVED}


def test_each_claim_is_decided_at_its_own_threshold():
    """A case whose interval lies just above a claim's threshold supports it, just below contradicts it, and one
    straddling it leaves it open: the verdict rests on the number each claim states, not on a shared constant."""
    from resizelab.analysis.findings import Estimate, decide, decide_any_difference

    assert [c.number for c in CLAIMS] == list(range(1, 12))
    for c in CLAIMS:
        rule = decide_any_difference if c.key == "method" else decide
        case = lambda low, high: Estimate("case", (low + high) / 2, low, high, 3, "t over seeds")  # noqa: E731
        above, below, straddle = (c.threshold + 0.001, c.threshold + 0.01), (c.threshold - 0.01, c.threshold - 0.001), \
            (c.threshold - 0.01, c.threshold + 0.01)
        if c.key == "method":  # any pair beyond +-threshold supports; all within +-threshold contradict
            below = (-c.threshold + 0.001, c.threshold - 0.001)
        assert rule(c, [case(*above)]).verdict == SUPPORTED, c.key
        assert rule(c, [case(*below)]).verdict == CONTRADICTED, c.key
        assert rule(c, [case(*straddle)]).verdict == NOT_RESOLVED, c.key
        assert f"{c.threshold:g}" in c.measure or c.key in ("residual", "method"), (c.key, c.measure)


def test_signal_measures_are_the_spectrum_commands_numbers(tmp_path):
    from resizelab.training.data import balanced_subset, load_dataset
    from resizelab.analysis.findings import added_energy, detail_lost, measure_signal
    from resizelab.analysis.spectrum import SpectrumConfig, run_spectrum

    from conftest import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=6)
    data = f"imagefolder:{root}"
    spectrum = run_spectrum(SpectrumConfig(data=data, sizes=(16, 64), interpolations=("bilinear", "bicubic"), antialias=(True,),
                                           backends=("tensor",), out=str(tmp_path / "s"), figures=False))
    dataset = load_dataset(data)
    images = dataset.test_images[balanced_subset(dataset.test_labels, 500)]
    measures, _ = measure_signal(images, dataset.native_size, [16, 64], ["bilinear", "bicubic"], "tensor")
    everything = np.arange(len(images))
    # Every (size, method) of the grid is compared, an upsample among them: the loop below has something to check.
    assert sorted((r.size_px, r.interpolation, r.direction) for r in spectrum.rows) == [
        (16, "bicubic", "down"), (16, "bilinear", "down"), (64, "bicubic", "up"), (64, "bilinear", "up")]
    for row in spectrum.rows:
        m = measures[(row.size_px, row.interpolation)]
        assert 1 - detail_lost(m)(everything) == pytest.approx(row.kept_hi, rel=1e-9)
        if row.direction == "up":
            assert added_energy(m)(everything) == pytest.approx(row.added, rel=1e-9)


@pytest.mark.slow  # a whole findings study, probes included
def test_a_findings_study_reports_a_verdict_on_every_claim(tmp_path):
    """A tiny real study (native 16 px images, 8 and 32 px, nearest and bicubic at 8, two seeds, weights saved): every row is measured."""
    import json

    from resizelab.report.writer import ReportConfig, write_report
    from resizelab.sweeps.plan import expand
    from resizelab.sweeps.runner import SweepOptions, run_sweep

    from conftest import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", n_train=6, n_val=4, size=16)
    db = str(tmp_path / "r.db")
    base = dict(data=f"imagefolder:{root}", weights="none", epochs=1, lr=0.05, precision="fp32", backend="tensor", save_weights=True)
    # Bicubic too: claim 8 is measured only where a run used it.
    variants = [{"size": 16}, {"size": 8}, {"size": 32}, {"size": 8, "interpolation": "nearest"}, {"size": 8, "interpolation": "bicubic"}]
    plan = expand(base, seeds=[0, 1], variants=variants, name="mini")
    assert len(run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True).ran) == 10
    out = write_report(ReportConfig(db=db, sweep="mini", out=str(tmp_path / "rep")))
    found = json.loads((out / "findings.json").read_text())["findings"]
    assert [f["claim"]["number"] for f in found] == list(range(1, 12))
    allowed = {SUPPORTED, CONTRADICTED, NOT_RESOLVED}
    assert all(f["verdict"] in allowed for f in found), [(f["claim"]["key"], f["verdict"], f["note"]) for f in found]
    by_key = {f["claim"]["key"]: f for f in found}
    assert by_key["cascade"]["deciding"]["n"] == 2 and by_key["cascade"]["deciding"]["how"] == "t over seeds"
    assert by_key["upsample"]["deciding"]["how"] == "paired t over seeds" and by_key["frequency"]["deciding"]["n"] == 12
    assert len(list((out / "probe").glob("*/probe.json"))) == 4  # two seeds' 16 px models, 8 and 32 px input
    md = (out / "report.md").read_text()
    assert "## Findings" in md and md.count("| not resolved at this n |") + md.count("| supported |") + md.count("| contradicted |") == 11
    html = (out / "report.html").read_text()
    assert "<h2>Findings</h2>" in html and html.count('<td class="num">11</td>') == 1
    for name in ("per_class_vs_size.png", "confusion_per_size.png"):
        assert (out / name).stat().st_size > 0
    # The store copied without its weights folder: the report is still written, the probe rows say why they are not measured.
    import shutil

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(db, moved / "r.db")
    out = write_report(ReportConfig(db=str(moved / "r.db"), sweep="mini", out=str(moved / "rep")))
    by_key = {f["claim"]["key"]: f for f in json.loads((out / "findings.json").read_text())["findings"]}
    for key in ("cascade", "residual"):
        assert by_key[key]["verdict"] == NOT_MEASURED and "saved weights are not in" in by_key[key]["note"]
    assert (out / "report.html").is_file() and "| 2 seeds |" in (out / "report.md").read_text()


@pytest.mark.slow  # a whole findings study (trainings, spectra, report), as the ResNet one above
def test_findings_of_a_mobilenet_study_probe_its_stages_and_say_residual_is_not_measured(tmp_path):
    """The probe hooks a mobilenet_v2's `features` stages (CKA cascade measured); its inverted residuals are not blocks
    whose branch and skip it can name, so that row says not measured, and why."""
    import json

    from resizelab.report.writer import ReportConfig, write_report
    from resizelab.sweeps.plan import expand
    from resizelab.sweeps.runner import SweepOptions, run_sweep

    from conftest import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", n_train=4, n_val=2, size=16)
    db = str(tmp_path / "r.db")
    base = dict(data=f"imagefolder:{root}", arch="mobilenet_v2", weights="none", epochs=1, precision="fp32", save_weights=True)
    plan = expand(base, seeds=[0], variants=[{"size": 16}, {"size": 8}], name="mobile")
    assert len(run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True).ran) == 2
    # Written from a store that already holds the runs, as `resizelab report` does.
    out = write_report(ReportConfig(db=db, sweep="mobile", out=str(tmp_path / "rep")))
    by_key = {f["claim"]["key"]: f for f in json.loads((out / "findings.json").read_text())["findings"]}
    assert by_key["cascade"]["verdict"] != NOT_MEASURED and by_key["cascade"]["cases"]
    assert by_key["residual"]["verdict"] == NOT_MEASURED and "no residual blocks identified in mobilenet_v2" in by_key["residual"]["note"]
    assert by_key["frequency"]["verdict"] != NOT_MEASURED  # the claims that need no probe still have their verdicts
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "no residual blocks identified" in (out / "report.md").read_text()


def _group(size, method, aa=True, limit_test=None, seeds=(0, 1), acc=50.0):
    from resizelab.store.runs import Group

    config = dict(data="synthetic:60:80", data_dir=None, backend="pil", arch="resnet18", stem="imagenet", weights="none",
                  epochs=1, size=size, interpolation=method, antialias=aa, limit_test=limit_test)
    runs = [{"config_hash": f"{size}-{method}-{s}", "config": {**config, "seed": s}, "test_accuracy": acc + s,
             "result": {"input_shape": [size or 32]}} for s in seeds]
    return Group(config, runs, {})


def test_claims_about_what_no_run_used_are_not_measured_and_signal_images_honour_limit_test(tmp_path):
    """A sweep of nearest and bilinear only, at 16 px, with --limit-test 40: the bicubic claim is not decided from a
    bicubic resize no run used, nor the upsampling claims from a size no run used; the spectra are of the runs' 40
    test images, not of SIGNAL_IMAGES."""
    from resizelab.analysis.findings import compute_findings, rows

    groups = [_group(None, "bilinear", limit_test=40), _group(16, "bilinear", limit_test=40), _group(16, "nearest", False, 40)]
    result = compute_findings(groups, str(tmp_path / "r.db"), tmp_path / "out")
    by_key = {f.claim.key: f for f in result.findings}
    assert result.signal_images == 40 and by_key["frequency"].deciding.n == 40 and by_key["blend"].deciding.n == 40
    assert by_key["bicubic"].verdict == NOT_MEASURED and by_key["bicubic"].note == "no run used bicubic"
    for key in ("artifacts", "blur"):
        assert by_key[key].verdict == NOT_MEASURED and "no run used an upsampled size" in by_key[key].note
    assert {r["number"]: r["verdict"] for r in rows(result)}["8"] == "not measured (no run used bicubic)"
    # Bicubic without antialias (tensor backend) is not the claim's resize either.
    tensor = [_group(None, "bilinear"), _group(16, "bilinear"), _group(16, "bicubic", False)]
    for g in tensor:
        g.config["backend"] = "tensor"
        for r in g.runs:
            r["config"]["backend"] = "tensor"
    found = {f.claim.key: f for f in compute_findings(tensor, str(tmp_path / "r.db"), tmp_path / "out2").findings}
    assert found["bicubic"].note == "no run used bicubic with antialias" and found["blend"].verdict != NOT_MEASURED
    # No run of the study's resize at a resized size: no signal claim is measured.
    nearest_only = [_group(None, "bilinear"), _group(16, "nearest", False)]
    found = {f.claim.key: f for f in compute_findings(nearest_only, str(tmp_path / "r.db"), tmp_path / "out3").findings}
    assert all(found[c.key].verdict == NOT_MEASURED and "no run used bilinear" in found[c.key].note
               for c in CLAIMS if c.source == "signal")
    assert found["nearest"].verdict == NOT_MEASURED  # nearest and no other method at 16 px


def test_an_interval_is_shown_with_the_decimals_that_tell_it_from_the_threshold():
    """0.105 [0.0954, 0.115] against ln 1.1 = 0.0953 clears it; at three decimals it would read [0.095, 0.115], below."""
    from resizelab.analysis.findings import Estimate, Finding, FindingsResult, effect_text, rows, telling_digits

    claim = CLAIMS_BY_KEY["residual"]
    e = Estimate("16 px input", 0.105, 0.0954, 0.115, 3, "t over seeds")
    text = effect_text(Finding(claim, SUPPORTED, e, [e], 0.95))
    low = float(text.split("[")[1].split(",")[0])
    assert low > claim.threshold and text == "16 px input: 0.1050 [0.0954, 0.1150]"
    assert "0.0954" in rows(FindingsResult([Finding(claim, SUPPORTED, e, [e], 0.95)], 32, "", 0))[0]["cases"]
    # Far from the threshold: the usual three decimals; points: one decimal unless 0.96 would read as 1.0.
    assert telling_digits([0.2, 0.3], [math.log(1.1)], 3) == 3
    assert telling_digits([0.96, 2.5], [1.0, -1.0], 1) == 2
    assert telling_digits([-0.04, 0.5], [0.0], 1) == 2  # -0.04 at one decimal is -0.0: not visibly below zero


def test_a_case_without_an_interval_says_so_in_words_not_nan():
    from resizelab.analysis.findings import Estimate, Finding, FindingsResult, rows

    claim = CLAIMS_BY_KEY["residual"]
    one = Estimate("16 px input", 0.103, math.nan, math.nan, 1, "t over seeds")
    cases = rows(FindingsResult([Finding(claim, NOT_RESOLVED, one, [one], 0.95)], 32, "", 0))[0]["cases"]
    assert cases == "16 px input: 0.103 (no interval: too few seeds)" and "nan" not in cases
