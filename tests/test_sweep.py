"""Sweeps: Hydra sweep syntax expanded into jobs, a ranked table, and re-runs that skip finished jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SINGLE, trainctl
from trainctl.cli.sweep import job_state
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import RunDir
from trainctl.workflows.sweep_grid import Job, expand, sweep_name


def test_expand_uses_hydra_sweep_syntax() -> None:
    jobs = expand(["optim.lr=1e-3,1e-2", "model=glob([l*,m*],exclude=mf)", "trainer.epochs=3"])
    assert [job.overrides for job in jobs] == [
        ("optim.lr=0.001", "model=linear", "trainer.epochs=3"),
        ("optim.lr=0.001", "model=mlp", "trainer.epochs=3"),
        ("optim.lr=0.01", "model=linear", "trainer.epochs=3"),
        ("optim.lr=0.01", "model=mlp", "trainer.epochs=3"),
    ]
    assert jobs[0].swept == ("optim.lr=0.001", "model=linear")
    assert [j.overrides for j in expand(["trainer.seed=range(0,3)"])] == [
        ("trainer.seed=0",),
        ("trainer.seed=1",),
        ("trainer.seed=2",),
    ]
    assert [j.overrides for j in expand(["optim=choice(sgd,adam)"])] == [("optim=sgd",), ("optim=adam",)]
    assert sweep_name(["conf=linreg", "optim.lr=1,2"], expand(["optim.lr=1,2"])) == "linreg-optim.lr"


def test_a_job_is_its_override_set_whatever_the_order() -> None:
    a = Job(("optim.lr=0.1", "model=mlp"), ("optim.lr=0.1",))
    b = Job(("model=mlp", "optim.lr=0.1"), ("optim.lr=0.1",))
    assert a.key == b.key and a.dirname == b.dirname
    assert Job(("optim.lr=0.2", "model=mlp"), ()).key != a.key


def test_interval_sweeps_and_repeated_jobs_are_user_errors() -> None:
    with pytest.raises(TrainctlError, match="interval sweep"):
        expand(["optim.lr=interval(0,1)"])
    with pytest.raises(TrainctlError, match="same job twice"):
        expand(["optim.lr=1,1"])


def test_failed_and_lost_jobs_run_again_and_interrupted_ones_resume(tmp_path: Path) -> None:
    assert job_state(tmp_path / "never") == "new"
    for status, state in [("finished", "finished"), ("interrupted", "interrupted"), ("failed", "stale")]:
        job = tmp_path / status
        job.mkdir()
        RunDir(job).update_meta(status=status)
        assert job_state(job) == state


def test_2x2_sweep_ranks_its_jobs_and_a_rerun_runs_nothing_new(runs_root: Path) -> None:
    args = [
        "sweep",
        "optim.lr=0.01,0.003",
        "model=mlp,linear",
        "trainer.epochs=1",
        *SINGLE,
        "--parallel",
        "2",
    ]
    first = trainctl(*args, runs=runs_root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 job(s), 0 finished before, 4 to run" in first.stdout
    table = first.stdout[first.stdout.index("sweep ranked by accuracy") :]
    rows = [line for line in table.splitlines() if "finished" in line]
    assert len(rows) == 4 and all("ran" in row for row in rows)
    accuracies = [float(row.split("│")[4].strip().rstrip("%")) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    (folder,) = [p for p in (runs_root / "sweeps").iterdir() if not p.is_symlink()]  # and `latest`
    jobs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(jobs) == 4 and all(
        json.loads((j / "run.json").read_text())["status"] == "finished" for j in jobs
    )
    stamps = {j: (j / "run.json").stat().st_mtime_ns for j in jobs}

    again = trainctl(*args, runs=runs_root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 finished before, 0 to run" in again.stdout
    assert again.stdout.count("skipped") == 4
    assert {j: (j / "run.json").stat().st_mtime_ns for j in jobs} == stamps
