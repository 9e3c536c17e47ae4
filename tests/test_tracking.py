"""MLflow tracking against a real local MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from resizelab.core.errors import ConfigError, MissingDependency
from resizelab.core.results import EXECUTION_DETAILS, EXECUTION_KEYS
from resizelab.report.tracking import TAG_CONFIG_HASH, TAG_SWEEP, default_tracking_uri, export_store_to_mlflow, log_result_to_mlflow
from tiny_store import build_tiny_store

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed: pip install 'resizelab[mlflow]'")
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow 3.17 with SQLAlchemy 2.1 warns about its own use of `noload`: not ours to fix, and not news in every run.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return build_tiny_store(tmp_path_factory)


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory):
    """One MLflow store for the tests that name their own experiments: creating one runs MLflow's
    schema migrations, seconds on a busy machine."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch):
    # Tests send no usage telemetry, and an MLFLOW_TRACKING_URI of the machine must not leak in.
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], run_view_type=mlflow.entities.ViewType.ALL) if exp else []


@pytest.mark.slow
def test_log_result_writes_params_metrics_tags_and_artifacts(tiny_store, tracking_dir, tmp_path, monkeypatch):
    _, results, hashes = tiny_store
    result = results["16px"]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts must land beside the tracking store, not in the working folder
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# tiny\n")
    uri = f"sqlite:///{tracking_dir / 'mlflow.db'}"

    run_id = log_result_to_mlflow(result, uri, "tiny-exp", report_dir=report, sweep="tiny")

    [run] = _runs(uri, "tiny-exp")
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.info.run_name == result.config.label()
    params = run.data.params
    assert set(params) == set(result.config.to_dict()) | {f"execution.{k}" for k in EXECUTION_KEYS + EXECUTION_DETAILS}
    assert params["threads"] == "null" and params["execution.threads"] == str(result.execution["threads"]) != "null"
    assert (params["size"], params["data"], params["test_sizes"], params["epochs"]) == ("16", "synthetic", "[32]", "2")
    assert params["limit_train"] == "64" and params["channels_last"] == "null"
    tags = run.data.tags
    assert tags[TAG_CONFIG_HASH] == hashes["16px"] and tags[TAG_SWEEP] == "tiny"
    assert tags["resizelab.effective_precision"] == "fp32" and tags["resizelab.weights_tag"] == "none"
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    by_size = {ev.size_px: ev.accuracy for ev in result.evals}
    assert (metrics["test_accuracy_16px"], metrics["test_accuracy_32px"]) == pytest.approx((by_size[16], by_size[32]))
    for name in ("train_seconds", "images_per_second", "macs_per_image", "params", "peak_memory_bytes"):
        assert metrics[name] == pytest.approx(getattr(result, name)), name
    client = MlflowClient(uri)
    for metric, attr in (("train_loss", "train_loss"), ("train_accuracy", "train_accuracy"), ("epoch_seconds", "seconds")):
        history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([getattr(e, attr) for e in result.epochs])
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"provenance.json", "result.json", "report/report.md"} <= artifacts
    local = client.download_artifacts(run_id, "provenance.json", str(tmp_path))
    with open(local) as f:
        provenance = json.load(f)
    assert provenance["git_revision"] == result.provenance["git_revision"]
    assert provenance["device"] == result.provenance["device"]
    assert run.info.artifact_uri.startswith((tracking_dir / "mlartifacts").as_uri())
    assert list(elsewhere.iterdir()) == []


def test_export_logs_each_finished_run_once(tiny_store, tracking_dir, tmp_path):
    db, results, hashes = tiny_store
    uri = f"sqlite:///{tracking_dir / 'mlflow.db'}"
    client = MlflowClient(uri)
    # A log that broke off half way: FAILED, so the export must log that run properly, not skip it.
    experiment_id = client.create_experiment("export-exp", artifact_location=(tmp_path / "art").as_uri())
    broken = client.create_run(experiment_id, tags={TAG_CONFIG_HASH: hashes["native"]})
    client.set_terminated(broken.info.run_id, "FAILED")

    assert export_store_to_mlflow(db, uri, "export-exp") == 2
    assert export_store_to_mlflow(db, uri, "export-exp") == 0
    finished = [r for r in _runs(uri, "export-exp") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags[TAG_CONFIG_HASH] for r in finished) == sorted([hashes["16px"], hashes["native"]])
    by_hash = {r.data.tags[TAG_CONFIG_HASH]: r for r in finished}
    assert by_hash[hashes["16px"]].data.tags[TAG_SWEEP] == "other, tiny"
    native = by_hash[hashes["native"]]
    assert native.data.params["size"] == "null" and native.data.metrics["test_accuracy_32px"] == pytest.approx(
        results["native"].test_accuracy)
    history = client.get_metric_history(native.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, pytest.approx(results["native"].epochs[0].train_loss))]
    # The failed and the pending run of the store are not finished runs: nothing to export.
    assert hashes["failed"] not in by_hash and hashes["pending"] not in by_hash


