"""A job's processes end with their launcher: a SIGKILLed `trainctl train` leaves no worker writing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import start_trainctl
from tests.test_distributed import final_state, max_difference, train_run, trainctl, worker_pid
from trainctl.runs.lock import LAUNCHER_PID, LockOwner, RunLock, RunLocked, job_processes, lock_path
from trainctl.runs.run_dir import RunDir
from trainctl.runtime.launch.elastic import local_worker_pid
from trainctl.training.checkpoint import load_checkpoint

# scikit-learn's digits (embedded, no download) on two DDP ranks: about a second an epoch here.
DIGITS_DDP = ["conf=mlp_digits", "launcher.nproc=2", "parallel=ddp", "trainer.threads=1", "trainer.epochs=5"]


def running(pid: int) -> bool:
    """Whether `pid` is a process that still runs (a zombie has ended: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux's /proc")
def test_sigkill_of_the_launcher_ends_every_process_of_the_job_and_resume_continues_alone(
    tmp_path: Path,
) -> None:
    reference = train_run(tmp_path / "straight", *DIGITS_DDP)
    runs = tmp_path / "killed"
    proc = start_trainctl(*DIGITS_DDP, runs=runs)
    wait_for(lambda: list(runs.glob("*/*/checkpoints/last.pt")), 120, "no checkpoint was written")
    (run,) = runs.glob("mlp_digits/*")
    job = set(job_processes(proc.pid)) | {worker_pid(run, 0), worker_pid(run, 1)}
    assert len(job) >= 3, job  # the forkserver and two ranks
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(running(pid) for pid in job), 5, f"processes of the job live on: {job}")
    time.sleep(1)  # an orphaned rank would write its next records and checkpoints meanwhile
    assert load_checkpoint(run / "checkpoints" / "last.pt")["position"]["step"] < 5 * 23  # stopped mid-way
    assert "end:" not in (run / "train.log").read_text()

    resumed = trainctl("train", "--resume", "latest", runs=runs)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "took over the lock" in resumed.stderr + resumed.stdout
    assert max_difference(final_state(reference), final_state(run)) == 0.0
    assert (run / "train.log").read_text().count("end:") == 1


def test_the_lock_of_a_dead_launcher_is_not_taken_over_while_a_process_of_its_job_lives(
    tmp_path: Path,
) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    owner = LockOwner(dead, socket.gethostname(), "trainctl train", "2026-01-01T00:00:00", time.time())
    lock_path(run).write_text(json.dumps(asdict(owner)))
    worker = subprocess.Popen(["sleep", "60"], env={**os.environ, LAUNCHER_PID: str(dead)})
    try:
        wait_for(lambda: job_processes(dead) == [worker.pid], 5, "the worker never showed")
        with pytest.raises(RunLocked, match=f"in use by pid {dead}"):
            RunLock.acquire(run)
    finally:
        worker.kill()
        worker.wait()
    notes: list[str] = []
    RunLock.acquire(run, note=notes.append).release()
    assert f"took over the lock of pid {dead}" in notes[0]


def test_taking_a_runs_lock_removes_the_temporaries_of_killed_writers(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    (run.path / "checkpoints").mkdir(parents=True)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    left = [
        f"checkpoints/.last-step5.pt.{dead}.tmp",
        f"checkpoints/.last.pt.{dead}.link",
        f".run.json.{dead}.tmp",
    ]
    for name in left:
        (run.path / name).write_bytes(b"x" * 100)
    writer = subprocess.Popen(["sleep", "60"])
    live = run.path / "checkpoints" / f".best-step5.pt.{writer.pid}.tmp"  # another command writes right now
    live.write_bytes(b"x")
    mine = run.path / "checkpoints" / "last-step4.pt"
    mine.write_bytes(b"kept")
    notes: list[str] = []
    try:
        RunLock.acquire(run, note=notes.append).release()
    finally:
        writer.kill()
        writer.wait()
    assert not any((run.path / name).exists() for name in left) and live.exists() and mine.exists()
    assert notes == [f"removed 3 temporary file(s) that killed writers left: {', '.join(sorted(left))}"]


@pytest.mark.slow
def test_a_rank_killed_after_the_restarts_are_used_up_is_named_first(tmp_path: Path) -> None:
    proc = start_trainctl(*DIGITS_DDP, "launcher.max_restarts=1", runs=tmp_path)
    wait_for(lambda: list(tmp_path.glob("*/*/checkpoints/last.pt")), 120, "no checkpoint was written")
    (run,) = tmp_path.glob("mlp_digits/*")
    first = local_worker_pid(RunDir(run), 1)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: local_worker_pid(RunDir(run), 1) not in (None, first), 60, "rank 1 never restarted")
    os.kill(local_worker_pid(RunDir(run), 1), signal.SIGKILL)
    _, errors = proc.communicate(timeout=120)
    assert proc.returncode == 1, errors[-3000:]
    first_line = next(line for line in errors.splitlines() if line.startswith("error:"))
    assert first_line.startswith("error: rank 1 was killed by SIGKILL"), errors[-3000:]
    assert "restarted 1 time(s) (launcher.max_restarts=1) and failed again" in errors
    assert "restarts from its last checkpoint" not in errors
