"""`resizelab serve`: a stored model evaluated under the serving recipes, without training again."""

from __future__ import annotations

import hashlib
import re
import sys

import pytest
import torch

from conftest import error_lines
from resizelab.analysis.serve import ServeConfig, serve
from resizelab.cli import main
from resizelab.core.choices import BACKEND_INTERPOLATIONS, LEARNED_INTERPOLATIONS, SERVE_RECIPES, effective_antialias
from resizelab.core.config import RunConfig
from resizelab.store.database import Store, new_owner_id
from resizelab.store.weights import complete_run
from resizelab.training.engine import train
from resizelab.training.models import build_model
from resizelab.training.planning import run_hash
from resizelab.training.recipes import training_recipe

pytest.importorskip("cv2")

# (backend, interpolation, antialias) of each trained run -> the recipe that is exactly its resize.
TRAINED = {("pil", "bilinear", True): "pil-bilinear", ("tensor", "bilinear", True): "backend:tensor-bilinear-aa",
           ("opencv", "area", True): "cv2-area"}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Tiny synthetic runs (one per training resize) with --save-weights, stored by the real writer, plus one without."""
    root = tmp_path_factory.mktemp("serve")
    db = root / "r.db"
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIZELAB_CACHE_DIR", str(root / "cache"))
        with Store(db) as store:
            for (backend, method, aa), recipe in TRAINED.items():
                cfg = RunConfig(data="synthetic:60:80", weights="none", size=16, epochs=1, lr=0.05, precision="fp32",
                                backend=backend, interpolation=method, antialias=aa, save_weights=True, batch_size=20)
                store.register([cfg])
                owner = new_owner_id()
                assert store.claim(run_hash(cfg), owner)
                result = train(cfg, progress=False)
                complete_run(store, result, owner)
                runs[recipe] = result
            bare = RunConfig(data="synthetic:60:80", weights="none", size=16, epochs=1, lr=0.05, precision="fp32", seed=1,
                             batch_size=20)
            store.register([bare])
            owner = new_owner_id()
            store.claim(run_hash(bare), owner)
            complete_run(store, train(bare, progress=False), owner)
            runs["bare"] = run_hash(bare)
            served = RunConfig(data="synthetic:60:80", weights="none", size=16, epochs=1, lr=0.05, precision="fp32", seed=2,
                               batch_size=20, backend="pil", test_sizes=(24,), serve=("cv2-nearest", "pil-bilinear"), save_weights=True)
            store.register([served], sweep="served")
            owner = new_owner_id()
            store.claim(run_hash(served), owner)
            result = train(served, progress=False)
            complete_run(store, result, owner)
            runs["served"] = result
    return db, runs


@pytest.mark.parametrize("recipe", list(TRAINED.values()))
def test_serving_with_the_training_recipe_gives_back_the_runs_own_accuracy(stored, recipe):
    db, runs = stored
    run = runs[recipe]
    result = serve(ServeConfig(run=run.config_hash[:8], db=str(db), serve=SERVE_RECIPES))
    assert result.config.train_recipe == recipe and result.config.test_sizes == (16,)
    # The baseline is evaluated even where the catalogue lacks it (a tensor run: no catalogue recipe is its call).
    assert len(result.evals) == len(set(SERVE_RECIPES) | {recipe}) and {e.recipe for e in result.evals} == set(SERVE_RECIPES) | {recipe}
    (base,) = [e for e in result.evals if e.baseline]
    assert base.recipe == recipe and base.images == 80
    assert base.accuracy == run.test_accuracy == result.run_test_accuracy
    assert base.per_class_accuracy == run.per_class_accuracy


def test_serve_at_another_size_and_from_the_cache(stored, monkeypatch):
    db, runs = stored
    cfg = ServeConfig(run=runs["pil-bilinear"].config_hash, db=str(db), serve="cv2-nearest,pil-bilinear", test_sizes=(24, 16))
    first = serve(cfg)
    assert [(e.recipe, e.size_px) for e in first.evals] == [("cv2-nearest", 24), ("pil-bilinear", 24),
                                                            ("cv2-nearest", 16), ("pil-bilinear", 16)]
    import resizelab.training.recipes as recipes

    def no_resize(*args, **kwargs):
        raise AssertionError("resized again: the cache should have answered")

    monkeypatch.setattr(recipes, "apply_recipe", no_resize)
    again = serve(cfg)
    assert [e.accuracy for e in again.evals] == [e.accuracy for e in first.evals]


def test_serve_a_weights_file_with_its_arch(stored, tmp_path, capsys):
    db, runs = stored
    run = runs["backend:tensor-bilinear-aa"]
    path = db.parent / run.weights_file
    assert main(["serve", "--weights", str(path), "--data", "synthetic:60:80", "--test-size", "16", "--serve",
                 "tensor-bilinear,cv2-linear", "--train-recipe", "tensor-bilinear", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| tensor-bilinear | 16 |" in out and "baseline" in out and "| cv2-linear | 16 |" in out


def test_bad_input_is_one_line_and_nothing_is_stored(stored, tmp_path, capsys, monkeypatch):
    db, runs = stored
    h = runs["pil-bilinear"].config_hash
    before = _sha(db)
    wrong_arch = tmp_path / "r34.pt"
    torch.save(build_model("resnet34", 10, "none")[0].state_dict(), wrong_arch)
    cases = [
        (["--run", h, "--db", str(db), "--serve", "pil-bilinar"], "did you mean 'pil-bilinear'"),
        (["--run", runs["bare"], "--db", str(db)], "was trained without --save-weights"),
        (["--weights", str(wrong_arch), "--arch", "resnet18", "--data", "synthetic:60:80", "--test-size", "16"],
         "does not fit this model"),
        (["--run", h, "--db", str(db), "--arch", "resnet34"], "arch comes from run"),
        (["--weights", str(wrong_arch), "--arch", "resnet34", "--data", "synthetic:60:80"], "give --test-size"),
        (["--db", str(db)], "add --run HASH"),
        # A missing file is said first, before the sizes it would also need.
        (["--weights", str(tmp_path / "no-such.pt")], f"weights {str(tmp_path / 'no-such.pt')!r} is not a file"),
    ]
    for argv, message in cases:
        assert main(["serve", *argv]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0], (argv, lines)
    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import` meets when OpenCV is not installed
    assert main(["serve", "--run", h, "--db", str(db), "--serve", "cv2-area"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "pip install 'resizelab[opencv]'" in lines[0]
    assert _sha(db) == before


def test_without_opencv_serve_uses_every_recipe_installed_and_says_which_it_skipped(stored, capsys, monkeypatch):
    db, runs = stored
    h = runs["pil-bilinear"].config_hash
    monkeypatch.setitem(sys.modules, "cv2", None)  # the install `make study` sets up: no OpenCV
    assert main(["serve", "--run", h[:8], "--db", str(db)]) == 0
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines() if line.startswith("| ") and "recipe" not in line]
    served = [row.split("|")[1].strip() for row in rows]
    assert served == [r for r in SERVE_RECIPES if not r.startswith("cv2-")]
    skipped = [line for line in captured.out.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "cv2-linear" in skipped[0] and "pip install 'resizelab[opencv]'" in skipped[0]
    # One model on 80 images: the table says in words what n can resolve.
    assert "one model on 80 test images: one image is 1.25 points" in captured.out
    # Said on stderr before anything loads, and the header names the run once.
    assert captured.err.index("skipped cv2-") < captured.err.index("serve: loading")
    assert captured.out.splitlines()[0].count(h) == 1 and h[:8] not in captured.out.splitlines()[0].replace(h, "")
    # Asking for OpenCV's recipes by name (or all) stops before anything is loaded: one line, the install command.
    assert main(["serve", "--run", h, "--db", str(db), "--serve", "all"]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and "pip install 'resizelab[opencv]'" in lines[0] and "serve: loading" not in captured.err


def test_a_weights_file_of_another_class_count_names_the_data(stored, tmp_path):
    db, runs = stored
    path = db.parent / runs["pil-bilinear"].weights_file
    from resizelab.core.errors import WeightsError

    with pytest.raises(WeightsError, match=r"fc.bias \(10,\) vs \(3,\).*--data with its 3 classes"):
        serve(ServeConfig(weights=str(path), data=_three_class_folder(tmp_path), test_sizes=(16,)))


def _three_class_folder(tmp_path):
    from conftest import write_imagefolder

    return "imagefolder:" + str(write_imagefolder(tmp_path / "three", n_train=2, n_val=2))


def test_a_run_with_serve_stores_each_recipe_and_size_with_the_train_recipe_as_baseline(stored, tmp_path):
    db, runs = stored
    result = runs["served"]
    assert [(e.recipe, e.size_px, e.baseline) for e in result.serving] == [
        ("cv2-nearest", 16, False), ("pil-bilinear", 16, True), ("cv2-nearest", 24, False), ("pil-bilinear", 24, True)]
    # The baseline is the run's own evaluation at each size, image for image.
    by_size = {ev.size_px: ev for ev in result.evals}
    for e in result.serving:
        if e.baseline:
            assert e.accuracy == by_size[e.size_px].accuracy and e.per_class_accuracy == by_size[e.size_px].per_class_accuracy
    # ...and `resizelab serve` on the same weights gives the same numbers: one evaluation, two entry points.
    again = serve(ServeConfig(run=result.config_hash, db=str(db), serve=("cv2-nearest", "pil-bilinear"), test_sizes=(16, 24)))
    assert [e.accuracy for e in again.evals] == [e.accuracy for e in result.serving]

    from resizelab import load_serving

    frame = load_serving(db, sweep="served")
    assert len(frame) == 4 and set(frame["train_recipe"]) == {"pil-bilinear"}
    row = frame[(frame.serve_recipe == "cv2-nearest") & (frame.serve_size_px == 24)].iloc[0]
    base = frame[(frame.serve_recipe == "pil-bilinear") & (frame.serve_size_px == 24)].iloc[0]
    assert row.change_points == pytest.approx(row.accuracy - base.accuracy) and base.change_points == 0
    assert row.library.startswith("opencv ") and row["size"] == "16"

    from resizelab.report.writer import ReportConfig, write_report

    out = write_report(ReportConfig(db=str(db), sweep="served", out=str(tmp_path / "report"), findings=False))
    import csv

    with open(out / "serving.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["serve_recipe"], r["serve_size_px"]) for r in rows] == [("cv2-nearest", "16"), ("pil-bilinear", "16"),
                                                                       ("cv2-nearest", "24"), ("pil-bilinear", "24")]
    report = (out / "report.md").read_text()
    assert "## Train with one resize, serve with another" in report
    assert "| pil-bilinear | cv2-nearest | 24 |" in report and "not resolved at this n" in report  # one seed: no interval
    with open(out / "runs.csv") as f:
        (run_row,) = list(csv.DictReader(f))
    assert float(run_row["serve_accuracy_cv2-nearest_at_24px"]) == row.accuracy


def test_serve_run_option_is_checked_and_not_part_of_the_name(tmp_path, capsys):
    assert run_hash(RunConfig(data="synthetic", weights="none", serve="all")) == run_hash(RunConfig(data="synthetic", weights="none"))
    assert RunConfig(data="synthetic", serve="all").serve == SERVE_RECIPES
    db = tmp_path / "r.db"
    assert main(["run", "--data", "synthetic:60", "--weights", "none", "--serve", "pil-bilinear,cv2-lineer", "--db", str(db)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "did you mean 'cv2-linear'" in lines[0], lines
    assert not db.exists()


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
@pytest.mark.slow
def test_serving_accuracies_are_mlflow_metrics(stored, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from resizelab.report.tracking import log_result_to_mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, runs = stored
    result = runs["served"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_result_to_mlflow(result, uri, "serve-exp")
    metrics = mlflow.tracking.MlflowClient(uri).get_run(run_id).data.metrics
    for e in result.serving:
        assert metrics[f"serve_accuracy_{e.recipe}_{e.size_px}px"] == pytest.approx(e.accuracy)


def _group(train: str, size: int, served: dict[str, list[float]], base: list[float]):
    """A configuration's seeds as the store gives them to the report: each run's result with its serving entries."""
    from resizelab.store.runs import Group

    runs = []
    for seed, base_acc in enumerate(base):
        serving = [{"recipe": train, "size_px": size, "accuracy": base_acc, "baseline": True}]
        serving += [{"recipe": r, "size_px": size, "accuracy": accs[seed], "baseline": False} for r, accs in served.items()]
        runs.append({"config": {"seed": seed}, "result": {"serving": serving}})
    return Group({"size": size}, runs, {})


def test_the_matrix_decides_each_cell_with_the_findings_rule(tmp_path):
    from resizelab.analysis.findings import CLAIMS_BY_KEY
    from resizelab.analysis.serve import mismatch_claim, serving_matrix
    from resizelab.report.figures import figure_serving_matrix

    assert mismatch_claim().threshold == CLAIMS_BY_KEY["method"].threshold == 1.0  # one threshold, the Findings'
    groups = [_group("pil-bilinear", 16, {"cv2-linear": [60.0, 61.0, 59.5], "cv2-area": [70.1, 69.9, 70.0],
                                          "cv2-nearest": [68.0, 71.0, 70.5]}, base=[70.0, 70.0, 70.0]),
              _group("cv2-area", 16, {"pil-bilinear": [55.0]}, base=[54.0])]
    cells = {(c.train_recipe, c.serve_recipe): c for c in serving_matrix(groups)}
    drop = cells[("pil-bilinear", "cv2-linear")]
    assert drop.change.value == pytest.approx(-9.8333, abs=1e-3) and drop.change.n == 3 and drop.change.high < -1
    assert drop.verdict == "supported"
    assert drop.text.startswith("serving with cv2-linear a model trained with pil-bilinear at 16 px costs 9.8 points [")
    assert drop.text.endswith("3 seeds: a mismatch that matters")
    assert cells[("pil-bilinear", "cv2-area")].verdict == "contradicted"  # within +-1 point: does not matter
    assert cells[("pil-bilinear", "cv2-nearest")].verdict == "not resolved at this n"  # an interval across the threshold
    # ... said with how many seeds would resolve a change of that size at that spread (a t interval clear of +-1 point).
    from resizelab.analysis.serve import seeds_to_resolve

    wide = cells[("pil-bilinear", "cv2-nearest")]
    needed = seeds_to_resolve(wide.change, 1.0)
    assert 3 < needed < 100 and wide.text.endswith(f"about {needed} seeds would resolve a change of 0.2 points at this spread")
    assert cells[("cv2-area", "pil-bilinear")].verdict == "not resolved at this n"  # one seed: no interval
    assert "gains 1.0 points (no interval), 1 seed" in cells[("cv2-area", "pil-bilinear")].text
    assert figure_serving_matrix(groups, tmp_path / "m.png") and (tmp_path / "m.png").stat().st_size > 10_000


@pytest.mark.parametrize("images, verdict", [(40, "not resolved at this n"), (10_000, "contradicted")])
def test_seeds_that_agree_to_the_image_do_not_settle_a_cell_below_one_image(images, verdict):
    """Two seeds, each +0.0 on 40 test images: a t interval of zero width, but the split cannot tell 1 point (one
    image is 2.5); on 10,000 images the same agreement does settle it."""
    from resizelab.analysis.serve import serving_matrix

    group = _group("pil-bilinear", 16, {"cv2-linear": [50.0, 50.0]}, base=[50.0, 50.0])
    for run in group.runs:
        for entry in run["result"]["serving"]:
            entry["images"] = images
    cell, = serving_matrix([group])
    assert cell.change.value == 0.0 and cell.change.high - cell.change.low == pytest.approx(2 * 100 / images)
    assert cell.verdict == verdict


def test_the_matrix_figure_keeps_every_word_inside_it(tmp_path, monkeypatch):
    """A panel of two rows is short: the colour bar's name once ran past the figure's edge, cut in the PNG."""
    from matplotlib.text import Text

    from resizelab.report import figures

    served = ("pil-bicubic", "pil-default", "tensor-bilinear", "tensor-bilinear-aa", "torch-interpolate", "cv2-linear")
    groups = [_group(recipe, size, {other: [60.0, 61.0] for other in served}, base=[70.0, 70.0])
              for size in (8, 12) for recipe in ("pil-bilinear", "cv2-area")]
    outside = []
    real = figures.save_figure

    def measure(plt, fig, path):
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for text in fig.findobj(Text):
            if text.get_visible() and text.get_text().strip():
                box = text.get_window_extent(renderer)
                if box.x0 < -1 or box.y0 < -1 or box.x1 > fig.bbox.x1 + 1 or box.y1 > fig.bbox.y1 + 1:
                    outside.append(text.get_text())
        return real(plt, fig, path)

    monkeypatch.setattr(figures, "save_figure", measure)
    assert figures.figure_serving_matrix(groups, tmp_path / "m.png")
    assert outside == []


def test_the_serve_preset_trains_each_recipe_at_two_sizes_and_serves_every_recipe():
    from resizelab.sweeps.presets import get_preset
    from resizelab.training.recipes import training_recipe

    plan = get_preset("serve").plan()
    configs = plan.configs
    assert not plan.invalid
    trained = {(c.size, training_recipe(c.interpolation, c.effective_antialias, c.backend)) for c in configs}
    assert trained == {(s, r) for s in (16, 64) for r in ("pil-bilinear", "backend:tensor-bilinear", "cv2-linear",
                                                         "cv2-area", "cv2-nearest-exact")}
    assert all(c.serve == SERVE_RECIPES for c in configs) and len(configs) == 30


def test_serve_preset_dry_run_without_opencv_says_what_a_real_run_needs(tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--preset", "serve", "--data", "synthetic", "--weights", "none", "--dry-run"]) == 0
    err = capsys.readouterr().err + caplog.text
    (line, *_) = [line for line in err.splitlines() if "a real run needs OpenCV" in line]
    assert "18 runs with --backend opencv" in line and "cv2-linear" in line and "pip install 'resizelab[opencv]'" in line


def test_synthetic_at_a_native_resolution_is_the_same_task_drawn_larger():
    from resizelab.core.config import synthetic_spec
    from resizelab.core.errors import ConfigError
    from resizelab.training.data import load_dataset

    assert synthetic_spec("synthetic:100:20@128") == (100, 20, 128)
    assert synthetic_spec("synthetic@64") == (5000, 1000, 64) and synthetic_spec("synthetic") == (5000, 1000, 32)
    for bad, message in (("synthetic@x", "whole number of px"), ("synthetic:60@4", "between 8 and 1024"),
                         ("synthetic:1000000@1024", "GiB of uint8")):
        with pytest.raises(ConfigError, match=message):
            RunConfig(data=bad)
    small, same, large = (load_dataset(s) for s in ("synthetic:60:20", "synthetic:60:20@32", "synthetic:60:20@128"))
    assert torch.equal(small.train_images, same.train_images)  # @32 is the default task, byte for byte
    assert tuple(large.train_images.shape[-2:]) == (128, 128) and large.key != small.key
    assert torch.equal(small.train_labels, large.train_labels) and torch.equal(small.test_labels, large.test_labels)
    from resizelab.training.recipes import apply_recipe

    # A 4x downscale: the antialiased recipe averages grating and noise away, plain nearest keeps them (aliased).
    def detail(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()  # mean step between neighbouring pixels

    aa, nearest = (apply_recipe(r, large.test_images, 32).float() for r in ("pil-bilinear", "cv2-nearest"))
    assert detail(nearest) > 1.5 * detail(aa)


@pytest.mark.slow  # a whole study: five trainings, each served under twelve recipes, and its report
def test_study_preset_serve_prints_the_train_x_serve_table_after_the_results_table(tmp_path, capsys, monkeypatch):
    """The preset's five training recipes at 16 px, one seed each, tiny: stdout is the results table and then the
    report section's train x serve rows, cell for cell; the log lines stay on stderr."""
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(tmp_path / "cache"))
    out_dir = tmp_path / "report"
    assert main(["study", "--preset", "serve", "--data", "synthetic:60:80", "--weights", "none", "--size", "16", "--seeds", "1",
                 "--epochs", "1", "--lr", "0.05", "--batch-size", "20", "--precision", "fp32", "--device", "cpu",
                 "--executor", "local", "--db", str(tmp_path / "r.db"), "--report-dir", str(out_dir)]) == 0
    captured = capsys.readouterr()
    results, _, matrix = captured.out.strip().partition("\n\n")
    assert results.splitlines()[0].split()[:3] == ["run", "size", "interpolation"] and len(results.splitlines()) == 2 + 5
    caption, header, rule, *cells, summary = matrix.splitlines()
    assert caption.startswith("train x serve: ") and header.split()[:3] == ["trained", "with", "served"]
    # Every off-diagonal cell at 16 px: four training recipes of the catalogue, each served with the eleven others, and
    # the tensor backend's own resize (no catalogue recipe is its call) served with all twelve.
    assert len(cells) == 4 * (len(SERVE_RECIPES) - 1) + len(SERVE_RECIPES)
    report = (out_dir / "report.md").read_text()
    section = report.split("## Train with one resize, serve with another", 1)[1].split("\n## ", 1)[0]
    # The section leads with the heat map and, in words, the cells that matter (here: none resolved), the table below.
    lead = section.split("Every cell:", 1)[0]
    assert "](serving_matrix.png)" in lead and f"- {summary}" in lead and lead.count("\n- serving with ") == 5
    section = [line for line in section.splitlines() if line.startswith("| ")][1:]  # the rows under the header
    as_report = ["| " + " | ".join(cell.strip() for cell in re.split(r"\s{2,}", line)) + " |" for line in cells]
    assert as_report == section
    assert all(line.endswith("not resolved at this n") for line in cells)  # one seed: no interval
    # Said in words under the table, with what would resolve it.
    assert summary.startswith(f"0 of {len(cells)} cells a mismatch that matters; {len(cells)} not resolved at this n")
    assert summary.endswith("one seed has no interval; run 3 or more)")
    assert "train x serve" not in captured.err and "report: " in captured.err


