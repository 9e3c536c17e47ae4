"""The paths a user's first run takes and these machines cannot: cached and downloaded ImageNet weights,
CIFAR-10 downloaded and extracted. The loading code is the real one; the tests arrange where the bytes
come from (a checkpoint in a temporary TORCH_HOME, archives served from 127.0.0.1)."""

import hashlib
import json
import os
import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch
import torchvision

from resizelab.training import models
from resizelab.cli import main
from resizelab.training.data import CIFAR, load_cifar
from resizelab.core.errors import DataUnavailable, WeightsError
from resizelab.training.models import build_model, hub_checkpoint_path, imagenet_weights_url
from resizelab.store.database import Store

from conftest import cifar10_archive, error_lines, write_cifar10, write_imagefolder

REPO = Path(__file__).resolve().parents[1]
RESNET18_FILE = "resnet18-f37072fd.pth"


def make_study_command() -> list[str]:
    """The arguments `make study` passes to resizelab, read from the Makefile so the two cannot drift apart."""
    text = (REPO / "Makefile").read_text()
    match = re.search(r"^STUDY_ARGS\s*:?=\s*(.+)$", text, re.MULTILINE)
    assert match, "Makefile defines STUDY_ARGS"
    return shlex.split(match.group(1))


def plant_checkpoint(monkeypatch, write) -> Path:
    """A checkpoint written by `write(path)` into torch.hub's cache, under a name whose hash prefix matches its
    bytes (as torchvision's own file's does), and torchvision's address pointed at that name; returns its path."""
    checkpoints = Path(hub_checkpoint_path(imagenet_weights_url("resnet18"))).parent
    checkpoints.mkdir(parents=True, exist_ok=True)
    blob = checkpoints / "planted.tmp"
    write(blob)
    path = blob.rename(checkpoints / f"resnet18-{hashlib.sha256(blob.read_bytes()).hexdigest()[:8]}.pth")
    monkeypatch.setattr(models, "imagenet_weights_url", lambda arch: f"https://download.pytorch.org/models/{path.name}")
    return path


def plant_resnet18_checkpoint(monkeypatch) -> dict:
    """A ResNet-18 state_dict in torch.hub's cache (see plant_checkpoint)."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    plant_checkpoint(monkeypatch, lambda path: torch.save(state, path))
    return state


class RunsCode:
    """A pickle that runs a shell command when loaded: what a planted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- ImageNet weights --------------------------------------------------------------------------

