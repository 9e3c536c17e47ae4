import pytest

from resizelab.config import CONFIG_FIELDS, RunConfig, effective_antialias
from resizelab.cli import RUN_OPTIONS
from resizelab.errors import ConfigError


def test_every_config_field_has_a_flag():
    assert {field for field, _, _ in RUN_OPTIONS.values()} == set(CONFIG_FIELDS)


@pytest.mark.parametrize("kwargs, message", [
    ({"interpolation": "cubic"}, "interpolation must be one of nearest, bilinear, bicubic, area, lanczos"),
    ({"interpolation": "lanczos", "backend": "tensor"}, "use backend 'pil' for lanczos"),
    ({"augment": "crop-flip", "backend": "pil"}, "needs backend 'tensor'"),
    ({"size": 2}, "size must be between 4 and 1024"),
    ({"size": "32"}, "size must be a whole number"),
    ({"lr": 0}, "lr must be in (0.0, 10.0]"),
    ({"stem": "cifar", "arch": "mobilenet_v2"}, "stem 'cifar' applies to ResNets"),
    ({"weights": "/nonexistent.pt"}, "is not a file"),
    ({"data": "imagenet"}, "data must be one of"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
    ({"single_window_matmul": "yes"}, "single_window_matmul must be true or false"),
])
def test_invalid_values_are_refused_with_the_valid_ones(kwargs, message):
    with pytest.raises(ConfigError) as info:
        RunConfig(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.from_dict({"sizes": 32})


def test_hash_is_stable_and_ignores_execution_fields():
    a = RunConfig(data="synthetic", size=16)
    assert a.config_hash() == RunConfig(data="synthetic", size=16).config_hash()
    assert a.config_hash() == RunConfig(data="synthetic", size=16, device="cpu", compile=True, eval_batch_size=7,
                                                  channels_last=False, single_window_matmul=False).config_hash()
    assert a.config_hash() != RunConfig(data="synthetic", size=16, seed=1).config_hash()
    assert a.config_hash() != RunConfig(data="synthetic", size=32).config_hash()


def test_effective_antialias_is_recorded_and_deduplicates():
    assert effective_antialias("nearest", "tensor", True) is False
    assert effective_antialias("bilinear", "pil", False) is True  # PIL always filters
    assert effective_antialias("bilinear", "tensor", False) is False
    a = RunConfig(data="synthetic", backend="pil", antialias=False)
    b = RunConfig(data="synthetic", backend="pil", antialias=True)
    assert a.resolved().antialias is True
    assert a.config_hash() == b.config_hash()


def test_resolved_fills_defaults():
    cfg = RunConfig(data="synthetic", size=16, test_sizes=(32, 16, 8)).resolved()
    assert cfg.test_size == 16 and cfg.test_interpolation == "bilinear" and cfg.test_sizes == (8, 32)