def test_no_serving_results_no_train_x_serve_table(stored):
    from resizelab.report.writer import serving_table

    db, runs = stored
    with Store(db) as store:
        rows = store.runs()
    assert serving_table([r for r in rows if r["config_hash"] != runs["served"].config_hash]) == ""
    assert serving_table(rows).splitlines()[3].split()[:3] == ["pil-bilinear", "cv2-nearest", "16"]


# Every run's resize, (backend, method, antialias) with the antialias that happens. The full run trains one of each;
# the fast tier has the case (tensor bilinear antialiased) in the `stored` fixture's test above.
RUN_RESIZES = [(b, m, aa) for b, ms in BACKEND_INTERPOLATIONS.items() for m in ms if m not in LEARNED_INTERPOLATIONS for aa in (True, False)
               if effective_antialias(m, b, aa) == aa]


@pytest.mark.slow
@pytest.mark.parametrize("backend,method,antialias", RUN_RESIZES)
def test_every_backend_method_and_antialias_served_with_its_own_resize_gives_back_its_accuracy(
        backend, method, antialias, tmp_path, monkeypatch):
    """A stored run served (`serve --run`, and `run --serve` as it trains) with its own recipe, the baseline, scores
    its own test accuracy exactly, class for class, for every resize a run can do."""
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(tmp_path / "cache"))
    db = tmp_path / "r.db"
    cfg = RunConfig(data="synthetic:60:80", weights="none", size=16, epochs=1, lr=0.05, precision="fp32", backend=backend,
                    interpolation=method, antialias=antialias, save_weights=True, batch_size=20, serve=("cv2-nearest",))
    with Store(db) as store:
        store.register([cfg], sweep="own")
        owner = new_owner_id()
        assert store.claim(run_hash(cfg), owner)
        result = train(cfg, progress=False)
        complete_run(store, result, owner)
    own = training_recipe(method, antialias, backend)
    (base,) = [e for e in result.serving if e.baseline]
    assert base.recipe == own and base.accuracy == result.test_accuracy and base.per_class_accuracy == result.per_class_accuracy
    served = serve(ServeConfig(run=result.config_hash, db=str(db), serve=("cv2-nearest",)))
    assert served.config.train_recipe == own
    assert [(e.recipe, e.baseline) for e in served.evals] == [(own, True), ("cv2-nearest", False)]
    assert served.evals[0].accuracy == result.test_accuracy == served.run_test_accuracy
    assert served.evals[0].per_class_accuracy == result.per_class_accuracy
    assert served.evals[1].accuracy == result.serving[1].accuracy
    from resizelab import load_serving

    assert set(load_serving(db, sweep="own")["train_recipe"]) == {own}


def test_serve_of_a_run_whose_stored_result_is_corrupt_is_one_line(stored, tmp_path, capsys):
    """As `report` and `load_runs` say it: the run, the column, what to do; no JSONDecodeError."""
    import shutil
    import sqlite3

    db, runs = stored
    copy = tmp_path / "r.db"
    shutil.copy(db, copy)
    h = runs["pil-bilinear"].config_hash
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE runs SET result_json = '{\"test_accuracy\": 1' WHERE config_hash = ?", (h,))
    assert main(["serve", "--run", h[:8], "--db", str(copy)]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert f"run {h} in {copy} has a corrupt result_json" in line


def test_a_plan_says_which_runs_at_the_native_size_are_one_computation(tmp_path, caplog, monkeypatch):
    import logging

    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="resizelab"):
        assert main(["sweep", "--data", "synthetic", "--weights", "none", "--size", "16,32", "--interpolation",
                     "nearest,bilinear", "--seeds", "2", "--dry-run"]) == 0
    (line,) = [r.getMessage() for r in caplog.records if "resize nothing" in r.getMessage()]
    assert line.startswith("4 runs at 32 px on 32 px images (bilinear, nearest; 2 seeds) resize nothing: per seed, the same computation")
