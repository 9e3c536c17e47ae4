import argparse
import json
import os
import re
import subprocess
import sys

import pytest


from resizelab.cli import build_parser, main

from conftest import error_lines, write_imagefolder

FAST = ["--weights", "none", "--epochs", "1", "--lr", "0.01", "--limit-train", "200", "--limit-test", "60", "--precision", "fp32"]


def test_run_json_on_synthetic(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["run", "--data", "synthetic", "--size", "16", "--json", "--db", str(db), *FAST]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    for key in ("config_hash", "config", "test_accuracy", "train_seconds", "images_per_second", "epochs"):
        assert key in out
    assert out["config"]["size"] == 16 and out["epochs"] == 1 and 0 <= out["test_accuracy"] <= 100


@pytest.mark.slow
def test_run_on_an_imagefolder_learns_and_stores(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "imgs", n_train=40, n_val=10)
    db = tmp_path / "r.db"
    assert main(["run", "--data", f"imagefolder:{root}", "--db", str(db), "--weights", "none", "--epochs", "3", "--lr", "0.003",
                 "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "stored as" in out
    from resizelab.store.database import Store
    with Store(db) as store:
        (row,) = store.runs()
    assert row["status"] == "done" and row["test_accuracy"] > 60  # 3 classes: chance is 33%
    prov = json.loads(row["provenance_json"])
    assert {"torch", "torchvision", "device", "git_revision", "antialias_effective", "backend"} <= set(prov)


@pytest.mark.slow  # the seed study end to end (three trainings and the report)
def test_study_seed_prints_the_three_row_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--preset", "seed", "--data", "synthetic", *FAST, "--no-report"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["run", "size", "interpolation"] and "img/s" in lines[0] and "test acc %" in lines[0]
    assert [l.split()[1] for l in lines[2:]] == ["32", "64", "16"]
    # The first column is each run's hash, as serve --run and probe --run take it (a unique prefix).
    from resizelab.store.database import Store
    with Store(tmp_path / "resizelab.db") as store:
        stored = {row["config_hash"] for row in store.runs()}
    assert all(len(l.split()[0]) == 8 and any(h.startswith(l.split()[0]) for h in stored) for l in lines[2:])


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--data", "synthetic", "--interpolation", "cubic", "--db", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interpolation must be one of nearest, bilinear" in err
    assert main(["run", "--data", "synthetic", "--size", "big", "--db", str(tmp_path / "r.db")]) == 2
    assert "--size: expected a whole number" in capsys.readouterr().err
    assert main(["run", "--data", "synthetic", "--single-window-matmul", "maybe", "--db", str(tmp_path / "r.db")]) == 2
    assert "--single-window-matmul: expected auto, true or false" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()


@pytest.mark.slow
def test_offline_study_says_one_complete_line_per_missing_input(tmp_path):
    env = dict(os.environ, RESIZELAB_DATA_DIR=str(tmp_path / "nodata"), TORCH_HOME=str(tmp_path / "torch"),
               PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
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
    # Without CIFAR on this machine a dry run lists the runs it cannot plan yet; each still names its seed.
    seeds = lambda out: sorted(re.search(r" seed=(\d+)", line).group(1) for line in out.strip().splitlines())  # noqa: E731
    assert seeds(capsys.readouterr().out) == ["3", "3", "3"]
    assert main(["study", "--preset", "seed", "--seed", "3,5", "--dry-run", "--db", db]) == 0
    assert seeds(capsys.readouterr().out) == ["3", "3", "3", "5", "5", "5"]
    assert main(["study", "--preset", "seed", "--seed", "3", "--seeds", "2", "--dry-run", "--db", db]) == 2
    assert "not both" in capsys.readouterr().err


# --- every bad input is one line, exit 2, nothing stored ----------------------------------------------------

def _one_line_exit_2(argv, capsys, *, contains: str, db=None) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and err.startswith("resizelab: error: ") and contains in err, err
    if db is not None:
        assert not os.path.exists(db)


@pytest.mark.parametrize("toml, contains", [
    ("[base]\ntest_sizes = 16\n", "test_sizes must be a list"),
    ("[base]\ndevice = 5\n", "device must be a non-empty string"),
    ("[base]\ndata_dir = 5\n", "data_dir must be a non-empty string"),
    ("[grid]\nsize = [16, 'x']\n", "size must be a whole number"),
    ("variants = [1, 2]\n", "array of tables"),
    ("[base]\nsize = 8\n[[variants]]\nlr = 'fast'\n", "lr must be a number"),
])
def test_sweep_file_type_errors_are_one_line(tmp_path, capsys, toml, contains):
    path = tmp_path / "x.toml"
    path.write_text(toml)
    db = tmp_path / "r.db"
    for extra in ([], ["--dry-run"]):
        _one_line_exit_2(["sweep", str(path), "--db", str(db), *extra], capsys, contains=contains, db=db)


def test_unreadable_sweep_files_are_one_line(tmp_path, capsys):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    _one_line_exit_2(["sweep", str(tmp_path / "latin1.toml"), "--dry-run"], capsys, contains="is not UTF-8")
    (tmp_path / "x.toml").mkdir()
    _one_line_exit_2(["sweep", str(tmp_path / "x.toml"), "--dry-run"], capsys, contains="is a folder")


def test_a_preset_with_an_empty_axis_is_one_line(tmp_path, capsys):
    _one_line_exit_2(["study", "--preset", "seed", "--size", ",", "--dry-run", "--db", str(tmp_path / "r.db")], capsys,
                     contains="--size: an empty item in ','")
    # An empty item among values is a typo too, not a value to drop: 16,,32 planned two runs.
    _one_line_exit_2(["study", "--preset", "seed", "--size", "16,,32", "--dry-run", "--db", str(tmp_path / "r.db")], capsys,
                     contains="--size: an empty item in '16,,32'; separate the values with single commas")
    _one_line_exit_2(["spectrum", "--data", "synthetic", "--size", "16,", "--out", str(tmp_path / "s")], capsys,
                     contains="--size: an empty item in '16,'")
    assert not (tmp_path / "s").exists()


def test_huge_plans_are_refused_before_they_are_built(tmp_path, capsys):
    import time

    db = tmp_path / "r.db"
    start = time.monotonic()
    _one_line_exit_2(["sweep", "--data", "synthetic", "--size", "8", "--seeds", "100000000", "--dry-run", "--db", str(db)], capsys,
                     contains="more runs than one sweep takes", db=db)
    _one_line_exit_2(["sweep", "--data", "synthetic", "--size", "8,16,24,32,48", "--seeds", "15000", "--db", str(db)], capsys,
                     contains="plans 75,000 runs (more than 1,000); pass --yes", db=db)
    seeds = tmp_path / "seeds.toml"
    seeds.write_text("seeds = 100000000\n[base]\nsize = 8\n")
    _one_line_exit_2(["sweep", str(seeds), "--dry-run", "--db", str(db)], capsys, contains="more runs than one sweep takes", db=db)
    assert time.monotonic() - start < 10  # refused, not expanded


def test_a_sweep_whose_every_run_failed_exits_non_zero(tmp_path, capsys, one_thread):
    code = main(["sweep", "--data", "synthetic", "--weights", "none", "--size", "8,12", "--epochs", "1", "--limit-train", "128", "--batch-size", "8",
                 "--limit-test", "16", "--lr", "10", "--momentum", "0.99", "--precision", "fp32", "--db", str(tmp_path / "r.db"), "-q"])
    assert code == 1 and "2 runs failed" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_gives_the_run_back_and_says_how_to_resume(tmp_path):
    import signal
    import sqlite3
    import time

    db = tmp_path / "r.db"
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    proc = subprocess.Popen([sys.executable, "-m", "resizelab.cli", "sweep", "--data", "synthetic", "--weights", "none", "--size", "8,12",
                             "--epochs", "50", "--limit-train", "600", "--limit-test", "20", "--precision", "fp32", "--db", str(db), "-q"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def running() -> bool:
        try:
            with sqlite3.connect(db) as c:
                return c.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False

    deadline = time.time() + 120
    while time.time() < deadline and not (db.exists() and running()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "run the same command again to resume" in err
    assert not running()


TINY_RUN = ["--data", "synthetic", "--weights", "none", "--epochs", "1", "--limit-train", "64", "--limit-test", "16",
            "--precision", "fp32", "--size", "8"]


@pytest.mark.parametrize("argv, message", [
    (["sweep", *TINY_RUN, "--lease-seconds", "0"], "lease seconds must be between 3 and 86400; got 0.0"),
    (["sweep", *TINY_RUN, "--lease-seconds", "-5"], "lease seconds must be between 3 and 86400; got -5.0"),
    (["sweep", *TINY_RUN, "--lease-seconds", "nan"], "lease seconds must be between 3 and 86400; got nan"),
    (["sweep", *TINY_RUN, "--size", "2,3"], "size must be between 4 and 1024; got 2"),
    (["run", *TINY_RUN, "--db", ":memory:"], "--db :memory: would keep nothing"),
    (["sweep", *TINY_RUN, "--name", "../elsewhere"], "a sweep name must be non-empty text without '/'"),
    (["run", *TINY_RUN, "--limit-train", "1"], "limit_train 1 is too few images for a training batch: BatchNorm normalises "
                                                "over the batch and needs at least 2"),
    (["study", "--preset", "findings", *TINY_RUN, "--name", "n" * 256], "at most 255 bytes on common file systems; got 256 bytes"),
    (["sweep", *TINY_RUN, "--ray-address", "127.0.0.1:6379"], "a Ray address applies to the ray executor, not 'auto'"),
])
def test_bad_execution_input_is_one_line_exit_2_and_no_store(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = argv if "--db" in argv else [*argv, "--db", str(tmp_path / "r.db")]
    assert main(argv) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert message in line
    assert not (tmp_path / "r.db").exists() and not list(tmp_path.iterdir())


def test_bench_into_a_missing_folder_fails_before_benchmarking(tmp_path, capsys):
    import time

    start = time.perf_counter()
    assert main(["bench", "--data", "synthetic", "--json-out", str(tmp_path / "nope" / "bench.json")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "--json-out" in line and "does not exist" in line
    assert time.perf_counter() - start < 10  # refused up front, not after the benchmark's minutes
    (tmp_path / "out").mkdir()
    assert main(["bench", "--data", "synthetic", "--json-out", str(tmp_path / "out")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert f"--json-out {tmp_path / 'out'} is a folder; give the path of a file" in line
    assert time.perf_counter() - start < 20


def test_a_run_that_fails_is_recorded_as_failed_with_its_reason(tmp_path, capsys, one_thread):
    db = tmp_path / "r.db"
    code = main(["run", "--data", "synthetic", "--weights", "none", "--size", "8", "--epochs", "1", "--limit-train", "128",
                 "--batch-size", "8", "--limit-test", "16", "--lr", "10", "--momentum", "0.99", "--precision", "fp32",
                 "--db", str(db), "-q"])
    assert code == 1 and "failed: diverged" in capsys.readouterr().err
    from resizelab.store.database import Store

    with Store(db) as store:
        (row,) = store.runs()
    assert row["status"] == "failed" and row["error"].startswith("diverged") and row["owner"] is None


def test_report_into_a_path_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["run", *TINY_RUN, "--db", str(db), "-q"]) == 0
    capsys.readouterr()
    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert main(["report", "--db", str(db), "--out", str(out)]) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert str(tmp_path / "afile") in line


def test_a_report_dir_that_is_a_file_is_refused_before_the_sweep_runs(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["sweep", *TINY_RUN, "--db", str(tmp_path / "r.db"), "--report-dir", str(tmp_path / "afile")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.endswith("is a file; give --report-dir a folder") and not (tmp_path / "r.db").exists()


def test_unnamed_flag_sweeps_are_named_after_what_they_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = []
    for size in ("8", "12"):
        argv = [a if a != "8" else size for a in TINY_RUN]
        assert main(["sweep", *argv, "--db", str(tmp_path / "r.db"), "--dry-run"]) == 0
        names.append(re.search(r"in sweep (\S+)", capsys.readouterr().err).group(1))
    assert names[0].startswith("sweep-") and names[1].startswith("sweep-") and names[0] != names[1]


def test_an_unknown_command_is_answered_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["reprot", "--db", "x.db"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.splitlines()[-1].startswith("resizelab: error: unknown command 'reprot' (did you mean 'report'?)")


def test_an_unknown_flag_is_answered_by_its_subcommand_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--siez", "16"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: resizelab sweep ")
    assert err.splitlines()[-1] == "resizelab sweep: error: unrecognized arguments: --siez (did you mean --size?)"


@pytest.mark.parametrize("command", [["spectrum", "--data", "synthetic", "--limit", "20"],
                                     ["probe", "--weights", "none", "--data", "synthetic", "--limit", "20"]])
def test_a_measurement_into_a_file_is_refused_before_measuring(tmp_path, capsys, command):
    import time

    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        start = time.perf_counter()
        assert main([*command, "--out", str(out)]) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert "output folder" in line and "give --report-dir a folder" in line and time.perf_counter() - start < 5


def test_analysis_flags_that_would_be_ignored_or_misread_are_one_line(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["run", *TINY_RUN, "--db", str(db), "-q"]) == 0
    capsys.readouterr()
    for argv, message in ((["report", "--db", str(tmp_path)], f"{tmp_path} is a folder, not a results store"),
                          (["export", "mlflow", "--db", str(tmp_path)], f"{tmp_path} is a folder, not a results store"),
                          (["report", "--db", str(db), "--out", ""], "the report folder must be a path; got ''"),
                          (["probe", "--weights", "none", "--data", "synthetic", "--db", str(db)],
                           "--db names the store that holds --run; add --run HASH, or drop --db")):
        assert main(argv) == 2, argv
        (line,) = error_lines(capsys.readouterr().err)
        assert message in line, (argv, line)
    assert not (tmp_path / "reports").exists()


def test_run_dry_run_names_the_run_trains_nothing_and_creates_no_store(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    argv = ["run", "--data", "synthetic:64:32", "--size", "8", "--weights", "none", "--epochs", "1", "--db", db]
    assert main([*argv, "--dry-run"]) == 0
    planned = capsys.readouterr().out.split()
    assert re.fullmatch(r"[0-9a-f]{16}", planned[0]) and planned[1] == "new" and not os.path.exists(db)
    assert main(argv) == 0
    assert f"stored as {planned[0]} in {db}" in capsys.readouterr().out  # the name it said is the name it stored
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[:2] == [planned[0], "done"]


@pytest.mark.parametrize("argv, says", [
    (["run", "--data", "synthetic", "--limit-train", "0", "--dry-run"], "--limit-train must be at least 1; got 0"),
    (["run", "--data", "synthetic", "--batch-size=0", "--dry-run"], "--batch-size must be between 1 and 65536; got 0"),
    (["run", "--data", "synthetic", "--lr", "-1", "--dry-run"], "--lr must be in (0.0, 10.0]; got -1.0"),
])
def test_a_bad_value_typed_as_a_flag_is_named_by_its_flag(argv, says, tmp_path, capsys, monkeypatch):
    # (A sweep file's bad key keeps the key's own spelling: test_sweep_file_type_errors_are_one_line above.)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"resizelab: error: {says}"], lines
