"""MLflow tracking: one resizelab run as one MLflow run, and a results store exported to MLflow.

A run's resolved config becomes params, its config hash the tag `resizelab.config_hash`, its epochs
metric histories (step = epoch), its results final metrics, its provenance and full result JSON
artifacts. MLflow is imported only here and only when called (`pip install 'resizelab[mlflow]'`);
nothing here imports torch, so exporting a store needs no training stack.

The default tracking store is `sqlite:///<folder of the results db>/mlflow.db`. Current MLflow
(3.17, which the tests run) logs to a SQLite database by default (`sqlite:///mlflow.db`) and keeps the
file store ('./mlruns') in maintenance mode: opening one raises unless MLFLOW_ALLOW_FILE_STORE=true.
mlflow.db is also the name `mlflow server`/`mlflow ui` open by default, so started in that folder
they show the runs without flags. Artifacts of experiments created here go to `<that folder>/mlartifacts`,
not to './mlruns' under whatever folder the process happened to run in (MLflow's default for SQLite).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..store.read import read_runs
from ..core.errors import ConfigError, first_line
from ..core.optional import require
from ..core.log import logger

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ..core.results import RunResult

DEFAULT_EXPERIMENT = "resizelab"
TAG_CONFIG_HASH = "resizelab.config_hash"
TAG_SWEEP = "resizelab.sweep"
# Marks the MLflow run that holds a sweep's report (it has no config hash: the export never mistakes it for a run).
TAG_KIND = "resizelab.kind"
# MLflow's own batch limits (mlflow.utils.validation): at most 100 params and 1000 entities a call.
_PARAMS_PER_BATCH, _METRICS_PER_BATCH = 100, 1000
FINAL_METRICS = ("test_accuracy", "train_seconds", "images_per_second", "macs_per_image", "params", "peak_memory_bytes",
                 "prepare_seconds", "time_to_first_step_seconds", "eval_seconds")


# The tracking stores MLflow opens, less its file store ('file:', a bare folder such as ./mlruns), which
# MLflow 3 refuses (maintenance mode) after the whole sweep has trained; a dialect may carry a driver (mysql+pymysql).
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
FILE_STORE_REFUSED = "a folder path or file: URI is MLflow's file store, which MLflow 3 refuses; use a database such as sqlite:///mlflow.db"


def default_tracking_uri(db: str | os.PathLike) -> str:
    """The local MLflow store that goes with a results database: mlflow.db in the same folder."""
    return "sqlite:///" + str(Path(db).absolute().parent / "mlflow.db")


def resolve_tracking_uri(tracking_uri: str | None, db: str | os.PathLike) -> str:
    """`tracking_uri`, else $MLFLOW_TRACKING_URI, else `default_tracking_uri(db)`."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(db)


def log_result_to_mlflow(result: RunResult, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT,
                         report_dir: str | os.PathLike | None = None, *, sweep: str | None = None) -> str:
    """Log one finished run as one MLflow run (status FINISHED) and return the MLflow run id.

    `sweep` is tagged as `resizelab.sweep`; `report_dir`, a report folder, is logged under the
    artifact path 'report'. Fits `resizelab.sweep(..., on_result=...)`. Logs every time it is called: a
    result is new data; `export_store_to_mlflow` is the call that skips what is logged already.
    """
    if report_dir is not None and not Path(report_dir).is_dir():
        raise ConfigError(f"report folder {report_dir} does not exist")
    client, experiment_id = open_tracking(tracking_uri, experiment)
    return _log_run(client, experiment_id, result.to_json_dict(), label=result.config.label(), sweep=sweep,
                    report_dir=report_dir)


def export_store_to_mlflow(db: str | os.PathLike, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                           sweep: str | None = None) -> int:
    """Log the store's finished runs (of one sweep, or all) to MLflow; returns how many were logged.

    Idempotent: a run whose config hash is already tagged on a FINISHED run of the experiment is not
    logged again, so re-exporting after more runs finish adds only those. A log that broke off half
    way is marked FAILED and is redone by the next export. (Two exports of one store at the same
    moment can both log a run: export from one place.)
    Tracking URI: `tracking_uri`, else $MLFLOW_TRACKING_URI, else `default_tracking_uri(db)`.
    """
    stored = read_runs(db, sweep, status="done")
    uri = resolve_tracking_uri(tracking_uri, db)
    client, experiment_id = open_tracking(uri, experiment)
    return _export(client, experiment_id, stored, sweep)