def test_export_defaults_to_a_store_beside_the_database(tiny_store, tmp_path):
    db, _, hashes = tiny_store
    copy = tmp_path / "runs.db"
    shutil.copy(db, copy)
    assert export_store_to_mlflow(copy, sweep="other") == 1  # the other sweep has one finished run
    assert (tmp_path / "mlflow.db").is_file() and default_tracking_uri(copy) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    [run] = _runs(default_tracking_uri(copy), "resizelab")
    assert run.data.tags[TAG_CONFIG_HASH] == hashes["16px"] and run.data.tags[TAG_SWEEP] == "other"
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    # The whole store later: the run already logged is skipped.
    assert export_store_to_mlflow(copy) == 1


@pytest.mark.parametrize("missing", ["mlflow", "sqlalchemy"])
def test_without_mlflow_the_error_names_the_extra(tiny_store, tmp_path, monkeypatch, missing):
    db, _, _ = tiny_store
    monkeypatch.setitem(sys.modules, missing, None)  # what `import` meets when the package is not installed
    with pytest.raises(MissingDependency) as info:
        export_store_to_mlflow(db, f"sqlite:///{tmp_path / 'mlflow.db'}")
    message = str(info.value)
    assert "\n" not in message and missing in message and "pip install 'resizelab[mlflow]'" in message
    assert not (tmp_path / "mlflow.db").exists()


SWEEP = ["sweep", "--data", "synthetic", "--weights", "none", "--epochs", "2", "--limit-train", "64", "--limit-test", "32",
         "--precision", "fp32", "--lr", "0.01", "--size", "8,16", "--name", "ml"]


