import argparse
import json
import os
import subprocess
import sys


from resizelab.cli import build_parser, main

from conftest import write_imagefolder

FAST = ["--weights", "none", "--epochs", "1", "--lr", "0.01", "--limit-train", "200", "--limit-test", "60", "--precision", "fp32"]


def test_run_json_on_synthetic(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["run", "--data", "synthetic", "--size", "16", "--json", "--db", str(db), *FAST]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    for key in ("config_hash", "config", "test_accuracy", "train_seconds", "images_per_second", "epochs"):
        assert key in out
    assert out["config"]["size"] == 16 and out["epochs"] == 1 and 0 <= out["test_accuracy"] <= 100


def test_run_on_an_imagefolder_learns_and_stores(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "imgs", n_train=40, n_val=10)
    db = tmp_path / "r.db"
    assert main(["run", "--data", f"imagefolder:{root}", "--db", str(db), "--weights", "none", "--epochs", "3", "--lr", "0.003",
                 "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "stored as" in out
    from resizelab.store import Store
    with Store(db) as store:
        (row,) = store.runs()
    assert row["status"] == "done" and row["test_accuracy"] > 60  # 3 classes: chance is 33%
    prov = json.loads(row["provenance_json"])
    assert {"torch", "torchvision", "device", "git_revision", "antialias_effective", "backend"} <= set(prov)


def test_study_seed_prints_the_three_row_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--preset", "seed", "--data", "synthetic", *FAST, "--no-report"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["size", "interpolation"] and "img/s" in lines[0] and "test acc %" in lines[0]
    assert [l.split()[0] for l in lines[2:]] == ["32", "64", "16"]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--data", "synthetic", "--interpolation", "cubic", "--db", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interpolation must be one of nearest, bilinear" in err
    assert main(["run", "--data", "synthetic", "--size", "big", "--db", str(tmp_path / "r.db")]) == 2
    assert "--size: expected a whole number" in capsys.readouterr().err
    assert main(["run", "--data", "synthetic", "--single-window-matmul", "maybe", "--db", str(tmp_path / "r.db")]) == 2
    assert "--single-window-matmul: expected auto, true or false" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()


def test_offline_study_says_one_complete_line_per_missing_input(tmp_path):
    env = dict(os.environ, RESIZELAB_DATA_DIR=str(tmp_path / "nodata"), TORCH_HOME=str(tmp_path / "torch"))
    # The real download path, made to fail the way an offline machine does: no route to any host.
    env["http_proxy"] = env["https_proxy"] = env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"
    proc = subprocess.run([sys.executable, "-m", "resizelab.cli", "study", "--preset", "seed", "--db", str(tmp_path / "r.db"), "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr  # -q: nothing but the two errors
    data, weights = lines
    # Each line on its own says what is missing, where it was looked for, where it comes from, and how to
    # point resizelab at a copy fetched on another machine.
    assert data.startswith("resizelab: error: cifar10 not found at " + str(tmp_path / "nodata" / "cifar-10-batches-py"))
    for part in ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz there", "--data-dir",
                 "RESIZELAB_DATA_DIR"):
        assert part in data, part
    assert weights.startswith("resizelab: error: ImageNet weights not found at "
                              + str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"))
    for part in ("https://download.pytorch.org/models/resnet18-f37072fd.pth", "TORCH_HOME", "--weights PATH"):
        assert part in weights, part
    assert not (tmp_path / "r.db").exists()  # stopped before the store was touched


def test_every_flag_of_every_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "study", "sweep", "export", "report", "env", "bench", "spectrum", "probe", "presets"} <= set(commands)
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}: no help"
            assert not str(action.metavar or "").startswith("OPT_"), f"{name} {action.option_strings}: metavar {action.metavar}"
        flags = {s for a in sub._actions for s in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, name
    for name in ("run", "study", "sweep"):
        assert "--mlflow" in {s for a in commands[name]._actions for s in a.option_strings}
    for name in ("study", "sweep"):
        assert {"--report-dir", "--no-report"} <= {s for a in commands[name]._actions for s in a.option_strings}


def test_presets_and_dry_run(tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "seed" in out and "3 runs" in out and "resolution" in out and "90 runs" in out
    assert main(["sweep", "--data", "synthetic", "--size", "8,16", "--seeds", "2", "--dry-run", "--db", str(tmp_path / "r.db")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count(" new ") == 4 and "4 runs in sweep sweep" in captured.err
    assert main(["sweep", "--data", "synthetic", "--size", "8", "--dry-run", "--db", str(tmp_path / "r.db")]) == 0
    assert "1 run in sweep sweep" in capsys.readouterr().err


def test_a_scalar_seed_reaches_the_preset(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    assert main(["study", "--preset", "seed", "--seed", "3", "--dry-run", "--db", db]) == 0
    labels = capsys.readouterr().out.strip().splitlines()
    assert len(labels) == 3 and all(line.endswith("seed=3") for line in labels)
    assert main(["study", "--preset", "seed", "--seed", "3,5", "--dry-run", "--db", db]) == 0
    assert sorted(line.rsplit("=", 1)[1] for line in capsys.readouterr().out.strip().splitlines()) == ["3", "3", "3", "5", "5", "5"]
    assert main(["study", "--preset", "seed", "--seed", "3", "--seeds", "2", "--dry-run", "--db", db]) == 2
    assert "not both" in capsys.readouterr().err
