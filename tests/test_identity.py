"""A run's name is what ran: precision resolved before hashing, data and weights named by content, execution
settings kept per attempt, and a store of another layout refused."""

import json
import os
import shutil
import sqlite3

import pytest
import torch

from resizelab.training import provenance
from resizelab.core.config import RunConfig
from resizelab.training.planning import plan, run_hash
from resizelab.core.errors import ConfigError
from resizelab.store.database import SCHEMA_VERSION, Store, StoreError

from conftest import write_cifar10, write_imagefolder

TINY = dict(weights="none", epochs=1, limit_train=48, limit_test=24, lr=0.01)


def test_auto_precision_is_resolved_before_hashing(monkeypatch):
    cfg = RunConfig(weights="none", data="synthetic", size=16)
    monkeypatch.setattr(provenance, "cpu_supports_bf16", lambda: True)  # a CPU with native bf16 ...
    on_bf16 = plan(cfg)
    monkeypatch.setattr(provenance, "cpu_supports_bf16", lambda: False)  # ... and one without
    on_fp32 = plan(cfg)
    assert (on_bf16.precision, on_fp32.precision) == ("bf16", "fp32")
    assert on_bf16.precision_requested == on_fp32.precision_requested == "auto"
    # Two machines, two runs: a sweep on the second never skips its fp32 run as done by the first's bf16 one.
    assert run_hash(on_bf16) != run_hash(on_fp32)
    assert run_hash(on_fp32) == run_hash(RunConfig(weights="none", data="synthetic", size=16, precision="fp32"))
    assert run_hash(on_bf16) == run_hash(RunConfig(weights="none", data="synthetic", size=16, precision="bf16"))


def test_an_fp32_and_a_bf16_run_are_two_rows(tmp_path, monkeypatch):
    from resizelab.sweeps.plan import expand
    from resizelab.sweeps.runner import SweepOptions, run_sweep

    db = str(tmp_path / "r.db")
    plan = expand(dict(TINY, data="synthetic", size=8), name="p")
    for native_bf16 in (True, False):
        monkeypatch.setattr(provenance, "cpu_supports_bf16", lambda v=native_bf16: v)
        outcome = run_sweep(plan, SweepOptions(db=db, progress=False), quiet=True)
        assert len(outcome.ran) == 1 and outcome.already_done == 0
    with Store(db) as store:
        rows = store.runs()
    assert sorted(json.loads(r["config_json"])["precision"] for r in rows) == ["bf16", "fp32"]
    assert {r["result_json"] and json.loads(r["result_json"])["effective_precision"] for r in rows} == {"bf16", "fp32"}


def test_imagefolder_is_named_by_content_not_path(tmp_path):
    root = write_imagefolder(tmp_path / "a", n_train=4, n_val=2)
    cfg = RunConfig(weights="none", data=f"imagefolder:{root}", size=16, precision="fp32")
    before = run_hash(cfg)
    moved = tmp_path / "b"
    shutil.copytree(root, moved)
    assert run_hash(RunConfig(weights="none", data=f"imagefolder:{moved}", size=16, precision="fp32")) == before
    # An image edited in place, at the same path: another run.
    from PIL import Image

    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "train" / "cat" / "0.png")
    assert run_hash(cfg) != before
    # The path is kept (where to read it), but not in the hash.
    assert plan(cfg).data == f"imagefolder:{root}" and len(plan(cfg).data_digest) == 16


def test_an_empty_class_folder_makes_another_dataset_and_another_cache(tmp_path, isolated_cache):
    from resizelab.training.data import imagefolder_digest, load_imagefolder

    root = write_imagefolder(tmp_path / "a", n_train=2, n_val=1)
    before, first = imagefolder_digest(root), load_imagefolder(root)
    cfg = RunConfig(weights="none", data=f"imagefolder:{root}", size=16, precision="fp32")
    named = run_hash(cfg)
    (root / "train" / "zebra").mkdir()
    (root / "val" / "zebra").mkdir()
    # Another class list is another head and another confusion matrix: another dataset, named and cached apart.
    assert imagefolder_digest(root) != before and run_hash(cfg) != named
    second = load_imagefolder(root)
    assert first.classes == ("cat", "dog", "ship") and second.classes == ("cat", "dog", "ship", "zebra")


