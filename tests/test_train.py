"""Training end to end: the default job, linear regression, run files, resume, Ctrl-C, NaN, eval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import SINGLE, trainctl
from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.errors import RunFailed
from trainctl.training.checkpoint import load_checkpoint

runner = CliRunner()


def final_weights(run_root: Path, preset: str) -> dict[str, torch.Tensor]:
    (run,) = sorted((run_root / preset).iterdir())[-1:]
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_default_job_trains_on_two_ddp_workers_and_writes_the_run(runs_root: Path) -> None:
    result = trainctl("train", runs=runs_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test accuracy" in result.stdout and "ranks" in result.stdout
    run = (runs_root / "latest").resolve()
    assert run.parent == runs_root / "mlp_digits"
    for name in (
        "config.yaml",
        "overrides.yaml",
        "metrics.jsonl",
        "train.log",
        "run.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "logs/rank0.log",
        "logs/rank1.log",
    ):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert {"step", "epoch", "loss", "lr", "samples_per_s"} <= steps[0].keys()
    assert len(evals) == 20 and evals[-1]["accuracy"] > 0.9
    assert all(r["rank"] == 0 for r in records)  # reduced across ranks, written once
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["preset"] == "mlp_digits" and config["parallel"]["name"] == "ddp"


def test_linreg_learns_weight_two() -> None:
    summary = train(["conf=linreg", *SINGLE])
    assert summary["model"]["weight"] == pytest.approx(2.0, abs=1e-3)
    assert summary["model"]["bias"] == pytest.approx(0.0, abs=1e-3)


def test_two_epochs_plus_resume_equals_four_straight(runs_root: Path) -> None:
    common = ["trainer.schedule=constant", "model.dropout=0.2", "optim=sgd", "optim.lr=0.05", *SINGLE]
    train([*common, "trainer.epochs=4", "run.root=" + str(runs_root / "straight")])
    train([*common, "trainer.epochs=2"])
    summary = train(["trainer.epochs=4"], resume="latest")
    assert summary["epochs"] == 4 and summary["steps"] == 4 * 23
    assert_same_weights(
        final_weights(runs_root / "straight", "mlp_digits"), final_weights(runs_root, "mlp_digits")
    )
    meta = json.loads((runs_root / "latest" / "run.json").read_text())
    assert meta["resumes"][0]["overrides"] == ["trainer.epochs=4"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=3", "cannot be stretched"),
        ("model.hidden=[8]", "'model' cannot change"),
        ("trainer.batch_size=32", "'trainer.batch_size' cannot change"),
    ],
)
def test_resume_refuses_changes_that_break_the_checkpoint(
    runs_root: Path, override: str, message: str
) -> None:
    train(["trainer.epochs=1", *SINGLE])
    config = (runs_root / "latest" / "config.yaml").read_text()
    result = runner.invoke(app, ["train", "--resume", "latest", override])
    assert result.exit_code == 2 and message in result.output
    assert (runs_root / "latest" / "config.yaml").read_text() == config


def test_ctrl_c_checkpoints_and_resume_matches_an_uninterrupted_run(runs_root: Path, tmp_path: Path) -> None:
    args = ["trainer.epochs=150", "model.dropout=0.2", *SINGLE]
    env = {**os.environ, "TRAINCTL_RUNS_DIR": str(tmp_path / "interrupted")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = None
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "interrupted").glob("mlp_digits/*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) > 20:
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None, "the run never started logging"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "trainctl train --resume" in output
    run = metrics.parent
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run(
        [sys.executable, "-m", "trainctl", "train", "--resume", str(run)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    straight = subprocess.run(
        [sys.executable, "-m", "trainctl", "train", *args], capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(
        final_weights(runs_root, "mlp_digits"), load_checkpoint(run / "checkpoints/last.pt")["model"]
    )


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(runs_root: Path) -> None:
    # The step schedule multiplies the rate by 1e8 after the first epoch: the second one diverges.
    with pytest.raises(RunFailed, match=r"the loss became (nan|inf) at step (\d+)") as info:
        train(["conf=linreg", "trainer.schedule=step", "trainer.gamma=1e8", *SINGLE])
    step = int(info.value.what.split("at step ")[1].split()[0])
    assert step > 100  # the first epoch (100 steps) was fine
    run = (runs_root / "latest").resolve()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["position"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


def test_eval_reports_the_same_accuracy_as_training(runs_root: Path) -> None:
    summary = train(["trainer.epochs=3", *SINGLE])
    result = runner.invoke(app, ["eval", "latest"])
    assert result.exit_code == 0, result.output
    assert f"accuracy {summary['test']['accuracy']:.2%}" in result.output
    checkpoint = (runs_root / "latest" / "checkpoints" / "best.pt").resolve()
    direct = runner.invoke(app, ["eval", str(checkpoint)])
    assert direct.exit_code == 0 and "accuracy" in direct.output


def test_mlp_mnist_reaches_98_5_percent_on_the_shared_split(shared_data: Path) -> None:
    summary = train(["conf=mlp_mnist", f"data.root={shared_data}", *SINGLE])
    assert summary["test"]["accuracy"] >= 0.985
