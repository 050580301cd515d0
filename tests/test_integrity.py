"""Fault suite, part 1: verified checkpoints, honest resume, run locks, no damage from a failed command."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import socket
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, SINGLE, start_trainctl, trainctl
from tests.integrity_helpers import (
    SMALL,
    damage,
    duplicates,
    fingerprint,
    meta,
    small_run,
    step_records,
    stop,
    wait_for,
)
from trainctl.cli.app import app
from trainctl.cli.train import train
from trainctl.errors import TrainctlError
from trainctl.runs.lock import STALE_AFTER_S, LockOwner, RunLock, RunLocked, lock_path
from trainctl.runs.manifest import check
from trainctl.runs.run_dir import RunDir
from trainctl.runs.summaries import find_runs
from trainctl.training.checkpoint import load_checkpoint, save_checkpoint

runner = CliRunner()


# ---------------------------------------------------------------- verified checkpoints
def test_flipped_bytes_are_refused_and_the_intact_older_checkpoint_resumes(runs_root: Path) -> None:
    run = small_run(2)
    checkpoints = run / "checkpoints"
    assert os.readlink(checkpoints / "last.pt") == "last-step46.pt"
    assert sorted(p.name for p in checkpoints.glob("last-step*.pt")) == ["last-step23.pt", "last-step46.pt"]
    damage(checkpoints / "last-step46.pt", "flipped")
    before = fingerprint(runs_root)

    evaluated = runner.invoke(app, ["eval", "latest"])
    resumed = runner.invoke(app, ["train", "--resume", "latest", "trainer.epochs=3"])
    for result in (evaluated, resumed):
        assert result.exit_code == 2, result.output
        assert "checkpoint corrupted: last.pt -> last-step46.pt: last-step46.pt is altered" in result.output
        assert "the checkpoint of step 23 is intact" in result.output
    assert fingerprint(runs_root) == before  # nothing written, `latest` where it was

    summary = train(["trainer.epochs=3"], resume=str(checkpoints / "last-step23.pt"))  # the offered fall-back
    assert summary["steps"] == 3 * 23
    assert duplicates(step_records(run)) == [] and max(step_records(run)) == 69  # rolled back past step 23
    history = meta(run)["resumes"][-1]
    assert history["checkpoint"] == "last-step23.pt" and history["changed"] == {"trainer.epochs": [2, 3]}
    assert check(checkpoints / "last.pt").intact


@pytest.mark.parametrize(
    ("how", "said"), [("truncated", "is truncated (1,000 of"), ("empty", "is empty (0 of")]
)
def test_truncated_or_empty_checkpoint_exits_2_and_changes_nothing(
    runs_root: Path, how: str, said: str
) -> None:
    run = small_run(2)
    damage(run / "checkpoints" / "last-step46.pt", how)
    before = fingerprint(runs_root)
    for args in (["eval", "latest"], ["train", "--resume", "latest", "trainer.epochs=3"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert said in result.output and "Traceback" not in result.output
    assert fingerprint(runs_root) == before
    assert (
        meta(run)["status"] == "finished"
        and yaml.safe_load((run / "config.yaml").read_text())["trainer"]["epochs"] == 2
    )


def test_a_checkpoint_without_manifest_is_read_with_a_note_and_a_broken_one_is_a_named_error(
    runs_root: Path, tmp_path: Path
) -> None:
    run = small_run(1)
    alone = tmp_path / "alone.pt"
    alone.write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    result = runner.invoke(app, ["eval", str(alone)])
    assert (
        result.exit_code == 0
        and "is not verified: its manifest alone.manifest.json is missing" in result.output
    )
    alone.write_bytes(b"")
    result = runner.invoke(app, ["eval", str(alone)])
    assert result.exit_code == 2 and "cannot read checkpoint (an empty file)" in result.output, result.output


def test_keep_checkpoints_keeps_the_newest_and_their_manifests(runs_root: Path) -> None:
    run = small_run(4, "trainer.keep_checkpoints=3")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert [n for n in names if n.startswith("last-step") and n.endswith(".pt")] == [
        "last-step46.pt",
        "last-step69.pt",
        "last-step92.pt",
    ]
    assert len([n for n in names if n.endswith(".manifest.json")]) == 4  # three last + one best
    result = runner.invoke(app, ["train", "trainer.keep_checkpoints=0", *SINGLE])
    assert result.exit_code == 2 and "trainer.keep_checkpoints=0 is outside [1, inf)" in result.output


def test_checkpoint_every_writes_last_inside_the_epoch(runs_root: Path) -> None:
    run = small_run(1, "trainer.checkpoint_every=10", "trainer.keep_checkpoints=5")  # 23 steps an epoch
    names = sorted(p.name for p in (run / "checkpoints").glob("last-step*.pt"))
    assert names == ["last-step10.pt", "last-step20.pt", "last-step23.pt"]
    position = load_checkpoint(run / "checkpoints" / "last-step10.pt")["position"]
    assert position == {"epoch": 0, "batch": 10, "step": 10}


def evil_metadata(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled: what a tampered DCP .metadata can do."""

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    return pickle.dumps(Evil())


