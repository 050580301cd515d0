"""logger=mlflow against a real `mlflow server` (SQLite backend) on a free local port, read back with
MlflowClient: params, per-step metrics, tags and artifacts; a dead server loses nothing (`runs sync`);
a sweep's jobs are children of one parent run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SINGLE
from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.runs.run_dir import RunDir
from trainctl.runs.summaries import read_metrics

pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'trainctl[mlflow]')")

SERVER_START_S = 240  # a fresh server migrates its SQLite database first; slow on a busy machine
SHORT = [*SINGLE, "trainer.max_steps=20", "trainer.log_every=5", "logger=mlflow"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on a free 127.0.0.1 port, stopped after the module."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "art"),
        ],
        stdout=(folder / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started, all ours
    process.wait(timeout=30)


def client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifacts(mlflow, run_id: str, path: str | None = None) -> set[str]:  # type: ignore[no-untyped-def]
    return {a.path for a in mlflow.list_artifacts(run_id, path)}


def test_params_metrics_per_step_tags_and_artifacts_reach_a_live_server(server: str) -> None:
    run = RunDir(Path(train([*SHORT, f"logger.mlflow.tracking_uri={server}", "optim.lr=0.002"])["run dir"]))
    meta = run.read_meta()
    entry = meta["mlflow"]
    assert entry["synced"] and entry["tracking_uri"] == server
    mlflow = client(server)
    found = mlflow.get_run(entry["run_id"])
    assert found.info.status == "FINISHED"
    assert found.data.params["optim.lr"] == "0.002" and found.data.params["model.name"] == "mlp"
    assert [m.step for m in mlflow.get_metric_history(found.info.run_id, "train/loss")] == [5, 10, 15, 20]
    logged = [r["loss"] for r in read_metrics(run.metrics_file) if r["kind"] == "train"]
    assert [m.value for m in mlflow.get_metric_history(found.info.run_id, "train/loss")] == logged
    assert "test/accuracy" in found.data.metrics
    tags = found.data.tags
    assert tags["trainctl.version"] == meta["trainctl_version"]
    assert tags["trainctl.environment_sha256"] == meta["environment_sha256"]
    assert tags["trainctl.run_dir"] == str(run.path)
    assert {"config.yaml", "record.json", "record", "report"} <= artifacts(mlflow, found.info.run_id)
    assert "record/packages.txt" in artifacts(mlflow, found.info.run_id, "record")
    assert "report/loss.png" in artifacts(mlflow, found.info.run_id, "report")
    assert "checkpoints" not in artifacts(mlflow, found.info.run_id)  # only when asked for


def test_checkpoints_are_uploaded_when_asked_for(server: str) -> None:
    run = RunDir(
        Path(
            train([*SHORT, f"logger.mlflow.tracking_uri={server}", "logger.mlflow.log_checkpoints=true"])[
                "run dir"
            ]
        )
    )
    uploaded = artifacts(client(server), run.read_meta()["mlflow"]["run_id"], "checkpoints")
    assert any(path.endswith(".pt") for path in uploaded)


def test_a_dead_server_loses_no_metric_and_sync_uploads_them_later(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = RunDir(Path(train([*SHORT, f"logger.mlflow.tracking_uri={dead}"])["run dir"]))
    warned = capsys.readouterr().err
    assert warned.count("warning: MLflow") == 1 and "trainctl runs sync" in warned
    entry = run.read_meta()
    assert entry["status"] == "finished"
    assert entry["mlflow"]["synced"] is False and "cannot connect" in entry["mlflow"]["error"]
    records = read_metrics(run.metrics_file)
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    result = CliRunner().invoke(app, ["runs", "sync", str(run.path), "--tracking-uri", server])
    assert result.exit_code == 0, result.output
    mlflow = client(server)
    run_id = run.read_meta()["mlflow"]["run_id"]
    history = mlflow.get_metric_history(run_id, "train/loss")
    assert [m.value for m in history] == [r["loss"] for r in records if r["kind"] == "train"]
    assert "record.json" in artifacts(mlflow, run_id)
    again = CliRunner().invoke(
        app, ["runs", "sync", str(run.path)]
    )  # into the same MLflow run: nothing twice
    assert again.exit_code == 0 and "(0 metric values sent)" in again.output
    assert len(mlflow.get_metric_history(run_id, "train/loss")) == 4


def test_sync_to_a_dead_server_is_a_clear_error(runs_root: Path) -> None:
    run = RunDir(Path(train([*SINGLE, "trainer.max_steps=5"])["run dir"]))
    result = CliRunner().invoke(
        app, ["runs", "sync", str(run.path), "--tracking-uri", f"http://127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 2
    assert "MLflow tracking server unreachable" in result.output


@pytest.mark.slow
def test_without_a_uri_runs_go_to_a_local_store_under_the_runs_root(runs_root: Path) -> None:
    run = RunDir(Path(train(SHORT)["run dir"]))
    store = f"sqlite:///{runs_root.absolute() / 'mlflow' / 'mlflow.db'}"
    assert run.read_meta()["mlflow"] == {
        "tracking_uri": store,
        "run_id": run.read_meta()["mlflow"]["run_id"],
        "parent_run_id": None,
        "synced": True,
    }
    found = client(store).get_run(run.read_meta()["mlflow"]["run_id"])
    assert found.data.params["preset"] == "mlp_digits" and "train/loss" in found.data.metrics


@pytest.mark.slow
def test_a_sweep_appears_as_child_runs_of_one_parent(server: str, runs_root: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "optim.lr=0.001,0.002",
            *SINGLE,
            "trainer.max_steps=5",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={server}",
            "--name",
            "lrs",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = runs_root / "sweeps" / "lrs"
    parent = (folder / "mlflow-parent.txt").read_text().strip()
    children = [json.loads(p.read_text())["mlflow"] for p in sorted(folder.glob("*/run.json"))]
    assert len(children) == 2 and all(c["parent_run_id"] == parent and c["synced"] for c in children)
    mlflow = client(server)
    for child in children:
        assert mlflow.get_run(child["run_id"]).data.tags["mlflow.parentRunId"] == parent
    assert mlflow.get_run(parent).info.status == "FINISHED"
