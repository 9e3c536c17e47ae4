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
    from resizelab.cli import build_parser
    from resizelab.cli.flags import given_options
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
    assert given_options(args, RunConfig)["test_size"] == "native"
    args = build_parser().parse_args(["run", "--size", "8", "--test-size", "same"])
    assert given_options(args, RunConfig).get("test_size") is None


# --- planning many runs: each input read once --------------------------------------------------

def test_a_plan_of_many_runs_digests_each_data_spec_once(tmp_path, monkeypatch):
    """Naming a grid of runs costs one digest per dataset, not one per run: in the dry-run listing, in the
    sweep's registration, and again in a later plan of the same files in this process (remembered by listing)."""
    from resizelab.training import data, planning
    from resizelab.sweeps.plan import describe, expand
    from resizelab.sweeps.runner import plan_and_register

    first = write_imagefolder(tmp_path / "a", n_train=3, n_val=2)
    second = write_imagefolder(tmp_path / "b", n_train=2, n_val=2)
    write_cifar10(tmp_path / "c" / "cifar-10-batches-py", n_per_batch=2)
    digests, keyings = [], []
    real_digest, real_key = planning.data_digest, data.content_key
    monkeypatch.setattr(planning, "data_digest", lambda *a: digests.append(a) or real_digest(*a))
    monkeypatch.setattr(data, "content_key", lambda kind, *a: keyings.append(kind) or real_key(kind, *a))
    specs = [f"imagefolder:{first}", f"imagefolder:{second}", "cifar10"]
    sweep = expand(dict(weights="none", precision="fp32", data_dir=str(tmp_path / "c")),
                   {"data": specs, "size": [8, 16], "lr": [0.1, 0.01]}, seeds=[0, 1], name="many")
    assert len(sweep.configs) == 24
    listed = describe(sweep, str(tmp_path / "r.db"))
    assert len({h for h, _, _ in listed}) == 24 and "-" * 16 not in {h for h, _, _ in listed}
    assert len(digests) == 3 and sorted(keyings) == ["cifar10", "imagefolder", "imagefolder"]
    with Store(str(tmp_path / "r.db")) as store:
        planned = plan_and_register(sweep, store)
    assert [c.config_hash() for c in planned] == [h for h, _, _ in listed]
    # Planned again (a second plan of many, and the store's register): digests asked for per spec, the content
    # read by none of them, since no file changed.
    assert len(digests) == 6 and len(keyings) == 3


def test_a_changed_file_changes_the_remembered_digest(tmp_path):
    from resizelab.training.data import cifar_digest, imagefolder_digest

    root = write_imagefolder(tmp_path / "a", n_train=3, n_val=2)
    before = imagefolder_digest(root)
    image = root / "train" / "dog" / "1.png"
    stat = image.stat()
    blob = bytearray(image.read_bytes())
    blob[-20] ^= 0xFF  # same size, other bytes ...
    image.write_bytes(bytes(blob))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old modification time: the change time tells
    edited = imagefolder_digest(root)
    assert edited != before
    image.unlink()  # a file gone
    assert imagefolder_digest(root) not in (before, edited)
    folder = write_cifar10(tmp_path / "c" / "cifar-10-batches-py", n_per_batch=2)
    before = cifar_digest("cifar10", tmp_path / "c")
    (folder / "test_batch").write_bytes((folder / "data_batch_1").read_bytes())
    assert cifar_digest("cifar10", tmp_path / "c") != before


