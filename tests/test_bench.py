from resizelab.bench import BenchConfig, format_bench, run_bench


def test_bench_times_all_three_pipelines_and_reports_ratios():
    cfg = BenchConfig(sizes=(16,), steps=2, windows=1, workers=0, eval_images=64, ablation=True, precision="fp32")
    result = run_bench(cfg)
    row = result.rows[16]
    for name in ("plain", "resizelab", "model-only", "resizelab fp32 NCHW", "resizelab fp32 channels_last"):
        assert row[name].train_images_per_second > 0
    assert row["plain"].time_to_first_step_seconds > 0 and row["resizelab"].eval_images_per_second > 0
    data = result.to_json_dict()
    assert data["sizes"]["16"]["b_over_a"] > 0 and data["machine"]["torch"]
    table = format_bench(result)
    assert "b/a" in table and "b/c" in table and "first step" in table
