import dataclasses
import json

import pytest
import torch

from resizelab.store.read import find_run
from resizelab.store.weights import complete_run
from resizelab.cli import main
from resizelab.core.config import RunConfig
from resizelab.training.engine import train
from resizelab.core.errors import ConfigError
from resizelab.training.models import build_model
from resizelab.analysis.probe import STAGES, ProbeConfig, run_probe
from resizelab.store.database import Store, new_owner_id

from conftest import write_imagefolder
from resizelab.training.planning import run_hash


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny trainings with --save-weights (ImageNet stem on the tensor backend, CIFAR stem on PIL), stored in one
    db by the real writer."""
    root = tmp_path_factory.mktemp("ckpt")
    images = write_imagefolder(root / "imgs", n_train=8, n_val=4)
    db = root / "store" / "r.db"
    db.parent.mkdir()
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIZELAB_CACHE_DIR", str(root / "cache"))
        with Store(db) as store:
            for stem in ("imagenet", "cifar"):
                cfg = RunConfig(data=f"imagefolder:{images}", weights="none", size=16, epochs=1, lr=0.05, precision="fp32",
                                stem=stem, save_weights=True, backend="tensor" if stem == "imagenet" else "pil")
                store.register([cfg])
                owner = new_owner_id()
                assert store.claim(run_hash(cfg), owner)
                result = train(cfg, progress=False)
                state = result.state_dict
                complete_run(store, result, owner)
                results[stem] = (result, state)
    return images, db, results


def test_save_weights_is_not_part_of_the_identity():
    assert run_hash(RunConfig(data="synthetic", weights="none", save_weights=True)) == run_hash(RunConfig(data="synthetic", weights="none"))


def test_saved_weights_are_the_trained_state_beside_the_db_and_named_in_the_stored_result(trained):
    images, db, results = trained
    result, state = results["imagenet"]
    h = result.config_hash
    assert result.state_dict is None  # written out, not kept in memory
    assert result.weights_file == f"weights/{h}-1.pt" == result.provenance["weights_file"]
    path = db.parent / "weights" / f"{h}-1.pt"
    saved = torch.load(path, weights_only=True)
    fresh = build_model("resnet18", 3, "none")[0].state_dict()
    assert list(saved) == list(fresh) and all(torch.equal(saved[k], state[k]) for k in saved)
    # Trained, not the initial weights: the BN statistics moved.
    assert not torch.equal(saved["bn1.running_mean"], fresh["bn1.running_mean"])
    with Store(db) as store:
        stored = json.loads(store.get(h)["result_json"])
    assert stored["weights_file"] == f"weights/{h}-1.pt" and stored["provenance"]["weights_file"] == stored["weights_file"]
    assert "state_dict" not in stored
    assert not [p for p in path.parent.iterdir() if p.suffix != ".pt"]  # no temporary file left behind


def test_a_forced_rerun_saves_a_second_file_and_keeps_the_first(trained, tmp_path):
    import shutil

    images, db, results = trained
    copy = tmp_path / "r.db"
    shutil.copy(db, copy)
    result, state = results["imagenet"]
    h = result.config_hash
    with Store(copy) as store:
        owner = new_owner_id()
        assert store.claim(h, owner, force=True)
        again = dataclasses.replace(result, state_dict=state, weights_file=None, provenance=dict(result.provenance))
        complete_run(store, again, owner)
    assert again.weights_file == f"weights/{h}-2.pt" and (tmp_path / "weights" / f"{h}-2.pt").is_file()
    assert find_run(str(copy), h[:6]).weights_path == str(tmp_path / "weights" / f"{h}-2.pt")


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_probing_a_stored_run_is_probing_its_saved_file(trained, tmp_path, stem):
    images, db, results = trained
    result, _ = results[stem]
    h = result.config_hash
    common = dict(interpolations=("bilinear",), limit=9, backend="tensor")
    by_run = run_probe(ProbeConfig(run=h[:8], db=str(db), out=str(tmp_path / "a"), **common))
    by_file = run_probe(ProbeConfig(data=f"imagefolder:{images}", stem=stem, size=16, weights=str(db.parent / result.weights_file),
                                    out=str(tmp_path / "b"), **common))
    assert by_run.config.size == 16 and by_run.config.stem == stem and by_run.weights_tag.startswith(f"run:{h} ")
    for a, b in zip(by_run.methods, by_file.methods):
        assert [a.cka[s] for s in STAGES] == pytest.approx([b.cka[s] for s in STAGES], abs=1e-9)
        assert a.residual_ratio == pytest.approx(b.residual_ratio, rel=1e-9)
    # Not what an untrained model of the same seed gives: the weights were loaded, the CIFAR stem's conv1 included.
    untrained = run_probe(ProbeConfig(data=f"imagefolder:{images}", stem=stem, size=16, weights="none", out=str(tmp_path / "c"), **common))
    assert untrained.native.conv1_bands["energy"] != pytest.approx(by_run.native.conv1_bands["energy"], rel=1e-3)


def test_probe_run_errors_are_one_line(trained, tmp_path, capsys):
    images, db, results = trained
    result, _ = results["imagenet"]
    h = result.config_hash
    bare = tmp_path / "bare.db"
    with Store(bare) as store:  # the same run, stored without its weights
        store.register([result.config])
        owner = new_owner_id()
        store.claim(h, owner)
        complete_run(store, dataclasses.replace(result, state_dict=None, weights_file=None), owner)
    for argv, message in ((["--db", str(bare), "--run", h], "was trained without --save-weights"),
                          (["--db", str(db), "--run", "ffffffff"], f"no run ffffffff in {db}; `resizelab runs --db {db}` lists"),
                          (["--db", str(db), "--run", h + "00"], "run must be a config hash (16 hex digits"),
                          (["--db", str(db), "--run", "xyz1"], "run must be a config hash (16 hex digits"),
                          # --arch with --run only names again a run's Python code; another arch is refused.
                          (["--db", str(db), "--run", h, "--arch", "resnet34"],
                           "arch comes from run")):
        assert main(["probe", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert find_run(str(db), h[:6].upper()).config_hash == h  # a prefix copied in upper case names the same run
    with pytest.raises(ConfigError, match="no results store"):
        ProbeConfig(run=h, db=str(tmp_path / "missing.db"))
    with pytest.raises(ConfigError, match="stem comes from run"):
        ProbeConfig(run=h, db=str(db), stem="cifar")


def test_probe_run_compares_methods_with_the_runs_backend_unless_another_is_given(trained):
    images, db, results = trained
    pil_run, tensor_run = results["cifar"][0].config_hash, results["imagenet"][0].config_hash
    assert ProbeConfig(run=pil_run, db=str(db)).backend == "pil"
    assert ProbeConfig(run=tensor_run, db=str(db)).backend == "tensor"
    # Given, it wins, even when it is what a probe without --run would use.
    assert ProbeConfig(run=pil_run, db=str(db), backend="tensor").backend == "tensor"
    assert ProbeConfig(run=tensor_run, db=str(db), backend="pil").backend == "pil"
    assert ProbeConfig(data=f"imagefolder:{images}", weights="none").backend == "tensor"  # no run: run's default


def test_a_swapped_weights_file_is_refused_by_probe_run(trained, tmp_path, capsys):
    import hashlib
    import shutil

    images, db, results = trained
    result, _ = results["imagenet"]
    h = result.config_hash
    with Store(db) as store:
        stored = json.loads(store.get(h)["result_json"])
    assert stored["weights_sha256"] == hashlib.sha256((db.parent / stored["weights_file"]).read_bytes()).hexdigest()
    # The store copied, and the other run's file put where this run's was: loadable, the same shapes, not its weights.
    copy = tmp_path / "copy"
    shutil.copytree(db.parent, copy)
    other = results["cifar"][0].weights_file
    shutil.copy(copy / other, copy / stored["weights_file"])
    assert main(["probe", "--db", str(copy / "r.db"), "--run", h]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"run {h}'s weights file" in err and "is not the file that run saved" in err, err