def test_tampered_dcp_metadata_is_refused_before_it_is_unpickled(tmp_path: Path, runs_root: Path) -> None:
    done = trainctl(
        "train", "parallel=fsdp", "launcher.nproc=2", "trainer.epochs=1", *SMALL[:2], runs=runs_root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = (runs_root / "latest").resolve()
    (folder,) = (run / "checkpoints").glob("last-step*.dcp")
    manifest = json.loads((run / "checkpoints" / "last-step23.manifest.json").read_text())
    assert f"{folder.name}/.metadata" in manifest["files"]  # the sharded state is covered too
    marker = tmp_path / "code-ran"
    (folder / ".metadata").write_bytes(evil_metadata(marker))
    before = fingerprint(runs_root)
    result = runner.invoke(app, ["train", "--resume", "latest"])
    assert result.exit_code == 2, result.output
    assert f"last-step23.pt: {folder.name}/.metadata is" in result.output
    assert not marker.exists() and fingerprint(runs_root) == before


def test_dcp_metadata_reader_builds_real_metadata_and_refuses_other_globals(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    from trainctl.runtime.parallel.dcp_metadata import SafeMetadataReader

    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": torch.tensor(3)}
    dcp.save(state, checkpoint_id=tmp_path / "ok.dcp")
    loaded = {"model": {"w": torch.zeros(2, 3)}, "step": torch.tensor(0)}
    dcp.load(loaded, storage_reader=SafeMetadataReader(tmp_path / "ok.dcp"))
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    (tmp_path / "ok.dcp" / ".metadata").write_bytes(evil_metadata(tmp_path / "code-ran"))
    with pytest.raises(TrainctlError, match="global 'posix.mkdir' is not part of DCP metadata"):
        SafeMetadataReader(tmp_path / "ok.dcp").read_metadata()
    assert not (tmp_path / "code-ran").exists()


def test_a_checkpoint_is_hashed_after_its_files_and_linked_last(tmp_path: Path) -> None:
    path = save_checkpoint({"format": 1, "x": torch.ones(3)}, tmp_path, "last", step=7, parts=[])
    assert path.is_symlink() and os.readlink(path) == "last-step7.pt"
    written = json.loads((tmp_path / "last-step7.manifest.json").read_text())
    assert written["step"] == 7 and list(written["files"]) == ["last-step7.pt"]
    assert load_checkpoint(path)["x"].sum() == 3
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


# ---------------------------------------------------------------- honest resume
def test_resume_refuses_overrides_that_change_the_training_with_an_old_new_table(runs_root: Path) -> None:
    small_run(2)
    before = fingerprint(runs_root)
    result = runner.invoke(
        app,
        [
            "train",
            "--resume",
            "latest",
            "optim.lr=1e9",
            "trainer.seed=5",
            "model.dropout=0.5",
            "trainer.epochs=3",
        ],
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "--resume cannot change how the run trains" in output
    assert "model.dropout 0.1 -> 0.5" in output and "optim.lr 0.003 -> 1000000000.0" in output
    assert "trainer.seed 0 -> 5" in output and "trainer.epochs 2" not in output  # allowed: not in the table
    assert fingerprint(runs_root) == before


def test_resume_applies_allowed_overrides_and_records_when(runs_root: Path) -> None:
    run = small_run(2)
    train(["trainer.epochs=4", "trainer.log_every=5", "trainer.eval_every=2"], resume="latest")
    config = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    assert (config["epochs"], config["log_every"], config["eval_every"]) == (4, 5, 2)
    (entry,) = meta(run)["resumes"]
    assert entry["overrides"] == ["trainer.epochs=4", "trainer.log_every=5", "trainer.eval_every=2"]
    assert entry["changed"] == {
        "trainer.epochs": [2, 4],
        "trainer.eval_every": [1, 2],
        "trainer.log_every": [10, 5],
    }
    assert entry["from_step"] == 46 and time.strptime(entry["at"], "%Y-%m-%dT%H:%M:%S")
    steps = step_records(run)
    assert duplicates(steps) == [] and steps[-1] == 92 and {50, 55} <= set(steps)  # logged every 5 now


def test_readme_resume_example_works_as_written(runs_root: Path) -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    example = "trainctl train --resume latest trainer.epochs=10"  # the Training section's
    resume = next(i for i, line in enumerate(lines) if line.startswith(example))
    for line in lines[resume - 1 : resume + 1]:  # the preset's run, then its resume
        args = shlex.split(line.split("#")[0])[1:]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{line}\n{result.output}"
    run = (runs_root / "latest").resolve()
    assert meta(run)["resumes"][0]["changed"] == {"trainer.epochs": [5, 10]}
    assert load_checkpoint(run / "checkpoints" / "last.pt")["position"]["epoch"] == 10


# ---------------------------------------------------------------- nothing damaged by a failure
def test_a_resume_failing_before_its_first_step_leaves_the_run_exactly_as_it_was(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainctl.recipes.supervised as supervised

    small_run(2)
    before = fingerprint(runs_root)

    def broken(self: object, path: Path) -> None:
        raise TrainctlError("the data set changed under the run")

    monkeypatch.setattr(supervised.SupervisedRecipe, "load_checkpoint", broken)
    result = runner.invoke(app, ["train", "--resume", "latest", "trainer.epochs=3"])
    assert result.exit_code == 2 and "the data set changed under the run" in result.output
    assert fingerprint(runs_root) == before  # config, run.json, metrics, checkpoints, `latest`


def test_latest_moves_only_when_a_run_starts(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainctl.recipes.supervised as supervised

    first = small_run(1)
    assert (runs_root / "latest").resolve() == first
    assert runner.invoke(app, ["train", "model.dropout=1.5", *SINGLE]).exit_code == 2  # refused: no run dir
    assert sorted(p.name for p in (runs_root / "mlp_digits").iterdir()) == [first.name]

    def broken(self: object) -> None:
        raise TrainctlError("cannot build the model")

    monkeypatch.setattr(supervised.SupervisedRecipe, "setup", broken)
    result = runner.invoke(app, ["train", *SMALL])
    assert result.exit_code == 2
    (failed,) = [p for p in (runs_root / "mlp_digits").iterdir() if p != first]
    assert meta(failed)["status"] == "failed" and (runs_root / "latest").resolve() == first


# ---------------------------------------------------------------- run locks
def test_a_live_run_refuses_other_writers_and_readers_say_they_read_it_live(runs_root: Path) -> None:
    proc = start_trainctl("trainer.epochs=400", *SMALL, runs=runs_root)
    try:
        wait_for(lambda: list(runs_root.glob("mlp_digits/*/checkpoints/last.pt")), what="a first checkpoint")
        (run,) = (runs_root / "mlp_digits").iterdir()
        config = (run / "config.yaml").read_bytes()
        owner = f"the run is in use by pid {proc.pid} on {socket.gethostname()}"
        resumed = runner.invoke(app, ["train", "--resume", str(run), "trainer.epochs=500"])
        assert resumed.exit_code == 2 and owner in " ".join(resumed.output.split()), resumed.output
        compressed = runner.invoke(app, ["compress", str(run), "--quantize", "int8"])
        assert compressed.exit_code == 2 and "cannot compress it: " + owner in " ".join(
            compressed.output.split()
        )
        into = runner.invoke(app, ["train", *SMALL], env={"TRAINCTL_RUN_DIR": str(run)})
        assert into.exit_code == 2 and owner in " ".join(into.output.split()), into.output
        evaluated = runner.invoke(app, ["eval", str(run)])
        assert evaluated.exit_code == 0 and "is still running" in evaluated.output
        assert (run / "config.yaml").read_bytes() == config and len(list(runs_root.glob("mlp_digits/*"))) == 1
    finally:
        _, errors = stop(proc)
    assert proc.returncode == 130, errors[-2000:]
    assert meta(run)["status"] == "interrupted" and not lock_path(RunDir(run)).exists()
    assert duplicates(step_records(run)) == []


def write_lock(run: Path, pid: int, host: str, heartbeat: float) -> None:
    owner = LockOwner(pid, host, "trainctl train", "2026-01-01T00:00:00", heartbeat)
    (run / "run.lock").write_text(json.dumps(owner.__dict__))


def test_stale_locks_are_taken_over_with_a_note_and_live_foreign_ones_refused(runs_root: Path) -> None:
    run = small_run(1)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    write_lock(run, dead, socket.gethostname(), time.time())
    result = runner.invoke(app, ["train", "--resume", "latest", "trainer.epochs=2"])
    assert result.exit_code == 0, result.output
    assert f"took over the lock of pid {dead}" in result.output and "is no longer running" in result.output
    assert not (run / "run.lock").exists()

    notes: list[str] = []
    write_lock(run, 1, "elsewhere", time.time() - STALE_AFTER_S - 60)
    RunLock.acquire(RunDir(run), note=notes.append).release()
    assert "no heartbeat from elsewhere for 11 min" in notes[0]

    write_lock(run, 1, "elsewhere", time.time())
    before = fingerprint(runs_root)
    with pytest.raises(RunLocked, match="in use by pid 1 on elsewhere"):
        RunLock.acquire(RunDir(run))
    refused = runner.invoke(app, ["train", "--resume", "latest", "trainer.epochs=3"])
    assert refused.exit_code == 2 and "in use by pid 1 on elsewhere" in refused.output
    assert fingerprint(runs_root) == before


def test_runs_ls_shows_stale_when_the_heartbeat_stopped(runs_root: Path) -> None:
    run = small_run(1)
    RunDir(run).update_meta(status="running")
    write_lock(run, 1, "elsewhere", time.time() - 3600)
    (summary,) = find_runs(runs_root)
    assert (summary.status, summary.note) == ("stale", "no heartbeat from elsewhere for 60 min")
    listed = runner.invoke(app, ["runs", "ls"])
    assert listed.exit_code == 0 and "stale" in listed.output, listed.output
    write_lock(run, 1, "elsewhere", time.time())
    assert find_runs(runs_root)[0].status == "running"