def test_cached_checkpoint_is_what_a_pretrained_run_loads(tmp_path, capsys, monkeypatch):
    state = plant_resnet18_checkpoint(monkeypatch)
    model, info = build_model("resnet18", 10, "imagenet")
    backbone = [k for k in state if not k.startswith("fc.")]
    assert info.weights_tag == "ResNet18_Weights.IMAGENET1K_V1" and info.loaded_keys == len(backbone)
    assert torch.equal(model.conv1.weight, state["conv1.weight"]) and torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 10

    # The reproduction, through the CLI.
    root = write_imagefolder(tmp_path / "imgs", n_train=20, n_val=6)
    assert main(["run", "--weights", "imagenet", "--data", f"imagefolder:{root}", "--limit-train", "40", "--epochs", "1",
                 "--precision", "fp32", "--json", "--db", str(tmp_path / "r.db")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights_tag"] == "ResNet18_Weights.IMAGENET1K_V1" and out["weights_loaded_keys"] == len(backbone)


@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_a_planted_code_running_checkpoint_runs_nothing(tmp_path, capsys, monkeypatch, container):
    marker = tmp_path / "pwned"
    # Named with its own hash prefix, so that it passes the name check and meets torch.load(weights_only=True).
    if container == "pickle":
        path = plant_checkpoint(monkeypatch, lambda p: p.write_bytes(pickle.dumps({"conv1.weight": RunsCode(marker)})))
    else:
        path = plant_checkpoint(monkeypatch, lambda p: torch.save({"conv1.weight": RunsCode(marker)}, p))
    with pytest.raises(WeightsError) as info:
        build_model("resnet18", 10, "imagenet")
    assert not marker.exists()
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    root = write_imagefolder(tmp_path / "imgs", n_train=4, n_val=2)
    assert main(["run", "--data", f"imagefolder:{root}", "--epochs", "1", "--db", str(tmp_path / "r.db")]) == 2
    [err] = error_lines(capsys.readouterr().err)  # one error line (after the progress lines)
    assert not marker.exists() and "not a readable state_dict" in err


def test_a_file_at_torchvisions_name_that_does_not_match_its_hash_is_refused(capsys, tmp_path):
    path = Path(hub_checkpoint_path(imagenet_weights_url("resnet18")))
    assert path.name == RESNET18_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(WeightsError, match=f"{RESNET18_FILE} is not torchvision's file: its SHA-256 starts"):
        build_model("resnet18", 10, "imagenet")
    root = write_imagefolder(tmp_path / "imgs", n_train=4, n_val=2)
    assert main(["run", "--data", f"imagefolder:{root}", "--epochs", "1", "--db", str(tmp_path / "r.db")]) == 2
    [err] = error_lines(capsys.readouterr().err)
    assert "its name says f37072fd; delete it" in err and not (tmp_path / "r.db").exists()


def test_weights_download_is_verified_and_stored(serve_files, monkeypatch):
    folder, base = serve_files
    torch.manual_seed(7)
    state = torchvision.models.resnet18().state_dict()
    blob = folder / "blob.pth"
    torch.save(state, blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    served = folder / f"resnet18-{digest[:8]}.pth"
    blob.rename(served)
    monkeypatch.setattr(models, "imagenet_weights_url", lambda arch: f"{base}/{served.name}")
    model, info = build_model("resnet18", 10, "imagenet")
    cached = Path(hub_checkpoint_path(served.name))
    assert cached.read_bytes() == served.read_bytes()
    assert info.weights_tag == "ResNet18_Weights.IMAGENET1K_V1" and torch.equal(model.conv1.weight, state["conv1.weight"])


def test_train_from_python_fetches_the_imagenet_weights_that_name_its_run(serve_files, monkeypatch):
    import resizelab

    folder, base = serve_files
    served = folder / "blob.pth"
    torch.save(torchvision.models.resnet18().state_dict(), served)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    served = served.rename(folder / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setattr(models, "imagenet_weights_url", lambda arch: f"{base}/{served.name}")
    result = resizelab.train(resizelab.RunConfig(data="synthetic:40:20", size=8, epochs=1, precision="fp32"), progress=False)
    assert result.config.weights_digest == digest and result.weights_tag == "ResNet18_Weights.IMAGENET1K_V1"


def test_weights_download_with_a_wrong_hash_is_refused_and_leaves_nothing(serve_files, monkeypatch):
    folder, base = serve_files
    (folder / RESNET18_FILE).write_bytes(b"not the checkpoint whose hash the name promises")
    monkeypatch.setattr(models, "imagenet_weights_url", lambda arch: f"{base}/{RESNET18_FILE}")
    with pytest.raises(WeightsError) as info:
        build_model("resnet18", 10, "imagenet")
    assert "invalid hash value" in str(info.value) and "\n" not in str(info.value)
    checkpoints = Path(hub_checkpoint_path(RESNET18_FILE)).parent
    assert list(checkpoints.iterdir()) == []  # no partial file a later run would load


# --- CIFAR-10 ------------------------------------------------------------------------------------

def test_cifar_download_is_verified_extracted_and_loaded(serve_files, monkeypatch, tmp_path):
    folder, base = serve_files
    _, md5 = cifar10_archive(folder / "cifar-10-python.tar.gz", n_per_batch=12)
    monkeypatch.setitem(CIFAR["cifar10"], "url", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setitem(CIFAR["cifar10"], "md5", md5)
    data_dir = tmp_path / "data"
    dataset = load_cifar("cifar10", data_dir)
    assert dataset.train_images.shape == (60, 3, 32, 32) and dataset.test_images.shape == (12, 3, 32, 32)
    assert dataset.classes[0] == "airplane"
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py"]  # no archive or scratch left
    # What was extracted is what was served, byte for byte.
    original = write_cifar10(tmp_path / "original", n_per_batch=12)
    assert (data_dir / "cifar-10-batches-py" / "data_batch_3").read_bytes() == (original / "data_batch_3").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_bad_cifar_archive_is_refused_and_leaves_nothing_trusted(serve_files, monkeypatch, tmp_path, damage):
    folder, base = serve_files
    archive, md5 = cifar10_archive(folder / "cifar-10-python.tar.gz", n_per_batch=12)
    good = archive.read_bytes()
    if damage == "truncated":
        # Cut mid-stream, with the checksum of what is served: the checksum passes, extraction must not.
        archive.write_bytes(good[: len(good) // 2])
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    else:
        archive.write_bytes(good[:100] + bytes(b ^ 0xFF for b in good[100:200]) + good[200:])
    monkeypatch.setitem(CIFAR["cifar10"], "url", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setitem(CIFAR["cifar10"], "md5", md5)
    data_dir = tmp_path / "data"
    with pytest.raises(DataUnavailable) as info:
        load_cifar("cifar10", data_dir)
    assert "\n" not in str(info.value) and str(data_dir / "cifar-10-batches-py") in str(info.value)
    assert list(data_dir.iterdir()) == []
    # The next run, with the right archive served, downloads it afresh and works.
    archive.write_bytes(good)
    monkeypatch.setitem(CIFAR["cifar10"], "md5", hashlib.md5(good).hexdigest())
    assert len(load_cifar("cifar10", data_dir).train_labels) == 60


def test_a_cifar_archive_put_in_the_data_dir_is_used_offline(monkeypatch, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _, md5 = cifar10_archive(data_dir / "cifar-10-python.tar.gz", n_per_batch=8)
    monkeypatch.setitem(CIFAR["cifar10"], "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens
    monkeypatch.setitem(CIFAR["cifar10"], "md5", md5)
    assert len(load_cifar("cifar10", data_dir).train_labels) == 40


@pytest.mark.slow
def test_make_study_with_cached_weights_and_cifar_files(tmp_path, monkeypatch, capsys, isolated_cache):
    """`make study`'s own command, with the data location and subset limits as the only additions."""
    state = plant_resnet18_checkpoint(monkeypatch)
    write_cifar10(Path(os.environ["RESIZELAB_DATA_DIR"]) / "cifar-10-batches-py", n_per_batch=40)
    monkeypatch.chdir(tmp_path)
    command = make_study_command()
    assert command[:3] == ["study", "--preset", "seed"]
    assert main([*command, "--limit-train", "120", "--limit-test", "40", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines[2:5]] == ["32", "64", "16"]  # the results table after its run column (Findings may follow)
    with Store(tmp_path / "resizelab.db") as store:
        rows = store.runs(status="done")
    assert len(rows) == 3
    backbone = len([k for k in state if not k.startswith("fc.")])
    for row in rows:
        result = json.loads(row["result_json"])
        assert result["weights_tag"] == "ResNet18_Weights.IMAGENET1K_V1" and result["weights_loaded_keys"] == backbone
        assert result["config"]["backend"] == "pil" and result["config"]["lr"] == 0.001 and result["config"]["batch_size"] == 32
    assert (tmp_path / "reports").is_dir()


# --- data directories of another kind, finished runs ----------------------------------------------

def test_env_and_run_tell_a_folder_of_another_kind(tmp_path, capsys, monkeypatch):
    root = write_imagefolder(tmp_path / "imgs", n_train=2, n_val=1)
    assert main(["env", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "present" not in out.split("data cifar100")[1].splitlines()[0]
    assert f"holds an ImageFolder tree (use --data imagefolder:{root})" in out
    monkeypatch.setitem(CIFAR["cifar100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    db = tmp_path / "r.db"
    assert main(["run", "--data", "cifar100", "--data-dir", str(root), "--weights", "none", "--db", str(db)]) == 2
    [err] = error_lines(capsys.readouterr().err)
    assert "ImageFolder tree" in err and not db.exists()


def test_run_of_a_finished_config_prints_it_and_force_keeps_both(tmp_path, capsys):
    db = tmp_path / "r.db"
    args = ["run", "--data", "synthetic", "--size", "16", "--weights", "none", "--epochs", "1", "--limit-train", "64",
            "--limit-test", "32", "--precision", "fp32", "--db", str(db)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "already stored as" in again and "--force" in again
    # The same numbers, printed from the store rather than trained again.
    assert first.splitlines()[:4] == again.splitlines()[:4]
    with Store(db) as store:
        (row,) = store.runs()
        before = row["result_json"]
    assert main([*args, "--force"]) == 0
    assert "attempt 2; earlier results kept" in capsys.readouterr().out
    with Store(db) as store:
        attempts = store.attempts(row["config_hash"])
        (row,) = store.runs()
    assert [a["status"] for a in attempts] == ["done", "done"] and attempts[0]["result_json"] == before
    assert row["status"] == "done" and row["result_json"] == attempts[1]["result_json"]
