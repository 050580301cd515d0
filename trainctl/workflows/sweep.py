"""Run a sweep: every job of the grid as its own `trainctl train` process, N at a time, resumable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.markup import escape

from trainctl.config.compose import compose
from trainctl.config.schema import Logger
from trainctl.errors import RunFailed
from trainctl.observe.mlflow_sink import end_sweep_parent, sweep_parent
from trainctl.runs.run_dir import RunDir, check_folder_name, default_runs_root
from trainctl.runs.summaries import RunSummary, format_metric, read_metrics, summarize
from trainctl.workflows.sweep_grid import Job, expand, sweep_dir, sweep_name


@dataclass
class JobResult:
    job: Job
    path: Path
    summary: RunSummary
    ran: bool  # False: skipped, finished before


def job_state(path: Path) -> str:
    """finished, interrupted (resumable), new, or stale (failed, lost or never started: run again)."""
    if not (path / "run.json").is_file():
        return "new"
    status = summarize(path).status
    return status if status in ("finished", "interrupted") else "stale"


def threads_for(todo: list[Job], parallel: int, nproc: dict[Job, int]) -> list[str]:
    """Split the cores between the jobs that run at once, unless the user set trainer.threads."""
    if (
        not todo
        or parallel <= 1
        or any(o.startswith("trainer.threads=") for job in todo for o in job.overrides)
    ):
        return []
    workers = min(parallel, len(todo)) * max(nproc[job] for job in todo)
    return [f"trainer.threads={max(1, (os.cpu_count() or 1) // workers)}"]


def train_job(job: Job, path: Path, extra: list[str], env_extra: dict[str, str] | None = None) -> int:
    """One job as `trainctl train` in a child process writing into `path` (resuming if interrupted)."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(env_extra or {}), "TRAINCTL_RUN_DIR": str(path)}
    with (path / "sweep-job.log").open("a") as log:
        process = subprocess.run(
            [sys.executable, "-m", "trainctl", "train", *job.overrides, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return process.returncode


def prepare(args: Sequence[str], jobs: list[Job], name: str | None) -> tuple[Path, list[Job]]:
    """Record the sweep's jobs in its folder and drop the failed ones; (folder, jobs to run)."""
    folder = sweep_dir(default_runs_root(), name or sweep_name(args, jobs))
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "sweep.json"
    known = json.loads(manifest.read_text())["jobs"] if manifest.is_file() else {}
    known.update({job.dirname: list(job.overrides) for job in jobs})
    manifest.write_text(json.dumps({"jobs": known}, indent=2) + "\n")
    todo = []
    for job in jobs:
        path = folder / job.dirname
        state = job_state(path)
        if state == "stale":  # failed before: start it again from scratch
            shutil.rmtree(path)
        if state != "finished":
            todo.append(job)
    return folder, todo


def run_sweep(
    args: Sequence[str], *, parallel: int = 1, name: str | None = None, say: Callable[[str], None] = print
) -> list[JobResult]:
    """Run the jobs not finished yet, `parallel` at a time; every job's result, in grid order."""
    if name is not None:
        check_folder_name(name, "--name")
    jobs = expand(args)
    # every job's config must compose before anything runs
    composed = {job: compose(list(job.overrides)) for job in jobs}
    nproc = {job: getattr(composed[job].config.launcher, "nproc", 1) for job in jobs}
    folder, todo = prepare(args, jobs, name)
    logging = [composed[job] for job in todo if Logger.mlflow in composed[job].config.logger]
    tree = OmegaConf.to_container(logging[0].tree, resolve=True) if logging else {}
    parent = sweep_parent(tree, folder) if logging else {}
    say(
        f"sweep {folder}: {len(jobs)} job(s), {len(jobs) - len(todo)} finished before, "
        f"{len(todo)} to run, {parallel} at a time"
    )
    extra = threads_for(todo, parallel, nproc)
    lock = threading.Lock()
    done = [0]

    def launch(job: Job) -> None:
        started = time.perf_counter()
        code = train_job(job, folder / job.dirname, extra, parent)
        result = summarize(folder / job.dirname)
        with lock:
            done[0] += 1
            say(
                f"[{done[0]}/{len(todo)}] {result.status} {escape(job.label)}: "
                f"{format_metric(result.metric, result.value)} ({time.perf_counter() - started:.0f}s"
                + (f", exit {code}, log {folder / job.dirname / 'sweep-job.log'})" if code else ")")
            )

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        try:
            list(pool.map(launch, todo))
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            end_sweep_parent(tree, parent, "interrupted")
            raise
    end_sweep_parent(tree, parent, "finished")
    return [
        JobResult(job, folder / job.dirname, summarize(folder / job.dirname), job in todo) for job in jobs
    ]


def check_finished(results: list[JobResult]) -> None:
    """A RunFailed naming the jobs that did not finish, if any did not."""
    failed = [r for r in results if r.summary.status != "finished"]
    if failed:
        raise RunFailed(
            f"{len(failed)} of {len(results)} job(s) did not finish",
            where=str(results[0].path.parent),
            fix="see each job's sweep-job.log; run the same sweep again to rerun them",
        )


def metric_of(result: JobResult, metric: str | None) -> float | None:
    """A job's value of `metric`: its main metric, or the metric of its last evaluation."""
    if metric is None or metric == result.summary.metric:
        return result.summary.value
    evals = [r for r in read_metrics(RunDir(result.path).metrics_file) if r.get("kind") == "eval"]
    value: Any = evals[-1].get(metric) if evals else None
    return float(value) if isinstance(value, int | float) else None