def test_weights_file_is_named_by_content(tmp_path):
    from resizelab.training.models import build_model

    model, _ = build_model("resnet18", 10, "none")
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    cfg = RunConfig(data="synthetic", size=16, precision="fp32", weights=str(path))
    before = run_hash(cfg)
    os.rename(path, tmp_path / "elsewhere.pt")
    assert run_hash(RunConfig(data="synthetic", size=16, precision="fp32", weights=str(tmp_path / "elsewhere.pt"))) == before
    state = model.state_dict()
    state["conv1.weight"] = state["conv1.weight"] + 1
    torch.save(state, path)  # replaced at the same path
    assert run_hash(cfg) != before


def test_cifar_data_dir_is_named_by_the_batches(tmp_path):
    write_cifar10(tmp_path / "one" / "cifar-10-batches-py")
    shutil.copytree(tmp_path / "one", tmp_path / "copy")
    other = write_cifar10(tmp_path / "two" / "cifar-10-batches-py")
    (other / "test_batch").write_bytes((tmp_path / "one" / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    hashes = [run_hash(RunConfig(weights="none", data="cifar10", data_dir=str(tmp_path / d), size=16, precision="fp32"))
              for d in ("one", "copy", "two")]
    assert hashes[0] == hashes[1] != hashes[2]


def test_execution_settings_are_stored_per_attempt_and_reported(tmp_path, capsys):
    from resizelab.cli import main

    db = tmp_path / "r.db"
    common = ["run", "--data", "synthetic", "--size", "8", "--epochs", "1", "--limit-train", "48", "--limit-test", "24",
              "--weights", "none", "--precision", "fp32", "--db", str(db), "--quiet"]
    assert main(common) == 0
    assert main(common + ["--force", "--channels-last", "false", "--single-window-matmul", "false"]) == 0
    with Store(db) as store:
        (row,) = store.runs()
        attempts = store.attempts(row["config_hash"])
    assert [json.loads(a["execution_json"])["channels_last"] for a in attempts] == [True, False]
    # The config keeps what was asked (auto, then false); the execution record keeps what ran (on a CPU: on, then off).
    assert [json.loads(a["config_json"])["single_window_matmul"] for a in attempts] == [None, False]
    assert [json.loads(a["execution_json"])["single_window_matmul"] for a in attempts] == [True, False]
    # The run row holds the config that ran last, not the text registered first.
    assert json.loads(row["config_json"])["single_window_matmul"] is False
    assert json.loads(row["execution_json"])["channels_last"] is False
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", "--db", str(db), "--out", str(out), "--split-on", "channels_last"]) == 0
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| size | interpolation"))
    column = [c.strip() for c in header.split("|")].index("channels\\_last")
    rows = [[c.strip() for c in line.split("|")] for line in md.splitlines() if line.startswith("| 8 |")]
    # One configuration per layout, each of one finished attempt: the rerun did not replace the first.
    assert sorted(r[column] for r in rows) == ["false", "true"]
    assert main(["report", "--db", str(db), "--out", str(out), "--split-on", "colour"]) == 2
    assert "not an execution setting" in capsys.readouterr().err


def test_register_does_not_leave_stale_config_text(tmp_path):
    with Store(tmp_path / "r.db") as store:
        a = RunConfig(weights="none", data="synthetic", size=8, precision="fp32", eval_batch_size=64)
        store.register([a])
        store.register([RunConfig(weights="none", data="synthetic", size=8, precision="fp32", eval_batch_size=128)])
        (row,) = store.runs()
        assert json.loads(row["config_json"])["eval_batch_size"] == 128


def test_an_older_or_newer_store_is_refused_with_one_line(tmp_path):
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as c:  # the layout before schema versions: a runs table, user_version 0
        c.execute("CREATE TABLE runs (config_hash TEXT PRIMARY KEY, config_json TEXT NOT NULL)")
    with pytest.raises(StoreError, match="older resizelab .*pass --db to a new file") as info:
        Store(old)
    assert "\n" not in str(info.value)
    newer = tmp_path / "new.db"
    Store(newer).close()
    with sqlite3.connect(newer) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer resizelab"):
        Store(newer)
    with pytest.raises(ConfigError, match="not a resizelab results store"):
        __import__("resizelab.api", fromlist=["x"]).load_runs(old)


def test_the_cached_imagenet_checkpoint_is_verified_and_names_the_run(tmp_path, monkeypatch):
    import hashlib

    from resizelab.core.errors import WeightsError
    from resizelab.training import models

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model, _ = models.build_model("resnet18", 1000, "none")
    cfg = RunConfig(data="synthetic", size=16, precision="fp32")  # weights imagenet, the default
    # Not downloaded yet: the run cannot be named (as with data not here), and says where the file goes.
    with pytest.raises(WeightsError, match="the ImageNet weights for resnet18 are not at .*resnet18-f37072fd.pth yet"):
        run_hash(cfg)
    # Another file at torchvision's path: refused before it is loaded, not tagged as torchvision's weights.
    torch.save(model.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth is not torchvision's file: its SHA-256 starts [0-9a-f]{8}, "
                                           "its name says f37072fd; delete it"):
        run_hash(cfg)
    with pytest.raises(WeightsError, match="is not torchvision's file"):
        models.build_model("resnet18", 10, "imagenet")
    # A checkpoint whose content matches the prefix in its name loads, and its SHA-256 is part of the run's name.
    data = (checkpoints / "resnet18-f37072fd.pth").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (checkpoints / f"resnet18-{digest[:8]}.pth").write_bytes(data)
    monkeypatch.setattr(models, "imagenet_weights_url", lambda arch: f"https://download.pytorch.org/models/resnet18-{digest[:8]}.pth")
    assert plan(cfg).weights_digest == digest
    assert run_hash(cfg) != run_hash(RunConfig(data="synthetic", size=16, precision="fp32", weights_digest="0" * 64))
    _, info = models.build_model("resnet18", 10, "imagenet")
    assert info.weights_tag == "ResNet18_Weights.IMAGENET1K_V1" and info.loaded_keys > 0


def test_test_size_native_means_no_resize_at_test_not_the_train_size():
    from resizelab.cli import _run_options, build_parser
    from resizelab.training.engine import train

    base = dict(data="synthetic:40:20", size=8, precision="fp32", weights="none", epochs=1, limit_train=20, limit_test=10)
    same, native = RunConfig(**base), RunConfig(**base, test_size="native")
    assert plan(same).test_size == 8 and plan(native).test_size is None
    assert run_hash(native) != run_hash(same) == run_hash(RunConfig(**base, test_size=8)) == run_hash(RunConfig(**base, test_size="same"))
    # A native-size run tested natively is the plain native run: one name.
    assert run_hash(RunConfig(**{**base, "size": None}, test_size="native")) == run_hash(RunConfig(**{**base, "size": None}))
    result = train(native, progress=False)
    assert [e.size_px for e in result.evals] == [32]  # the synthetic images' own size, not the 8 px it trained at
    args = build_parser().parse_args(["run", "--size", "8", "--test-size", "native"])
    assert _run_options(args, grid=False)["test_size"] == "native"
    args = build_parser().parse_args(["run", "--size", "8", "--test-size", "same"])
    assert _run_options(args, grid=False).get("test_size") is None