def test_a_plan_of_many_runs_that_takes_a_while_says_what_it_is_doing(tmp_path, monkeypatch, caplog):
    import logging
    import time

    from resizelab.training import planning
    from resizelab.sweeps.plan import describe, expand

    root = write_imagefolder(tmp_path / "a", n_train=2, n_val=2)
    real = planning.data_digest
    monkeypatch.setattr(planning, "SLOW_PLANNING_SECONDS", 0.05)
    monkeypatch.setattr(planning, "data_digest", lambda *a: time.sleep(0.5) or real(*a))
    sweep = expand(dict(weights="none", precision="fp32", data=f"imagefolder:{root}"), {"size": [8, 16, 24]}, name="slow")
    with caplog.at_level(logging.INFO, logger="resizelab"):
        describe(sweep, str(tmp_path / "r.db"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"planning 3 runs: reading the files of imagefolder:{root} to name its runs (0 planned so far) ..."]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="resizelab"):
        describe(expand(dict(weights="none", precision="fp32", data="synthetic"), {"size": [8, 16]}, name="quick"), str(tmp_path / "r.db"))
    assert caplog.records == []


def test_the_next_process_reads_the_digest_from_the_cache_folder(tmp_path, monkeypatch, isolated_cache):
    from resizelab.training import data, digests

    root = write_imagefolder(tmp_path / "a", n_train=2, n_val=2)
    digest = data.imagefolder_digest(root)
    monkeypatch.setattr(digests, "_key_memo", {})  # a new process: nothing remembered in memory
    keyings = []
    real = data.content_key
    monkeypatch.setattr(data, "content_key", lambda *a: keyings.append(a) or real(*a))
    assert data.imagefolder_digest(root) == digest and keyings == []
    (remembered,) = (isolated_cache / "digests").iterdir()
    remembered.write_text("not a digest")  # damaged: computed again, and rewritten
    monkeypatch.setattr(digests, "_key_memo", {})
    assert data.imagefolder_digest(root) == digest and len(keyings) == 1
    assert remembered.read_text() == digest


def test_threads_is_an_execution_setting_recorded_per_attempt(tmp_path, capsys):
    from resizelab.api import load_runs
    from resizelab.cli import main

    db = tmp_path / "r.db"
    common = ["run", "--data", "synthetic", "--size", "8", "--epochs", "1", "--limit-train", "48", "--limit-test", "24",
              "--weights", "none", "--precision", "fp32", "--db", str(db), "--quiet"]
    threads = torch.get_num_threads()
    assert main(common + ["--threads", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["config"]["threads"] == 1 and printed["execution"]["threads"] == 1
    assert torch.get_num_threads() == threads  # the run's count was its own
    assert main(common + ["--threads", "2", "--force"]) == 0
    with Store(db) as store:
        (row,) = store.runs()  # one run: the thread count is not part of its name
        attempts = store.attempts(row["config_hash"])
    assert [json.loads(a["execution_json"])["threads"] for a in attempts] == [1, 2]
    assert load_runs(db)["threads_ran"].tolist() == [2] and str(load_runs(db)["threads_ran"].dtype) == "Int64"
    capsys.readouterr()
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "report"), "--split-on", "threads"]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| size | interpolation"))
    assert "threads" in header and len([line for line in md.splitlines() if line.startswith("| 8 |")]) == 2
    assert main(common + ["--force"]) == 0  # the default, auto: at most the count this process computes with
    with Store(db) as store:
        fixed, auto = (json.loads(a["execution_json"]) for a in store.attempts(row["config_hash"])[1:])
    # It adapts: fewer than the process's count while other processes keep cores busy (training.threads).
    assert fixed["threads_policy"] == "fixed" and fixed["thread_changes"] == [[0, 2, "start"]]
    assert auto["threads_policy"] == "auto" and 1 <= auto["threads"] <= threads and auto["thread_changes"][0] == [0, threads, "start"]
    assert load_runs(db)["threads_ran"].tolist() == [auto["threads"]]
    for bad, why in (("0", "threads must be"), ("two", "threads"), ("1,2", "threads")):
        capsys.readouterr()
        assert main(common + ["--threads", bad]) == 2
        err = capsys.readouterr().err
        assert len([line for line in err.splitlines() if line.startswith("resizelab: error:")]) == 1 and why in err
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--threads {auto,N}" in capsys.readouterr().out
