import dataclasses

import pytest

from resizelab.cli import build_parser
from resizelab.core.config import CONFIG_FIELDS, IDENTITY_FIELDS, GridSpec, RunConfig, options, preflight
from resizelab.core.errors import ConfigError
from resizelab.training.resize import effective_antialias
from resizelab.training.planning import run_hash


def test_every_option_is_a_flag_with_its_choices_in_the_help():
    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    flags = {a.dest.removeprefix("opt_"): a for a in run._actions if a.dest.startswith("opt_")}
    assert set(flags) == set(CONFIG_FIELDS)
    assert flags["interpolation"].metavar == "{nearest,bilinear,bicubic,area,lanczos,muller,talebi}"
    assert "(default bilinear)" in flags["interpolation"].help and "(default 0.001)" in flags["lr"].help
    assert all(a.help and not a.metavar.startswith("OPT_") for a in flags.values())


def test_identity_is_declared_with_each_option():
    assert {"device", "compile", "eval_batch_size", "data_dir"}.isdisjoint(IDENTITY_FIELDS)
    assert {"size", "interpolation", "lr", "seed", "precision"} <= IDENTITY_FIELDS
    assert [name for name, _ in options()] == list(CONFIG_FIELDS)


@pytest.mark.parametrize("kwargs, message", [
    ({"interpolation": "cubic"}, "interpolation must be one of nearest, bilinear, bicubic, area, lanczos, muller, talebi; got 'cubic' (did you mean 'bicubic'?)"),
    ({"interpolation": "lanczos", "backend": "tensor"}, "use backend 'pil' for lanczos"),
    ({"augment": "crop-flip", "backend": "pil"}, "needs backend 'tensor'"),
    ({"size": 2}, "size must be between 4 and 1024"),
    ({"size": "32"}, "size must be a whole number"),
    ({"lr": 0}, "lr must be in (0.0, 10.0]"),
    ({"lr": float("nan")}, "lr must be in (0.0, 10.0]; got nan"),
    ({"momentum": float("nan")}, "momentum must be in [0.0, 1.0)"),
    ({"label_smoothing": float("inf")}, "label_smoothing must be in [0.0, 1.0)"),
    ({"label_smoothing": float("nan")}, "label_smoothing must be in [0.0, 1.0); got nan"),
    ({"weight_decay": float("nan")}, "weight_decay must be in"),
    ({"stem": "cifar", "arch": "mobilenet_v2"}, "stem 'cifar' applies to ResNets"),
    ({"data": "imagenet"}, "data must be one of"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
    ({"single_window_matmul": "yes"}, "single_window_matmul must be auto, true or false"),
    ({"graphs": "on"}, "graphs must be one of auto, off, capture, reduce-overhead"),
    ({"graphs": "capture", "compile": True}, "use --graphs reduce-overhead"),
    ({"data": "synthetic:0"}, "N (training images) must be between 10 and 1,000,000"),
    ({"data": "synthetic:50k"}, "expected synthetic:N or synthetic:N:M"),
    ({"test_sizes": 16}, "test_sizes must be a list of sizes"),
    ({"data_dir": 5}, "data_dir must be a non-empty string"),
])
def test_invalid_values_are_refused_with_the_valid_ones(kwargs, message):
    with pytest.raises(ConfigError) as info:
        RunConfig(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_filesystem_checks_are_a_preflight_not_the_constructor(tmp_path):
    cfg = RunConfig(weights="/nonexistent.pt", data=f"imagefolder:{tmp_path / 'missing'}")  # buildable anywhere
    with pytest.raises(ConfigError, match="is not a directory"):
        preflight(cfg)
    with pytest.raises(ConfigError, match="is not a file"):
        preflight(dataclasses.replace(cfg, data="synthetic"))


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.from_dict({"sizes": 32})


def test_hash_is_stable_and_ignores_execution_fields():
    a = RunConfig(weights="none", data="synthetic", size=16, precision="fp32")
    assert run_hash(a) == run_hash(RunConfig(weights="none", data="synthetic", size=16, precision="fp32"))
    # With precision given, these settings change speed and float rounding only (auto is resolved before
    # hashing, and without the single-window matmul auto may resolve to fp32: test_identity.py).
    assert run_hash(a) == run_hash(RunConfig(weights="none", data="synthetic", size=16, precision="fp32", device="cpu", compile=True, eval_batch_size=7,
                                        channels_last=False, single_window_matmul=False))
    assert run_hash(a) != run_hash(RunConfig(weights="none", data="synthetic", size=16, precision="fp32", seed=1))
    assert run_hash(a) != run_hash(RunConfig(weights="none", data="synthetic", size=32, precision="fp32"))


def test_effective_antialias_is_recorded_and_deduplicates():
    assert effective_antialias("nearest", "tensor", True) is False
    assert effective_antialias("bilinear", "pil", False) is True  # PIL always filters
    assert effective_antialias("bilinear", "tensor", False) is False
    a = RunConfig(weights="none", data="synthetic", backend="pil", antialias=False)
    b = RunConfig(weights="none", data="synthetic", backend="pil", antialias=True)
    assert a.resolved().antialias is True
    assert run_hash(a) == run_hash(b)


def test_resolved_fills_defaults():
    cfg = RunConfig(data="synthetic", size=16, test_sizes=(32, 16, 8)).resolved()
    assert cfg.test_size == 16 and cfg.test_interpolation == "bilinear" and cfg.test_sizes == (8, 16, 32)


def test_one_override_rule_for_presets_files_and_flags():
    spec = GridSpec(base={"size": 32, "lr": 0.1}, grid={"interpolation": ["nearest", "bilinear"]},
                    variants=[{"lr": 0.5}], seeds=[0, 1, 2])
    out = spec.override({"lr": 0.2, "size": [16, 64], "interpolation": "bicubic", "seed": 3})
    assert out.base == {"lr": 0.2, "interpolation": "bicubic"} and out.grid == {"size": [16, 64]}
    assert out.variants == [{}] and out.seeds == [3]
    assert spec.override({"seed": [4, 5]}).seeds == [4, 5] and spec.seeds == [0, 1, 2]
