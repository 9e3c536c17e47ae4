import dataclasses

import pytest
import torch

from resizelab.analysis.bench import BenchConfig, format_bench, ratio, recipe_at, resizelab_pipeline, run_bench
from resizelab.core.config import RunConfig
from resizelab.training.data import make_synthetic
from resizelab.training.engine import Run, train
from resizelab.core.errors import ConfigError
from resizelab.training.resize import ResizeCache


@pytest.mark.slow  # the whole bench, all three pipelines timed: the fast tier's costliest test by far
def test_bench_times_all_three_pipelines_and_reports_ratios():
    recipe = RunConfig(data="synthetic", weights="none", precision="fp32", limit_train=200)
    cfg = BenchConfig(run=recipe, sizes=(16,), steps=2, windows=2, workers=0, eval_images=64, ablation=True)
    result = run_bench(cfg)
    row = result.rows[16]
    assert set(row) == {"plain", "resizelab", "model-only", "other layout", "other 1x1 convs", "all off"} | (
        {"other precision"} if "other precision" in row else set())
    for name, timing in row.items():
        # A ResNet-18 step at 16 px runs at hundreds of img/s on 2 cores; > 1 holds on a machine loaded tenfold.
        assert len(timing.windows) == 2 and min(timing.windows) > 1, name
    b = row["resizelab"]
    assert (b.precision, b.channels_last, b.single_window_matmul) == ("fp32", True, True)
    assert (row["other 1x1 convs"].single_window_matmul, row["other layout"].channels_last) == (False, False)
    assert (row["plain"].precision, row["plain"].channels_last, row["plain"].single_window_matmul) == ("fp32", False, False)
    assert row["plain"].time_to_first_step_seconds > 0 and row["resizelab"].eval_images_per_second > 1
    data = result.to_json_dict()
    assert data["sizes"]["16"]["b_over_a"] == pytest.approx(ratio(row, "resizelab", "plain")) and data["machine"]["torch"]
    assert data["config"]["run"]["data"] == "synthetic"
    table = format_bench(result)
    assert "b/a" in table and "b/c" in table and "1st step" in table and "all off" in table


def test_bench_steps_the_very_run_that_train_runs():
    """Column b is an engine Run stepped by Run.step: over one epoch it gives train()'s loss to the last bit."""
    dataset = make_synthetic(200, 40, seed=1)
    recipe = RunConfig(data="synthetic", weights="none", precision="fp32", epochs=1, lr=0.01, deterministic=True, limit_test=40)
    cfg = BenchConfig(run=recipe, sizes=(16,), eval_images=40)
    run_cfg = recipe_at(cfg, dataset, 16)
    pipe = resizelab_pipeline(run_cfg, dataset, ResizeCache(disk=False))
    assert isinstance(pipe.run, Run)
    while pipe.run.steps_in_epoch < pipe.run.steps_per_epoch:  # set-up already took the first step and the warm-up
        pipe.step()
    bench_epoch = pipe.run.end_epoch(0.0)
    trained = train(dataclasses.replace(run_cfg), dataset=dataset, cache=ResizeCache(disk=False), progress=False)
    assert pipe.run.steps_done == trained.epochs[0].images // 32 + (trained.epochs[0].images % 32 > 0)
    assert bench_epoch.train_loss == trained.epochs[0].train_loss and bench_epoch.images == trained.epochs[0].images
    # And evaluation is the same code: the same accuracy from the same weights.
    assert pipe.run.evaluate()[0].accuracy == trained.test_accuracy


@pytest.mark.slow  # a second whole bench, on another recipe and data
def test_bench_honours_the_recipe_and_data(tmp_path):
    from conftest import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", n_train=12, n_val=4)
    recipe = RunConfig(data=f"imagefolder:{root}", weights="none", precision="fp32", optimizer="adamw", lr=0.003)
    result = run_bench(BenchConfig(run=recipe, sizes=(16,), steps=1, windows=1, workers=0, eval_images=8, ablation=False))
    assert result.to_json_dict()["config"]["run"]["optimizer"] == "adamw"
    b = result.rows[16]["resizelab"]
    assert b.train_images_per_second > 0 and len(b.windows) == 1


def test_ratio_is_the_median_of_per_round_ratios():
    from resizelab.analysis.bench import PipelineTiming

    # The machine halves its speed in round 2: per-round ratios stay 2, medians of rates would not say so.
    row = {"b": PipelineTiming(0, None, None, [200, 100, 210], "fp32", False, True),
           "a": PipelineTiming(0, None, None, [100, 50, 105], "fp32", False, False)}
    assert ratio(row, "b", "a") == 2


def test_bench_config_is_validated():
    with pytest.raises(ConfigError, match="precision"):
        RunConfig(precision="fp8")
    with pytest.raises(ConfigError, match="sizes"):
        BenchConfig(sizes=(2,))
    with pytest.raises(ConfigError, match="windows"):
        BenchConfig(windows=0)


def test_torch_is_seeded_per_run():
    # Two Runs of one config build identical models whatever ran before: the seed is the run's own.
    torch.manual_seed(99)
    a = Run(RunConfig(data="synthetic", weights="none", limit_train=32, limit_test=8), dataset=make_synthetic(40, 10)).setup()
    torch.rand(5)
    b = Run(RunConfig(data="synthetic", weights="none", limit_train=32, limit_test=8), dataset=make_synthetic(40, 10)).setup()
    assert torch.equal(a.model.fc.weight, b.model.fc.weight)
