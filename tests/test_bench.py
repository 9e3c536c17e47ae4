import pytest

from resizelab.bench import BenchConfig, format_bench, ratio, run_bench
from resizelab.errors import ConfigError


def test_bench_times_all_three_pipelines_and_reports_ratios():
    cfg = BenchConfig(sizes=(16,), steps=2, windows=2, workers=0, eval_images=64, ablation=True, precision="fp32")
    result = run_bench(cfg)
    row = result.rows[16]
    for name in ("plain", "resizelab", "model-only", "other layout", "other 1x1 convs", "all off"):
        assert row[name].train_images_per_second > 0 and len(row[name].windows) == 2
    b = row["resizelab"]
    assert (b.precision, b.channels_last, b.single_window_matmul) == ("fp32", True, True)
    assert (row["other 1x1 convs"].single_window_matmul, row["other layout"].channels_last) == (False, False)
    assert (row["plain"].precision, row["plain"].channels_last, row["plain"].single_window_matmul) == ("fp32", False, False)
    assert row["plain"].time_to_first_step_seconds > 0 and row["resizelab"].eval_images_per_second > 0
    data = result.to_json_dict()
    assert data["sizes"]["16"]["b_over_a"] == pytest.approx(ratio(row, "resizelab", "plain")) and data["machine"]["torch"]
    table = format_bench(result)
    assert "b/a" in table and "b/c" in table and "1st step" in table and "all off" in table


def test_ratio_is_the_median_of_per_round_ratios():
    from resizelab.bench import PipelineTiming

    # The machine halves its speed in round 2: per-round ratios stay 2, medians of rates would not say so.
    row = {"b": PipelineTiming(0, None, None, [200, 100, 210], "fp32", False, True),
           "a": PipelineTiming(0, None, None, [100, 50, 105], "fp32", False, False)}
    assert ratio(row, "b", "a") == 2


def test_bench_config_is_validated():
    with pytest.raises(ConfigError, match="precision"):
        BenchConfig(precision="fp8")
    with pytest.raises(ConfigError, match="sizes"):
        BenchConfig(sizes=(2,))
