import math

import pytest

from resizelab.core.errors import ConfigError

from resizelab.report.writer import ReportConfig, write_report
from resizelab.core.stats import mean_ci, pareto_front, t_critical_95, t_interval
from resizelab.sweeps.plan import expand
from resizelab.sweeps.runner import SweepOptions, run_sweep


def test_confidence_interval_matches_a_known_case():
    s = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd sqrt(2.5), sem 0.7071, t(0.975, 4) = 2.776 -> 1.963
    assert s.n == 5 and s.mean == 3.0 and abs(s.half_width - 1.963) < 1e-3
    assert math.isnan(mean_ci([4.0]).half_width) and mean_ci([]).n == 0
    # Published two-sided 95% values (any t table): 12.706 at 1 df, 2.262 at 9, 2.009 at 50, 1.962 at 1000.
    assert [round(t_critical_95(df), 3) for df in (1, 9, 50, 1000)] == [12.706, 2.262, 2.009, 1.962]


def test_pareto_front():
    points = [(1, 50), (2, 60), (3, 55), (4, 70), (5, 70)]
    assert pareto_front(points) == [0, 1, 3]


@pytest.mark.slow  # every figure of a whole report
def test_report_has_every_table_and_figure(tmp_path):
    db = str(tmp_path / "r.db")
    plan = expand({"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 150, "limit_test": 60,
                   "precision": "fp32", "test_sizes": (8, 16)},
                  {"size": [8, 16], "interpolation": ["nearest", "bilinear"], "antialias": [True, False]}, seeds=[0, 1], name="tiny")
    outcome = run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True)
    assert len(outcome.ran) == 12  # nearest ignores antialias: 2 sizes x 3 methods x 2 seeds
    out = write_report(ReportConfig(db=db, sweep="tiny", out=str(tmp_path / "rep")))
    for name in ("report.md", "report.html", "runs.csv", "accuracy_vs_size.png", "cost_vs_size.png",
                 "accuracy_vs_cost.png", "train_test_heatmap.png", "per_class_vs_size.png", "confusion_per_size.png", "examples.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "95%" in md and " ± " in md
    header = next(line for line in md.splitlines() if line.startswith("| size"))
    assert [c.strip() for c in header.strip().strip("|").split("|")][-6:] == ["n", "test acc % (95% CI)", "train s", "img/s", "M MACs", "params M"]
    assert md.count("![") == 7
    assert "## Findings" not in md  # no native-size run to compare with: not a findings study
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7
    assert len((out / "runs.csv").read_text().strip().splitlines()) == 13
    try:
        import pyarrow.parquet as pq
    except ImportError:  # Parquet is written only when the optional pyarrow is there
        assert not (out / "runs.parquet").exists()
    else:
        import csv

        table = pq.read_table(out / "runs.parquet").to_pylist()
        with open(out / "runs.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["config_hash"] for r in table] == [r["config_hash"] for r in rows]
        assert [r["test_accuracy"] for r in table] == [float(r["test_accuracy"]) for r in rows]


@pytest.mark.slow
def test_runs_that_differ_only_in_test_sizes_are_separate_series_and_rows(tmp_path):
    import csv

    db = str(tmp_path / "r.db")
    base = {"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 64, "limit_test": 32, "precision": "fp32"}
    plan = expand(base, {"size": [8, 16, None], "test_sizes": [(), (24,)]}, seeds=[0], name="ts")
    assert len(run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True).ran) == 6
    out = write_report(ReportConfig(db=db, sweep="ts", out=str(tmp_path / "rep")))
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| size"))
    assert "test\\_sizes" in header  # the varying option is a column
    rows = [line for line in md.splitlines() if line.startswith("| 8 ") or line.startswith("| 16 ") or line.startswith("| native ")]
    assert len(rows) == 6 and [r.split("|")[1].strip() for r in rows] == ["native", "native", "8", "8", "16", "16"]
    # The header states what was held fixed, n included.
    for setting in ("| epochs | 1 |", "| weights | none |", "| limit\\_train | 64 |", "| data | synthetic |"):
        assert setting in md, setting
    assert "n = 1 seed per configuration" in md
    with open(out / "runs.csv") as f:
        sizes = sorted(r["config.size"] for r in csv.DictReader(f))
    assert sizes == ["16", "16", "8", "8", "native", "native"]
    html = (out / "report.html").read_text()
    assert '<html lang="en">' in html and "`" not in html and "<title>resizelab report: ts</title>" in html


def test_report_escapes_names_and_clears_stale_figures(tmp_path):
    db = str(tmp_path / "r.db")
    plan = expand({"data": "synthetic", "weights": "none", "epochs": 1, "limit_train": 64, "limit_test": 32, "precision": "fp32"},
                  {"size": [8]}, seeds=[0], name="a|b*c")
    run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "accuracy_vs_size.png").write_bytes(b"stale")
    write_report(ReportConfig(db=db, sweep="a|b*c", out=str(out)))
    assert not (out / "accuracy_vs_size.png").exists()  # one size: this report draws no such figure
    assert "# resizelab report: a\\|b\\*c" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="is a file"):
        write_report(ReportConfig(db=db, sweep="a|b*c", out=str(out / "report.md")))


