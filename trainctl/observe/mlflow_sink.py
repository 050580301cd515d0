"""Sink `mlflow`: the run's params, tags, per-step metrics and artifacts sent to MLflow from a background
thread, so that a slow, down or refusing tracking server never fails or slows training; the run dir keeps
every metric, and `trainctl runs sync RUN` uploads what did not get through."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from trainctl.observe.events import EpochRecord, EvalRecord, Event, RunEnd, StepRecord, to_record
from trainctl.observe.mlflow_store import PARENT_ENV, MlflowStore, tracking_uri, unreachable
from trainctl.runs.run_dir import RunDir
from trainctl.runs.summaries import read_metrics

DONE = None  # the queue's last item: the run ended


class MlflowSink:
    """Queues metrics records; one thread connects, creates the MLflow run and uploads. A failure is
    reported once and ends the uploading; run.json's `mlflow` entry says what got through."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.tree: dict[str, Any] = yaml.safe_load(run.config_file.read_text()) or {}
        self.options: dict[str, Any] = self.tree.get("mlflow") or {}
        self.uri = tracking_uri(self.tree)
        self.parent = os.environ.get(PARENT_ENV) or None
        self.queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.status = "finished"
        self.run_id: str | None = None
        self.error: str | None = None
        self.synced = False
        self.thread = threading.Thread(target=self.upload, name="trainctl-mlflow", daemon=True)
        self.thread.start()

    def emit(self, event: Event) -> None:
        if isinstance(event, StepRecord | EvalRecord | EpochRecord):
            self.queue.put(to_record(event) | {"time": round(time.time(), 3)})
        elif isinstance(event, RunEnd):
            self.status = event.status

    def upload(self) -> None:
        try:
            reason = unreachable(self.uri)
            if reason is not None:
                raise ConnectionError(reason)
            store = MlflowStore(self.uri)
            known = self.run.read_meta().get("mlflow") or {}
            resumed = known.get("tracking_uri") == self.uri and known.get("run_id")
            if resumed and store.exists(str(known["run_id"])):  # a resume or restart goes on in its run
                self.run_id = str(known["run_id"])
            else:
                self.run_id = store.create_run(self.run, self.tree, self.parent)
            ended = False
            while not ended:
                batch = [self.queue.get()]
                while not self.queue.empty():
                    batch.append(self.queue.get())
                ended = DONE in batch
                store.log_records(self.run_id, [r for r in batch if r is not DONE])
            records = read_metrics(self.run.metrics_file)  # the whole run's, for the loss plot
            store.log_files(self.run_id, self.run, records, bool(self.options.get("log_checkpoints")))
            store.finish(self.run_id, self.status)
            self.synced = True
        except Exception as exc:  # whatever the server or client says: training goes on without it
            self.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
            print(
                f"warning: MLflow ({self.uri}) did not take this run: {self.error}. The metrics stay in "
                f"{self.run.metrics_file}; upload them later with: trainctl runs sync {self.run.path}",
                file=sys.stderr,
                flush=True,
            )

    def flush(self) -> None:
        pass  # the upload thread sends what is queued; the run dir keeps every record

    def close(self) -> None:
        self.queue.put(DONE)
        self.thread.join(timeout=float(self.options.get("timeout_s") or 30.0))
        if self.thread.is_alive() and self.error is None:
            self.error = f"uploads still running after mlflow.timeout_s={self.options.get('timeout_s')}"
        self.run.update_meta(
            mlflow={
                "tracking_uri": self.uri,
                "run_id": self.run_id,
                "parent_run_id": self.parent,
                "synced": self.synced,
                **({"error": self.error} if self.error else {}),
            }
        )


def sync_run(run: RunDir, uri: str | None = None) -> dict[str, Any]:
    """Upload a run to MLflow after the fact: into its MLflow run when the store has it (only the metrics
    it lacks), else a new one; artifacts and the ending too. Returns run.json's new `mlflow` entry."""
    from trainctl.errors import TrainctlError

    tree = yaml.safe_load(run.config_file.read_text()) or {}
    known = run.read_meta().get("mlflow") or {}
    uri = uri or known.get("tracking_uri") or tracking_uri(tree)
    reason = unreachable(uri)
    if reason is not None:
        raise TrainctlError(
            f"MLflow tracking server unreachable: {reason}",
            where=uri,
            fix="start the server (or pass --tracking-uri URI) and run `trainctl runs sync` again",
        )
    store = MlflowStore(uri)
    same_store = uri == known.get("tracking_uri")
    run_id = known.get("run_id") if same_store else None
    if run_id is None or not store.exists(run_id):
        run_id = store.create_run(run, tree, known.get("parent_run_id"))
    records = read_metrics(run.metrics_file)
    sent = store.log_records(run_id, records, skip=store.logged(run_id))
    store.log_files(run_id, run, records, bool((tree.get("mlflow") or {}).get("log_checkpoints")))
    store.finish(run_id, str(run.read_meta().get("status", "finished")))
    entry = {
        "tracking_uri": uri,
        "run_id": run_id,
        "parent_run_id": known.get("parent_run_id"),
        "synced": True,
    }
    run.update_meta(mlflow=entry)
    return entry | {"metrics_sent": sent}


def sweep_parent(tree: dict[str, Any], folder: Path) -> dict[str, str]:
    """For a sweep whose jobs log to MLflow: the environment that makes them children of one parent run
    (kept in the sweep's folder, so a sweep run again keeps its parent); {} when the store is unreachable
    (the jobs warn and keep their metrics for `runs sync`)."""
    marker = folder / "mlflow-parent.txt"
    uri = tracking_uri(tree)
    reason = unreachable(uri)
    if reason is not None:
        return {}
    try:
        known = marker.read_text().strip() if marker.is_file() else None
        parent = MlflowStore(uri).parent_run(tree, folder, known)
    except Exception as exc:
        print(f"warning: MLflow ({uri}): no parent run for the sweep: {exc}", file=sys.stderr)
        return {}
    marker.write_text(parent + "\n")
    return {PARENT_ENV: parent}


def end_sweep_parent(tree: dict[str, Any], env: dict[str, str], status: str) -> None:
    """Mark a sweep's parent run as ended once its jobs have run (a failure here is only a warning)."""
    if PARENT_ENV not in env:
        return
    try:
        MlflowStore(tracking_uri(tree)).finish(env[PARENT_ENV], status)
    except Exception as exc:
        print(f"warning: MLflow: the sweep's parent run was not marked {status}: {exc}", file=sys.stderr)
