import math


from resizelab.report import ReportConfig, mean_ci, pareto_front, t_critical_95, write_report
from resizelab.sweep import SweepOptions, expand, run_sweep


def test_confidence_interval_matches_a_known_case():
    s = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd sqrt(2.5), sem 0.7071, t(0.975, 4) = 2.776 -> 1.963
    assert s.n == 5 and s.mean == 3.0 and abs(s.half_width - 1.963) < 1e-3
    assert math.isnan(mean_ci([4.0]).half_width) and mean_ci([]).n == 0
    assert t_critical_95(9) == 2.262 and abs(t_critical_95(1000) - 1.9623) < 1e-3 and 2.000 < t_critical_95(50) < 2.021


def test_pareto_front():
    points = [(1, 50), (2, 60), (3, 55), (4, 70), (5, 70)]
    assert pareto_front(points) == [0, 1, 3]


def test_report_has_every_table_and_figure(tmp_path):
    db = str(tmp_path / "r.db")
    plan = expand({"data": "synthetic", "weights": "none", "epochs": 1, "lr": 0.01, "limit_train": 150, "limit_test": 60,
                   "precision": "fp32", "test_sizes": (8, 16)},
                  {"size": [8, 16], "interpolation": ["nearest", "bilinear"], "antialias": [True, False]}, seeds=[0, 1], name="tiny")
    outcome = run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True)
    assert len(outcome.ran) == 12  # nearest ignores antialias: 2 sizes x 3 methods x 2 seeds
    out = write_report(ReportConfig(db=db, sweep="tiny", out=str(tmp_path / "rep")))
    for name in ("report.md", "report.html", "runs.csv", "accuracy_vs_size.png", "cost_vs_size.png",
                 "accuracy_vs_cost.png", "train_test_heatmap.png", "examples.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "95%" in md and " ± " in md
    header = next(line for line in md.splitlines() if line.startswith("| size"))
    assert [c.strip() for c in header.strip("|").split("|")][-6:] == ["n", "test acc % (95% CI)", "train s", "img/s", "M MACs", "params M"]
    assert md.count("![") == 5
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
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
