"""`resizelab serve`: a stored model evaluated under the serving recipes, without training again."""

from __future__ import annotations

import hashlib
import sys

import pytest
import torch

from conftest import error_lines
from resizelab.analysis.serve import ServeConfig, serve
from resizelab.cli import main
from resizelab.core.choices import SERVE_RECIPES
from resizelab.core.config import RunConfig
from resizelab.store.database import Store, new_owner_id
from resizelab.store.weights import complete_run
from resizelab.training.engine import train
from resizelab.training.models import build_model
from resizelab.training.planning import run_hash

pytest.importorskip("cv2")

# (backend, interpolation, antialias) of each trained run -> the recipe that is exactly its resize.
TRAINED = {("pil", "bilinear", True): "pil-bilinear", ("tensor", "bilinear", False): "tensor-bilinear",
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
    return db, runs


@pytest.mark.parametrize("recipe", list(TRAINED.values()))
def test_serving_with_the_training_recipe_gives_back_the_runs_own_accuracy(stored, recipe):
    db, runs = stored
    run = runs[recipe]
    result = serve(ServeConfig(run=run.config_hash[:8], db=str(db), serve=SERVE_RECIPES))
    assert result.config.train_recipe == recipe and result.config.test_sizes == (16,)
    assert len(result.evals) == len(SERVE_RECIPES) and {e.recipe for e in result.evals} == set(SERVE_RECIPES)
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
    run = runs["tensor-bilinear"]
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


def test_a_weights_file_of_another_class_count_names_the_data(stored, tmp_path):
    db, runs = stored
    path = db.parent / runs["pil-bilinear"].weights_file
    from resizelab.core.errors import WeightsError

    with pytest.raises(WeightsError, match=r"fc.bias \(10,\) vs \(3,\).*--data with its 3 classes"):
        serve(ServeConfig(weights=str(path), data=_three_class_folder(tmp_path), test_sizes=(16,)))


def _three_class_folder(tmp_path):
    from conftest import write_imagefolder

    return "imagefolder:" + str(write_imagefolder(tmp_path / "three", n_train=2, n_val=2))
