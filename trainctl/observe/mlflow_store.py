"""A run in MLflow: its experiment and run, params (the flattened config), tags, metrics and artifacts,
through MlflowClient (imported on first use); shared by the live sink and `trainctl runs sync`."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trainctl.observe.plots import Figure, Series, draw
from trainctl.observe.tensorboard import flat_hparams
from trainctl.runs.run_dir import RunDir

PARENT_ENV = "TRAINCTL_MLFLOW_PARENT_RUN_ID"  # set by a sweep: its jobs become the parent's children
PROBE_TIMEOUT_S = 2.0
PARAM_CHARS = 6000  # the longest param value MLflow keeps
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
EVAL_SKIP = {"kind", "step", "epoch", "split", "seconds", "rank", "time"}
ENDINGS = {"finished": "FINISHED", "interrupted": "KILLED"}  # anything else: FAILED


def tracking_uri(tree: dict[str, Any]) -> str:
    """The config's mlflow.tracking_uri, else a local SQLite store under the runs root (no server)."""
    uri = (tree.get("mlflow") or {}).get("tracking_uri")
    if uri:
        return str(uri)
    root = Path(str((tree.get("run") or {}).get("root") or "runs")).expanduser().absolute()
    return f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"


def unreachable(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why an http(s) tracking server does not accept a connection (None: it does, or the store is local);
    a plain socket, so a dead server costs milliseconds and no MLflow import."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parsed.hostname}:{port} ({exc.strerror or exc})"


def metric_points(record: dict[str, Any]) -> list[tuple[str, float, int, int]]:
    """(key, value, step, timestamp in ms) of each value of a metrics.jsonl record."""
    step, stamp = int(record.get("step", 0)), int(float(record.get("time", time.time())) * 1000)
    kind = record.get("kind")
    if kind == "train":
        values = {f"train/{k}": record[k] for k in ("loss", "lr", "samples_per_s") if k in record}
    elif kind == "eval":
        split = record.get("split", "test")
        values = {f"{split}/{k}": v for k, v in record.items() if k not in EVAL_SKIP}
    elif kind == "epoch":
        values = {"epoch/seconds": record.get("seconds")}
    else:
        values = {}
    return [(k, float(v), step, stamp) for k, v in values.items() if isinstance(v, int | float)]


def loss_png(records: list[dict[str, Any]], path: Path) -> Path:
    """The run's loss curve (train line, test markers), as `trainctl report` draws it."""
    figure = Figure("loss", "loss", "loss", log_y=True)
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    tests = [r for r in records if r.get("kind") == "eval" and "loss" in r]
    figure.series.append(Series("train", [r["step"] for r in train], [r["loss"] for r in train], color=0))
    if tests:
        figure.series.append(
            Series("test", [r["step"] for r in tests], [r["loss"] for r in tests], markers=True, color=0)
        )
    return draw(figure, path)


class MlflowStore:
    """One tracking store (a server or a local URI) and what trainctl writes there."""

    def __init__(self, uri: str) -> None:
        # a server that stops answering: fail fast in the uploading thread, never retry for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment(self, name: str, runs_root: Path) -> str:
        """The id of the experiment `name`, created when missing (a local store keeps its artifacts beside
        its database)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts" / name).as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # created meanwhile by another job of the sweep
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def create_run(self, run: RunDir, tree: dict[str, Any], parent: str | None = None) -> str:
        """A new MLflow run for `run`: tags (trainctl version and commit, environment hash, run dir) and
        params (the flattened config); returns its id."""
        from mlflow.entities import Param

        meta = run.read_meta()
        name = str((tree.get("mlflow") or {}).get("experiment") or tree.get("preset") or "trainctl")
        experiment = self.experiment(name, run.path.parent.parent)
        tags = {
            "mlflow.runName": str(meta.get("id") or run.path.name),
            "trainctl.version": str(meta.get("trainctl_version", "")),
            "trainctl.commit": str(meta.get("trainctl_commit", "")),
            "mlflow.source.git.commit": str(meta.get("trainctl_commit", "")),
            "trainctl.environment_sha256": str(meta.get("environment_sha256", "")),
            "trainctl.run_dir": str(run.path),
        }
        if parent:
            tags["mlflow.parentRunId"] = parent
        created = self.client.create_run(experiment, tags={k: v for k, v in tags.items() if v})
        run_id = str(created.info.run_id)
        params = [Param(k, str(v)[:PARAM_CHARS]) for k, v in sorted(flat_hparams(tree).items())]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])
        return run_id

    def parent_run(self, tree: dict[str, Any], folder: Path, known: str | None) -> str:
        """The run a sweep's jobs hang under (their `mlflow.parentRunId`): `known` when the store has
        it (the sweep run again), else a new one named after the sweep's folder."""
        if known and self.exists(known):
            return known
        name = str((tree.get("mlflow") or {}).get("experiment") or tree.get("preset") or "trainctl")
        tags = {"mlflow.runName": f"sweep {folder.name}", "trainctl.sweep_dir": str(folder)}
        return str(self.client.create_run(self.experiment(name, folder.parent), tags=tags).info.run_id)

    def exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
        except Exception:
            return False
        return True

    def log_records(
        self, run_id: str, records: list[dict[str, Any]], skip: set[tuple[str, int]] = frozenset()
    ) -> int:
        """Log the metrics of metrics.jsonl records (those (key, step) in `skip` are there already)."""
        from mlflow.entities import Metric

        metrics = [
            Metric(key, value, stamp, step)
            for record in records
            for key, value, step, stamp in metric_points(record)
            if (key, step) not in skip
        ]
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH])
        return len(metrics)

    def logged(self, run_id: str) -> set[tuple[str, int]]:
        """(key, step) of every metric value the run has."""
        keys = self.client.get_run(run_id).data.metrics
        return {(key, m.step) for key in keys for m in self.client.get_metric_history(run_id, key)}

    def log_files(self, run_id: str, run: RunDir, records: list[dict[str, Any]], checkpoints: bool) -> None:
        """config.yaml, overrides.yaml, the record (record.json, record/), the loss plot, and with
        `checkpoints` the checkpoints folder."""
        for name in ("config.yaml", "overrides.yaml", "record.json"):
            if (run.path / name).is_file():
                self.client.log_artifact(run_id, str(run.path / name))
        if (run.path / "record").is_dir():
            self.client.log_artifacts(run_id, str(run.path / "record"), "record")
        if any(r.get("kind") == "train" for r in records):
            self.client.log_artifact(
                run_id, str(loss_png(records, run.path / "report" / "loss.png")), "report"
            )
        if checkpoints and run.checkpoints.is_dir():
            self.client.log_artifacts(run_id, str(run.checkpoints), "checkpoints")

    def finish(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, ENDINGS.get(status, "FAILED"))
