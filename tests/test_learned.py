"""Learned resizers (training.learned): their size and cost as documented, gradients, learning, the fairness rule,
the refusals, and a stored learned run served with and without its resizer."""

from __future__ import annotations

import pytest
import torch

from resizelab.analysis.serve import ServeConfig, serve
from resizelab.analysis.spectrum import SpectrumConfig, run_spectrum
from resizelab.core.config import RunConfig
from resizelab.core.errors import ConfigError
from resizelab.store.database import Store, new_owner_id
from resizelab.store.weights import complete_run
from resizelab.training.data import load_dataset, subset
from resizelab.training.engine import Run, train
from resizelab.training.learned import (ResizedModel, build_resizer, fixed_resize, resizer_macs, resizer_params)
from resizelab.training.models import count_macs
from resizelab.training.pipeline import to_nhwc
from resizelab.training.planning import run_hash
from resizelab.training.resize import ResizeCache, resize

# The numbers docs/learned-resizers.md states.
DOCUMENTED_PARAMS = {"talebi": 12_083, "muller": 4}
DOCUMENTED_MACS_32_TO_16 = {"talebi": 5_042_176, "muller": 38_400}


@pytest.mark.parametrize("method", ["talebi", "muller"])
def test_parameter_count_and_macs_are_the_documented_ones(method):
    resizer = build_resizer(method, 16, True)
    assert sum(p.numel() for p in resizer.parameters()) == resizer_params(method) == DOCUMENTED_PARAMS[method]
    assert count_macs(resizer, (3, 32, 32)) == resizer_macs(method, (32, 32), 16) == DOCUMENTED_MACS_32_TO_16[method]
    # Other shapes follow the same formula (a non-square source, an upsample).
    assert count_macs(build_resizer(method, 24, True), (3, 40, 64)) == resizer_macs(method, (40, 64), 24)
    assert count_macs(build_resizer(method, 64, True), (3, 32, 32)) == resizer_macs(method, (32, 32), 64)


@pytest.mark.parametrize("method", ["talebi", "muller"])
def test_output_is_the_target_size_and_the_gradient_reaches_every_resizer_parameter(method):
    torch.manual_seed(0)
    resizer = build_resizer(method, 16, True)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 24, 4))
    model = ResizedModel(resizer, backbone)
    x = torch.randn(8, 3, 32, 48)
    assert resizer(x).shape == (8, 3, 16, 24)
    torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 4).backward()
    for name, p in resizer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_muller_starts_as_exactly_the_bilinear_resize_it_wraps():
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(build_resizer("muller", 16, True)(x), fixed_resize(x, 16, True))


@pytest.mark.parametrize("bad, message", [
    (dict(backend="pil"), "not available with backend 'pil'"),
    (dict(backend="opencv"), "not available with backend 'opencv'"),
    (dict(size=None), "needs --size PX"),
    (dict(test_size=24), "cannot be produced"),
    (dict(test_size="native"), "cannot be produced"),
    (dict(test_sizes=(16, 32)), "cannot be produced"),
    (dict(test_interpolation="bicubic"), "part of the trained model"),
])
@pytest.mark.parametrize("method", ["talebi", "muller"])
def test_an_option_a_learned_resizer_cannot_honour_is_one_line(method, bad, message):
    with pytest.raises(ConfigError) as e:
        RunConfig(**{"data": "synthetic", "size": 16, "interpolation": method, **bad})
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="learned resizer"):
        resize(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 16, method, True, "tensor")


def test_spectrum_measures_a_learned_resizer_only_from_a_stored_run():
    with pytest.raises(ConfigError, match="--run HASH") as e:
        SpectrumConfig(data="synthetic", interpolations=("bilinear", "talebi"))
    assert "\n" not in str(e.value)


def test_every_arm_is_fed_the_same_source_tensors(tmp_path, monkeypatch):
    """The fairness rule: a learned arm trains on the very source tensors each fixed arm resizes, never more pixels."""
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(tmp_path))
    dataset = load_dataset("synthetic:60:40@64", None)
    source = subset(dataset, 40, 20, seed=0)
    for method in ("bilinear", "bicubic", "muller", "talebi"):
        run = Run(RunConfig(data="synthetic:60:40@64", size=16, interpolation=method, weights="none", limit_train=40,
                            limit_test=20, precision="fp32"), dataset=dataset, cache=ResizeCache(disk=False)).setup()
        assert torch.equal(run.dataset.train_images, source.train_images)
        assert torch.equal(run.dataset.test_images, source.test_images)
        if method in ("muller", "talebi"):
            assert torch.equal(run.data.images.cpu(), to_nhwc(source.train_images))  # resized inside the model
            assert torch.equal(run.test_images(16).cpu(), to_nhwc(source.test_images))
            assert run.model.resizer.size == 16 and run.data.shape == (16, 16)
        else:
            for _ in run.data.epoch(run.config.batch_size):  # a cold cache resizes the split in the first epoch
                pass
            assert torch.equal(run.data.images.cpu(), to_nhwc(resize(source.train_images, 16, method, True, "tensor")))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["talebi", "muller"])