class MlflowLogger:
    """What `--mlflow` does for `run`, `sweep` and `study`: each finished run logged as it completes
    (`on_result`), runs of the sweep finished earlier and not in MLflow yet (`catch_up`), and the
    sweep's report as the artifacts of one more MLflow run (`log_report`).

    The client and the experiment are set up on construction, so a missing package or a tracking
    store that cannot be opened stops the command before anything trains. A run that fails to log
    later is a warning, not a lost run: it is in the results store, and the export logs it.
    """

    def __init__(self, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT, sweep: str | None = None):
        self.tracking_uri, self.experiment, self.sweep = tracking_uri, experiment, sweep
        self.client, self.experiment_id = open_tracking(tracking_uri, experiment)
        self.logged = 0
        self.failed = 0

    def on_result(self, result: RunResult) -> None:
        try:
            _log_run(self.client, self.experiment_id, result.to_json_dict(), label=result.config.label(), sweep=self.sweep)
            self.logged += 1
        except Exception as e:  # noqa: BLE001 - the run is stored; a tracking outage must not stop the sweep
            self.failed += 1
            logger.warning("MLflow: run %s not logged (%s: %s); it is in the results store, and "
                           "`resizelab export mlflow` logs it later", result.config_hash, type(e).__name__, first_line(e))

    def catch_up(self, db: str | os.PathLike, config_hashes: set[str] | None = None) -> int:
        """Log the finished runs of the sweep (or the given ones) that the experiment does not hold yet."""
        stored = read_runs(db, self.sweep, status="done")
        if config_hashes is not None:
            stored.runs = [r for r in stored.runs if r["config_hash"] in config_hashes]
        try:
            count = _export(self.client, self.experiment_id, stored, self.sweep)
        except Exception as e:  # noqa: BLE001 - as in on_result: the runs are stored, the export can log them later
            logger.warning("MLflow: earlier runs not logged (%s: %s); `resizelab export mlflow` logs them later",
                           type(e).__name__, first_line(e))
            return 0
        self.logged += count
        return count

    def log_report(self, report_dir: str | os.PathLike) -> str | None:
        """Log a report folder as the artifacts ('report/...') of an MLflow run named 'report: <sweep>'.

        A new report run is logged when this session logged runs, or when the sweep has none yet, so
        that re-running a finished sweep does not stack up copies of the same report. Returns its run id.
        """
        sweep = self.sweep or "all runs"
        if not self.logged:
            page = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'report'", max_results=1000)
            if any(run.data.tags.get(TAG_SWEEP) == sweep and run.info.status == "FINISHED" for run in page):
                return None
        run = self.client.create_run(self.experiment_id, run_name=f"report: {sweep}",
                                     tags={TAG_KIND: "report", TAG_SWEEP: sweep, "resizelab.version": __version__})
        try:
            self.client.log_artifacts(run.info.run_id, str(report_dir), artifact_path="report")
        except BaseException:
            self.client.set_terminated(run.info.run_id, "FAILED")
            raise
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


def _export(client: MlflowClient, experiment_id: str, stored, sweep: str | None) -> int:
    logged = logged_config_hashes(client, experiment_id)
    count = 0
    for row in stored.runs:
        if row["config_hash"] in logged:
            continue
        sweeps = [sweep] if sweep is not None else stored.sweeps.get(row["config_hash"], [])
        _log_run(client, experiment_id, json.loads(row["result_json"]), label=row["label"], sweep=", ".join(sweeps) or None,
                 start_seconds=row["started_at"], end_seconds=row["finished_at"])
        logged.add(row["config_hash"])
        count += 1
    return count