@pytest.mark.slow  # a sweep logged to MLflow end to end
def test_sweep_with_mlflow_logs_each_run_and_the_report(tmp_path, monkeypatch, capsys):
    from resizelab.cli import main
    from resizelab.store.database import Store

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "r.db"
    assert main([*SWEEP, "--db", str(db), "--mlflow", "--report-dir", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert f"MLflow: logging to sqlite:///{tmp_path / 'mlflow.db'}" in err and "MLflow: report logged" in err
    assert (tmp_path / "rep" / "report.html").is_file()  # sweep writes its report as study does
    with Store(db) as store:
        stored = {row["config_hash"]: json.loads(row["config_json"]) for row in store.runs(sweep="ml")}
    assert len(stored) == 2

    # Read back with MLflow's own client, from the default store beside the database.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = _runs(uri, "resizelab")
    by_hash = {r.data.tags[TAG_CONFIG_HASH]: r for r in runs if TAG_CONFIG_HASH in r.data.tags}
    assert set(by_hash) == set(stored)
    for config_hash, config in stored.items():
        run = by_hash[config_hash]
        assert run.info.status == "FINISHED" and run.data.tags[TAG_SWEEP] == "ml"
        assert run.data.params["size"] == str(config["size"]) and run.data.params["epochs"] == "2"
        assert set(run.data.params) == set(config) | {f"execution.{k}" for k in EXECUTION_KEYS + EXECUTION_DETAILS}
        history = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2]
        assert 0 <= run.data.metrics["test_accuracy"] <= 100
    [report] = [r for r in runs if r.data.tags.get("resizelab.kind") == "report"]
    assert report.info.run_name == "report: ml" and report.data.tags[TAG_SWEEP] == "ml"
    assert {a.path for a in client.list_artifacts(report.info.run_id, "report")} >= {"report/report.html", "report/runs.csv"}

    # Again: nothing trains, nothing is logged twice, and the report is not stacked up again.
    assert main([*SWEEP, "--db", str(db), "--mlflow", "--report-dir", str(tmp_path / "rep")]) == 0
    assert len(_runs(uri, "resizelab")) == 3
    # The export logs the same runs to another store, once.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    capsys.readouterr()
    assert main(["export", "mlflow", "--db", str(db), "--uri", other, "--experiment", "copy"]) == 0
    assert capsys.readouterr().out.strip() == f"logged 2 runs to {other}, experiment copy"
    assert main(["export", "mlflow", "--db", str(db), "--uri", other, "--experiment", "copy", "--sweep", "ml"]) == 0
    assert "logged 0 runs" in capsys.readouterr().out
    assert sorted(r.data.tags[TAG_CONFIG_HASH] for r in _runs(other, "copy")) == sorted(stored)


def test_mlflow_flag_errors_are_one_line_before_anything_is_stored(tmp_path, monkeypatch, capsys):
    from resizelab.cli import main

    db = tmp_path / "r.db"
    # `sweep --mlflow grid.toml`: the file was taken for the URI.
    assert main([*SWEEP, "--db", str(db), "--mlflow", "grid.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--mlflow: 'grid.toml' is not a tracking URI (a sweep file goes before --mlflow)" in err
    # The most common MLflow habit, a ./mlruns folder: MLflow 3 refuses file stores, so say so before training.
    assert main([*SWEEP, "--db", str(db), "--mlflow", "./mlruns"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MLflow's file store, which MLflow 3 refuses; use a database such as sqlite:///mlflow.db" in err
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import` meets when the package is not installed
    assert main([*SWEEP, "--db", str(db), "--mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "resizelab: error: MLflow tracking needs mlflow, which is not installed: pip install 'resizelab[mlflow]'"
    assert not db.exists() and not (tmp_path / "mlflow.db").exists()


def test_a_tracking_store_that_cannot_be_used_is_one_line_at_once(tiny_store, tmp_path, capsys):
    import socket
    import time

    from resizelab.cli import main

    db, _, _ = tiny_store
    (tmp_path / "afile.txt").write_text("not a database")
    with socket.socket() as s:  # a port that was free a moment ago: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cases = [(["--uri", "notascheme"], "'notascheme' is not a tracking URI"),
             (["--uri", f"sqlite:///{tmp_path / 'afile.txt'}"], "afile.txt is not an SQLite database"),
             (["--uri", f"sqlite:///{tmp_path / 'missing' / 'm.db'}"], f"folder {tmp_path / 'missing'} does not exist"),
             (["--uri", f"http://127.0.0.1:{port}"], f"no MLflow server answers at http://127.0.0.1:{port}"),
             (["--experiment", ""], "the MLflow experiment name must be non-empty text"),
             (["--uri", "ftp://host/mlflow"], "MLflow cannot track to 'ftp://host/mlflow' (scheme ftp:)"),
             (["--uri", (tmp_path / "mlruns").as_uri()], "is a file store (a folder path or file: URI is MLflow's file store, "
              "which MLflow 3 refuses; use a database such as sqlite:///mlflow.db)"),
             (["--uri", "./mlruns"], "'./mlruns' is not a tracking URI (a folder path or file: URI is MLflow's file store")]
    for flags, message in cases:
        start = time.perf_counter()
        assert main(["export", "mlflow", "--db", str(db), *flags]) == 2, flags
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("resizelab: error:")]
        assert message in line and time.perf_counter() - start < 10, (flags, line)
    # Nothing was made where nothing was asked for: no folder for the missing one, no store beside the database.
    assert not (tmp_path / "missing").exists() and not (tmp_path / "mlruns").exists()


def test_the_server_check_tells_an_address_that_answers_from_one_that_does_not():
    """The check passes an http URI while something listens there and refuses the same URI, in one line naming it,
    once nothing does (a check that always passed, or always refused, fails here)."""
    import socket

    from resizelab.report.tracking import check_tracking_uri

    with socket.socket() as server:  # something listening on 127.0.0.1, as an MLflow server would be
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        check_tracking_uri(uri, "resizelab")  # no error: MLflow takes it from here
    with pytest.raises(ConfigError, match=f"no MLflow server answers at {uri} ") as refused:
        check_tracking_uri(uri, "resizelab")
    assert "\n" not in str(refused.value)