def test_a_learned_resizer_trains_learns_and_its_stored_run_serves_its_own_accuracy(method, tmp_path, monkeypatch):
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig(data="synthetic:300:100", weights="none", size=24, interpolation=method, epochs=2, lr=0.01,
                    precision="fp32", batch_size=32, save_weights=True, serve=("pil-bilinear", "tensor-bilinear-aa"))
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.register([cfg])
        owner = new_owner_id()
        assert store.claim(run_hash(cfg), owner)
        result = train(cfg, progress=False)
        complete_run(store, result, owner)
    assert result.test_accuracy > 2 * 10  # ten classes: twice chance
    cost = result.resizer
    assert cost["params"] == DOCUMENTED_PARAMS[method] and cost["macs_per_image"] == resizer_macs(method, (32, 32), 24)
    assert result.params == cost["backbone_params"] + cost["params"]
    assert result.macs_per_image == cost["backbone_macs_per_image"] + cost["macs_per_image"]
    assert cost["serving_images_per_second"] > 0 and cost["wraps_serving_images_per_second"] > 0
    # The run's own --serve entries are the backbone without its resizer, behind plain recipes.
    assert {e.recipe for e in result.serving} == {"pil-bilinear", "tensor-bilinear-aa"}
    assert not any(e.baseline for e in result.serving)

    served = serve(ServeConfig(run=result.config_hash[:8], db=str(db), serve=("tensor-bilinear-aa",)))
    (with_it,) = [e for e in served.evals if e.baseline]
    assert with_it.recipe.startswith(method) and with_it.size_px == 24
    assert with_it.accuracy == result.test_accuracy == served.run_test_accuracy
    assert with_it.per_class_accuracy == result.per_class_accuracy
    (without,) = [e for e in served.evals if not e.baseline]
    run_without = [e for e in result.serving if e.recipe == "tensor-bilinear-aa"][0]
    assert without.accuracy == run_without.accuracy

    # spectrum --run: the trained resizer's response beside the bilinear it wraps, at its size and at another.
    out = tmp_path / "spectrum"
    out.mkdir()
    spec = run_spectrum(SpectrumConfig(data="synthetic:300:100", sizes=(24, 12), interpolations=("bilinear",), backends=("tensor",),
                                       antialias=(True,), run=result.config_hash[:8], db=str(db), limit=40, out=str(out),
                                       figures=False))
    rows = {(r.size_px, r.interpolation): r for r in spec.rows}
    assert set(rows) == {(s, m) for s in (24, 12) for m in ("bilinear", method)}
    for s in (24, 12):
        learned, fixed = rows[(s, method)], rows[(s, "bilinear")]
        assert learned.zp_alias is not None and learned.kept > 0
        assert learned.kept != fixed.kept  # the trained resizer changed the signal the bilinear resize alone gives


def _group(method: str, accs: list[float], macs: int, resizer: dict | None = None):
    from resizelab.store.runs import Group

    config = {"data": "synthetic", "size": 16, "interpolation": method}
    runs = [{"config": {**config, "seed": s}, "test_accuracy": a, "macs_per_image": macs, "images_per_second": 100.0,
             "result": {"resizer": resizer or {}}} for s, a in enumerate(accs)]
    return Group(config, runs, {})


def test_learned_verdicts_pair_by_seed_and_charge_the_resizers_macs(tmp_path):
    from resizelab.analysis.learnedverdicts import learned_verdicts, write_learned

    cost = {"params": 4, "macs_per_image": 38_400, "serving_images_per_second": 50.0, "wraps_serving_images_per_second": 100.0}
    groups = [_group("bicubic", [40.0, 50.0, 60.0], 1_000_000),
              _group("muller", [45.0, 55.2, 64.9], 1_038_400, cost),
              _group("talebi", [30.0, 40.1, 49.8], 1_500_000, dict(cost, params=12_083))]
    verdicts = {v.learned: v for v in learned_verdicts(groups)}
    assert set(verdicts) == {"muller", "talebi"} and all(v.fixed == "bicubic" and v.seeds == 3 for v in verdicts.values())
    # Seed-to-seed spread is 20 points, but the paired differences barely move: paired, both verdicts resolve.
    assert verdicts["muller"].verdict == "beats" and verdicts["muller"].low > 0
    assert verdicts["talebi"].verdict == "loses to" and verdicts["talebi"].high < 0
    assert verdicts["muller"].extra_macs_percent == pytest.approx(3.84)
    assert verdicts["talebi"].extra_macs_percent == pytest.approx(50.0) and verdicts["talebi"].resizer_params == 12_083
    assert verdicts["muller"].serve_speed_ratio == 0.5
    assert "muller beats bicubic: +5.0 points" in verdicts["muller"].text()
    # Paired differences inside one point either way: a tie, said as one; a wide interval across zero: not resolved.
    tied = learned_verdicts([_group("bicubic", [40.0, 50.0, 60.0], 1), _group("muller", [40.2, 50.1, 60.3], 1, cost)])[0]
    assert tied.verdict == "ties with" and "muller ties with bicubic (within ±1 point)" in tied.text()
    open_ = learned_verdicts([_group("bicubic", [40.0, 50.0, 60.0], 1), _group("muller", [48.0, 45.0, 66.0], 1, cost)])[0]
    assert open_.verdict == "not resolved against" and "is not resolved at 3 seeds" in open_.text()
    assert write_learned(list(verdicts.values()), tmp_path) == ["learned.csv", "learned.txt"]
    assert (tmp_path / "learned.txt").read_text().count("\n- ") == 2  # one sentence per case
