"""Looking at runs: report plots, TensorBoard events, `runs ls`, profiling, early stopping, max_steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SINGLE
from trainctl.cli.app import app
from trainctl.cli.report import figures, label_runs, load, report
from trainctl.cli.train import train
from trainctl.config.schema import EarlyStoppingConfig
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import RunDir
from trainctl.runs.summaries import find_runs
from trainctl.training.early_stopping import EarlyStopping

runner = CliRunner()
SHORT = ["trainer.epochs=2", *SINGLE]


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_report_draws_two_runs_on_shared_axes(runs_root: Path) -> None:
    import matplotlib.image

    first = Path(train([*SHORT, "optim.lr=0.001"])["run dir"])
    second = Path(train([*SHORT, "optim.lr=0.01"])["run dir"])
    path = report([str(first), str(second)], runs_root / "cmp")
    text = path.read_text()
    assert "optim.lr=0.001" in text and "optim.lr=0.01" in text  # labelled by what differs
    for name in ("loss", "accuracy", "lr", "samples_per_s"):
        image = matplotlib.image.imread(runs_root / "cmp" / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 200, name
        assert f"({name}.png)" in text
    runs = [load(RunDir(first)), load(RunDir(second))]
    label_runs(runs)
    by_name = {f.name: f for f in figures(runs)}
    assert [s.label for s in by_name["accuracy"].series] == ["optim.lr=0.001", "optim.lr=0.01"]
    loss_lines = by_name["loss"].series
    assert len(loss_lines) == 4 and all(len(s.steps) == len(s.values) > 0 for s in loss_lines)


def test_report_of_one_run_lands_in_the_run_and_bad_targets_are_user_errors(runs_root: Path) -> None:
    run = Path(train(SHORT)["run dir"])
    result = runner.invoke(app, ["report", "latest"])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "report.md").is_file() and (run / "report" / "loss.png").is_file()
    missing = runner.invoke(app, ["report", str(runs_root / "nowhere")])
    assert missing.exit_code == 2 and "not a run directory" in missing.output


def test_tensorboard_logger_writes_the_same_scalars_as_metrics_jsonl() -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainctl.observe.tensorboard import tensorboard_dir

    run = Path(train([*SHORT, "logger=[jsonl,tensorboard]"])["run dir"])
    events = EventAccumulator(str(tensorboard_dir(RunDir(run))))
    events.Reload()
    steps = records(run, "train")
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in steps]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    accuracy = events.Scalars("test/accuracy")
    assert [e.value for e in accuracy] == pytest.approx([r["accuracy"] for r in records(run, "eval")])
    assert {"train/lr", "train/samples_per_s", "test/loss"} <= set(events.Tags()["scalars"])


def test_unknown_logger_is_refused_before_a_run_exists(runs_root: Path) -> None:
    result = runner.invoke(app, ["train", "logger=wandb", *SINGLE])
    assert result.exit_code == 2 and "expected one of [jsonl, tensorboard, mlflow]" in result.output
    assert not runs_root.exists()


def test_runs_ls_shows_status_metric_parent_and_catches_dead_running_runs(runs_root: Path) -> None:
    finished = Path(train(SHORT)["run dir"])
    child = Path(train(["conf=linreg", "trainer.epochs=1", *SINGLE])["run dir"])
    RunDir(child).update_meta(parent="mlp_digits/" + finished.name)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    crashed = runs_root / "linreg" / "20000101-000000"
    crashed.mkdir(parents=True)
    (crashed / "config.yaml").write_text("trainer: {}\n")
    RunDir(crashed).update_meta(
        id="linreg/20000101-000000",
        preset="linreg",
        status="running",
        created="2000-01-01T00:00:00",
        pid=int(dead.stdout),
        host=os.uname().nodename,
    )
    listed = find_runs(runs_root)
    assert [r.path for r in listed] == [child, finished, crashed]  # newest first
    assert [r.status for r in listed] == ["finished", "finished", "stale"]
    assert listed[0].parent == "mlp_digits/" + finished.name and listed[0].metric == "rmse"
    result = runner.invoke(app, ["runs", "ls", "--preset", "mlp_digits"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "linreg" not in result.output
    assert "stale" in runner.invoke(app, ["runs", "ls"]).output


def test_profile_records_a_trace_and_reports_top_operators() -> None:
    run = Path(train(["conf=linreg", "trainer.max_steps=12", "trainer.profile=true", *SINGLE])["run dir"])
    trace = json.loads((run / "profile" / "trace.json").read_text())
    assert any(e.get("name", "").startswith("aten::") for e in trace["traceEvents"])
    log = (run / "train.log").read_text()
    assert "self CPU ms" in log and "aten::" in log


def test_max_steps_stops_mid_epoch_and_resuming_with_a_higher_cap_continues() -> None:
    summary = train(["conf=linreg", "trainer.max_steps=150", *SINGLE])
    assert summary["steps"] == 150
    assert re.fullmatch(r"at step 150 of \d+ \(trainer\.max_steps=150\)", summary["stopped"])
    run = Path(summary["run dir"])
    assert records(run, "train")[-1]["step"] == 150 and len(records(run, "eval")) == 2
    resumed = train(["trainer.max_steps=230"], resume=str(run))
    assert resumed["steps"] == 230


def test_early_stopping_ends_the_run_says_why_and_keeps_the_best_checkpoint() -> None:
    args = ["trainer.epochs=30", "trainer.early_stopping.patience=2", "trainer.early_stopping.min_delta=1.0"]
    summary = train([*args, *SINGLE])
    assert summary["steps"] == 3 * 23  # the first evaluation sets the best; no later one can beat it by 1.0
    assert summary["stopped"].startswith("at step 69 of 690 (early stopping: ")
    assert "has not improved by more than 1 for 2 evaluation(s)" in summary["stopped"]
    assert "epochs" not in summary  # not the 30 planned ones
    run = Path(summary["run dir"])
    assert (run / "checkpoints" / "best.pt").is_file()
    assert "stopped at step 69 of 690 (early stopping" in (run / "train.log").read_text()


def test_early_stopping_counts_evaluations_without_a_real_improvement() -> None:
    stopper = EarlyStopping(EarlyStoppingConfig(patience=2, min_delta=0.01), default_metric="loss")
    assert not stopper.update({"loss": 1.0}, 1)
    assert not stopper.update({"loss": 0.995}, 2)  # better, but not by more than min_delta
    assert not stopper.update({"loss": 0.9}, 3)  # a real improvement resets the count
    assert not stopper.update({"loss": 0.95}, 4)
    assert stopper.update({"loss": 0.91}, 5)
    assert "best 0.9 at step 3" in (stopper.reason or "")
    off = EarlyStopping(EarlyStoppingConfig(), default_metric="accuracy")
    assert not any(off.update({"accuracy": 0.1}, step) for step in range(10))
    with pytest.raises(TrainctlError, match="not a metric"):
        EarlyStopping(EarlyStoppingConfig(metric="f1", patience=1), default_metric="loss").update(
            {"loss": 1}, 1
        )


# ---------------------------------------------------------------- when records reach the disk
def test_step_lines_wait_in_the_buffer_and_every_other_record_goes_straight_to_disk(tmp_path: Path) -> None:
    from trainctl.observe.events import EpochRecord, Reporter, StepRecord
    from trainctl.observe.files import JsonlMetrics, TextLog

    reporter = Reporter([JsonlMetrics(tmp_path / "metrics.jsonl"), TextLog(tmp_path / "train.log")])
    reporter.emit(StepRecord(step=10, epoch=0, batch=10, loss=0.5, lr=0.1, samples_per_s=100.0))
    assert (tmp_path / "metrics.jsonl").read_text() == "" and (tmp_path / "train.log").read_text() == ""
    reporter.flush()
    assert [r["step"] for r in records(tmp_path, "train")] == [10]
    assert "step 10 epoch 0 loss 0.5000" in (tmp_path / "train.log").read_text()
    reporter.emit(StepRecord(step=20, epoch=0, batch=20, loss=0.4, lr=0.1, samples_per_s=100.0))
    reporter.emit(EpochRecord(epoch=0, step=20, seconds=1.0, samples=320))  # writes what waited with it
    assert [r["step"] for r in records(tmp_path, "train")] == [10, 20] and records(tmp_path, "epoch")
    assert "epoch 0 done" in (tmp_path / "train.log").read_text()
    reporter.close()


def test_every_step_line_up_to_a_checkpoint_is_on_disk_before_the_checkpoint(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed right after a checkpoint resumes from it and keeps every step line before it."""
    import trainctl.recipes.supervised as supervised

    on_disk: list[tuple[int, list[int]]] = []  # (the checkpoint's step, the step lines then on disk)
    save = supervised.save_checkpoint

    def saving(state: dict, folder: Path, tag: str, step: int, **kwargs: object) -> None:
        if tag == "last":
            on_disk.append((step, [r["step"] for r in records(folder.parent, "train")]))
        save(state, folder, tag, step, **kwargs)

    monkeypatch.setattr(supervised, "save_checkpoint", saving)
    train(["trainer.epochs=2", "trainer.log_every=1", "trainer.checkpoint_every=5", *SINGLE])
    assert len(on_disk) > 10
    for step, lines in on_disk:
        assert lines == list(range(1, step + 1)), f"checkpoint at step {step}"