def logged_config_hashes(client: MlflowClient, experiment_id: str) -> set[str]:
    """Config hashes of the experiment's FINISHED runs: what an export does not log again."""
    hashes: set[str] = set()
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=1000,
                                  page_token=token)
        hashes.update(run.data.tags[TAG_CONFIG_HASH] for run in page if TAG_CONFIG_HASH in run.data.tags)
        token = page.token
        if not token:
            return hashes


# --- internals -------------------------------------------------------------------------------

def check_tracking_uri(tracking_uri: str, experiment: str) -> None:
    """Refuse, in one line, what MLflow would answer with a traceback, a hang or a folder made where none was asked."""
    if not isinstance(experiment, str) or not experiment.strip():
        raise ConfigError(f"the MLflow experiment name must be non-empty text; got {experiment!r}")
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", tracking_uri) or tracking_uri.lower().startswith("file:"):
        raise ConfigError(f"{tracking_uri!r} is {'a file store' if tracking_uri.lower().startswith('file:') else 'not a tracking URI'} "
                          f"({FILE_STORE_REFUSED}); give one such as sqlite:///path/mlflow.db or http://host:5000")
    scheme = tracking_uri.split(":", 1)[0].lower().split("+", 1)[0]
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"MLflow cannot track to {tracking_uri!r} (scheme {scheme}:); give one of "
                          f"{', '.join(s + ':' for s in TRACKING_SCHEMES)}, e.g. sqlite:///path/mlflow.db or http://host:5000")
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.endswith(":memory:"):
        path = Path(tracking_uri[len("sqlite:///"):])
        if not path.parent.is_dir():
            raise ConfigError(f"MLflow store {tracking_uri}: folder {path.parent} does not exist; create it or log elsewhere")
        if path.exists() and (not path.is_file() or (path.stat().st_size and _head(path) != b"SQLite format 3\x00")):
            raise ConfigError(f"MLflow store {tracking_uri}: {path} is not an SQLite database; give a new file or an MLflow store")
    match = re.match(r"^https?://([^/:]+|\[[^\]]+\])(?::(\d+))?", tracking_uri)
    if match:
        import socket

        host, port = match.group(1).strip("[]"), int(match.group(2) or (443 if tracking_uri.startswith("https") else 80))
        try:  # MLflow's client retries an address nothing answers at for minutes, silently
            with socket.create_connection((host, port), timeout=5):
                pass
        except OSError as e:
            raise ConfigError(f"no MLflow server answers at {tracking_uri} ({e.strerror or e}); start it "
                              "(mlflow server) or log to a local store (sqlite:///path/mlflow.db)") from None


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def open_tracking(tracking_uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """The client and experiment id for `tracking_uri`: checked first, and a store MLflow cannot open is one line."""
    check_tracking_uri(tracking_uri, experiment)
    client = _client(tracking_uri)
    try:
        return client, _experiment_id(client, experiment, tracking_uri)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever MLflow or its database driver raises, said in one line
        raise ConfigError(f"MLflow store {tracking_uri} cannot be opened ({type(e).__name__}: {first_line(e)})") from None


def _client(tracking_uri: str) -> MlflowClient:
    require("mlflow", "mlflow", "MLflow tracking")
    if tracking_uri.startswith("sqlite:"):
        # mlflow-skinny imports without these and then fails on a SQLite URI with an error about
        # the model registry; say what is missing instead.
        for module in ("sqlalchemy", "alembic"):
            require(module, "mlflow", "MLflow's SQLite tracking store")
    from mlflow.tracking import MlflowClient

    if not logger.isEnabledFor(logging.INFO):
        # -q: MLflow sets up its own INFO logger on import (it announces creating a store); quiet it too.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri)


def _artifact_location(tracking_uri: str) -> str | None:
    """Beside a local SQLite store; None (the server's choice) for any other store."""
    if not tracking_uri.startswith("sqlite:///") or tracking_uri.endswith(":memory:"):
        return None
    return (Path(tracking_uri[len("sqlite:///"):]).absolute().parent / "mlartifacts").as_uri()


def _experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_artifact_location(tracking_uri))
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(f"MLflow experiment {name!r} in {tracking_uri} is deleted; restore it "
                          f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or log to another name")
    return experiment.experiment_id


def _param_text(value: Any) -> str:
    # Params are strings in MLflow; JSON keeps None, booleans and lists readable and unambiguous.
    return value if isinstance(value, str) else json.dumps(value)


def _json_safe(data: dict) -> dict:
    """NaN and infinities as null: MLflow's UI and most readers reject the non-standard JSON tokens."""
    return json.loads(json.dumps(data, default=str), parse_constant=lambda _: None)


def _log_run(client: MlflowClient, experiment_id: str, data: dict, *, label: str, sweep: str | None,
             report_dir: str | os.PathLike | None = None, start_seconds: float | None = None,
             end_seconds: float | None = None) -> str:
    """Log one run from its JSON form (RunResult.to_json_dict(), as the store keeps it)."""
    from mlflow.entities import Metric, Param

    data = _json_safe(data)
    provenance = data.get("provenance") or {}
    tags = {TAG_CONFIG_HASH: data["config_hash"], "resizelab.label": label, "resizelab.version": __version__,
            "resizelab.effective_precision": data.get("effective_precision"), "resizelab.weights_tag": data.get("weights_tag"),
            "resizelab.git_revision": provenance.get("git_revision")}
    if sweep:
        tags[TAG_SWEEP] = sweep
    revision = str(provenance.get("git_revision", ""))
    if re.fullmatch(r"[0-9a-f]{40}", revision):  # a clean checkout: MLflow's UI links the commit
        tags["mlflow.source.git.commit"] = revision
    start_ms = int(start_seconds * 1000) if start_seconds else None
    run = client.create_run(experiment_id, start_time=start_ms, run_name=label,
                            tags={k: str(v) for k, v in tags.items() if v is not None})
    run_id = run.info.run_id
    try:
        # The config as asked (threads: null is "the cores this run may use"), and as it ran (execution.threads: 2).
        params = [Param(k, _param_text(v)) for k, v in sorted(data["config"].items())]
        params += [Param(f"execution.{k}", _param_text(v)) for k, v in sorted((data.get("execution") or {}).items())]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + _PARAMS_PER_BATCH])
        end_ms = int(end_seconds * 1000) if end_seconds else int(time.time() * 1000)
        metrics = []
        for epoch in data.get("epoch_history", []):
            for key, name in (("train_loss", "train_loss"), ("train_accuracy", "train_accuracy"), ("seconds", "epoch_seconds")):
                if epoch.get(key) is not None:
                    metrics.append(Metric(name, float(epoch[key]), end_ms, int(epoch["epoch"])))
        for name in FINAL_METRICS:
            if data.get(name) is not None:
                metrics.append(Metric(name, float(data[name]), end_ms, 0))
        evals = data.get("evals", [])
        sizes = [ev["size_px"] for ev in evals]
        for ev in evals:
            # One evaluation per size is what train() makes; should a size come twice, the method tells them apart.
            suffix = f"_{ev['interpolation']}" if sizes.count(ev["size_px"]) > 1 else ""
            if ev.get("accuracy") is not None:
                metrics.append(Metric(f"test_accuracy_{ev['size_px']}px{suffix}", float(ev["accuracy"]), end_ms, 0))
        for ev in data.get("serving", []):  # --serve: the accuracy under each serving recipe and size
            if ev.get("accuracy") is not None:
                metrics.append(Metric(f"serve_accuracy_{ev['recipe']}_{ev['size_px']}px", float(ev["accuracy"]), end_ms, 0))
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + _METRICS_PER_BATCH])
        client.log_dict(run_id, provenance, "provenance.json")
        client.log_dict(run_id, data, "result.json")  # everything, per-class accuracy included
        if report_dir is not None:
            client.log_artifacts(run_id, str(report_dir), artifact_path="report")
    except BaseException:
        # A half-logged run must not pass for a finished one: the export's skip check ignores FAILED runs.
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED", end_time=end_ms)
    return run_id
