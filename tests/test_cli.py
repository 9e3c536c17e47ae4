import json
import os
import subprocess
import sys


from resizelab.cli import main

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


def test_offline_study_is_one_clear_line(tmp_path):
    env = dict(os.environ, RESIZELAB_DATA_DIR=str(tmp_path / "nodata"), TORCH_HOME=str(tmp_path / "torch"))
    # The real download path, made to fail the way an offline machine does: no route to any host.
    env["http_proxy"] = env["https_proxy"] = env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"
    proc = subprocess.run([sys.executable, "-m", "resizelab.cli", "study", "--preset", "seed", "--db", str(tmp_path / "r.db")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(tmp_path / "nodata" / "cifar-10-batches-py") in lines[0]
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in lines[0]


def test_presets_and_dry_run(tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "seed" in out and "3 runs" in out and "resolution" in out and "90 runs" in out
    assert main(["sweep", "--data", "synthetic", "--size", "8,16", "--seeds", "2", "--dry-run", "--db", str(tmp_path / "r.db")]) == 0
    assert capsys.readouterr().out.count(" new ") == 4