def test_class_names_are_drawn_as_written(tmp_path, one_thread):
    # Class names are folder names: "$...$" must not be read as matplotlib mathtext (an unknown command made the
    # report fail; a known one drew other text than the folder's name).
    from conftest import write_imagefolder

    root = write_imagefolder(tmp_path / "imgs", n_train=8, n_val=4, classes=(r"$\nocommand$", "a|b*c"))
    db = str(tmp_path / "r.db")
    plan = expand({"data": f"imagefolder:{root}", "weights": "none", "epochs": 1, "precision": "fp32", "batch_size": 8},
                  {"size": [8, 16]}, seeds=[0], name="classes")
    run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True)
    out = write_report(ReportConfig(db=db, sweep="classes", out=str(tmp_path / "rep")))
    assert (out / "per_class_vs_size.png").is_file() and (out / "confusion_per_size.png").is_file()


@pytest.mark.slow
def test_runs_csv_orders_sizes_as_numbers_not_text(tmp_path):
    import csv

    db = str(tmp_path / "r.db")
    base = {"data": "synthetic:40:20", "weights": "none", "epochs": 1, "lr": 0.01, "precision": "fp32", "test_sizes": (100,)}
    plan = expand(base, {"size": [100, 16, 8]}, seeds=[0], name="sizes")
    assert len(run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True).ran) == 3
    out = write_report(ReportConfig(db=db, sweep="sizes", out=str(tmp_path / "rep"), findings=False))
    with open(out / "runs.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        at = [c for c in reader.fieldnames if c.startswith("test_accuracy_at_")]
    assert [r["config.size"] for r in rows] == ["8", "16", "100"]
    assert at == ["test_accuracy_at_8px", "test_accuracy_at_16px", "test_accuracy_at_100px"]
    # 20 test images over 10 classes leave one class untested (per_class_accuracy None): drawn as a gap, not a crash.
    assert (out / "per_class_vs_size.png").stat().st_size > 0


def test_the_one_t_interval_is_scipys_one_sample_interval_at_any_level():
    from scipy import stats

    values = [71.2, 69.8, 73.5, 70.1, 72.0]
    for level in (0.95, 0.99, 1 - 0.05 / 6):
        mean, low, high = t_interval(values, level)
        ci = stats.ttest_1samp(values, 0.0).confidence_interval(level)
        assert (mean, low, high) == pytest.approx((sum(values) / 5, ci.low, ci.high), rel=1e-12)
    # The tables' ± is the same interval's half-width at 95%.
    assert mean_ci(values).half_width == pytest.approx((t_interval(values)[2] - t_interval(values)[1]) / 2, rel=1e-12)
    assert all(math.isnan(b) for b in t_interval([3.0])[1:])


def _groups_of(data: str, sizes=(8, 16)):
    from resizelab.store.runs import Group

    config = {"data": data, "interpolation": "bilinear", "antialias": True, "backend": "pil"}
    return [Group({**config, "size": s}, [{"config": {**config, "size": s, "data_dir": None}, "result": {}}], {}) for s in sizes]


def test_the_examples_strip_draws_the_classes_the_test_split_holds(tmp_path, isolated_cache):
    """A test split that lacks a class (synthetic:20:10 has no test image of classes 0 and 6; an ImageFolder's empty
    class folder) made the report fail in figure_examples after the runs were stored: it draws the classes there are."""
    import shutil

    from PIL import Image

    from conftest import write_imagefolder
    from resizelab.report.figures import figure_examples
    from resizelab.training.data import load_dataset

    assert set(load_dataset("synthetic:20:10").test_labels.tolist()) < set(range(10))
    assert figure_examples(_groups_of("synthetic:20:10"), tmp_path / "synthetic.png", 10)
    root = write_imagefolder(tmp_path / "imgs", n_train=4, n_val=2, size=16, classes=("aaa", "cat", "dog"))
    shutil.rmtree(root / "val" / "aaa")
    (root / "val" / "aaa").mkdir()  # sorts first: class 0 has no test image
    assert figure_examples(_groups_of(f"imagefolder:{root}"), tmp_path / "folder.png", 10)
    assert Image.open(tmp_path / "folder.png").size[0] > 0
