"""`trainctl sweep`: run every job of a sweep as its own run, N at a time, then rank them by a metric."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainctl.config.compose import compose
from trainctl.errors import RunFailed, TrainctlError
from trainctl.runs.run_dir import RunDir, default_runs_root
from trainctl.runs.summaries import RunSummary, format_duration, format_metric, read_metrics, summarize
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


def run_job(job: Job, path: Path, extra: list[str]) -> int:
    """One job as `trainctl train` in a child process writing into `path` (resuming if interrupted)."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TRAINCTL_RUN_DIR": str(path)}
    with (path / "sweep-job.log").open("a") as log:
        process = subprocess.run(
            [sys.executable, "-m", "trainctl", "train", *job.overrides, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return process.returncode


def sweep(
    args: Sequence[str],
    *,
    parallel: int = 1,
    metric: str | None = None,
    name: str | None = None,
    console: Console | None = None,
) -> list[JobResult]:
    """Expand, validate every job up front, run the ones not finished yet, print the ranked table."""
    console = console or Console()
    jobs = expand(args)
    # every job's config must compose before anything runs
    nproc = {job: getattr(compose(list(job.overrides)).config.launcher, "nproc", 1) for job in jobs}
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
    console.print(
        f"sweep {folder}: {len(jobs)} job(s), {len(jobs) - len(todo)} finished before, "
        f"{len(todo)} to run, {parallel} at a time"
    )
    extra = threads_for(todo, parallel, nproc)
    lock = threading.Lock()
    done = [0]

    def launch(job: Job) -> None:
        started = time.perf_counter()
        code = run_job(job, folder / job.dirname, extra)
        result = summarize(folder / job.dirname)
        with lock:
            done[0] += 1
            console.print(
                f"[{done[0]}/{len(todo)}] {result.status} {escape(job.label)}: "
                f"{format_metric(result.metric, result.value)} ({time.perf_counter() - started:.0f}s"
                + (f", exit {code}, log {folder / job.dirname / 'sweep-job.log'})" if code else ")")
            )

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        try:
            list(pool.map(launch, todo))
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    results = [
        JobResult(job, folder / job.dirname, summarize(folder / job.dirname), job in todo) for job in jobs
    ]
    console.print(ranked_table(results, metric))
    failed = [r for r in results if r.summary.status != "finished"]
    if failed:
        raise RunFailed(
            f"{len(failed)} of {len(results)} job(s) did not finish",
            where=str(folder),
            fix="see each job's sweep-job.log; run the same sweep again to rerun them",
        )
    return results


def metric_of(result: JobResult, metric: str | None) -> float | None:
    if metric is None or metric == result.summary.metric:
        return result.summary.value
    evals = [r for r in read_metrics(RunDir(result.path).metrics_file) if r.get("kind") == "eval"]
    value: Any = evals[-1].get(metric) if evals else None
    return float(value) if isinstance(value, int | float) else None


def ranked_table(results: list[JobResult], metric: str | None) -> Table:
    """Jobs best first by `metric` (default: the runs' main metric); unfinished ones last."""
    from trainctl.training.objective import higher_is_better

    chosen = metric or next((r.summary.metric for r in results if r.summary.metric), None)
    if chosen is None:
        chosen = "loss"
    higher = higher_is_better(chosen)
    scored = [(metric_of(r, chosen), r) for r in results]
    if chosen and all(v is None for v, _ in scored) and any(r.summary.status == "finished" for r in results):
        raise TrainctlError(
            f"no job reports a metric named '{chosen}'", fix="use --metric accuracy, rmse, loss"
        )

    def order(item: tuple[float | None, JobResult]) -> tuple[int, float]:
        value, result = item
        if value is None or result.summary.status != "finished":
            return (1, 0.0)
        return (0, -value if higher else value)

    table = Table(title=f"sweep ranked by {chosen} ({'higher' if higher else 'lower'} is better)")
    for column in ("#", "job", "status", chosen, "duration", "this time", "run dir"):
        table.add_column(column)
    for rank, (value, result) in enumerate(sorted(scored, key=order), start=1):
        table.add_row(
            str(rank),
            escape(result.job.label),
            result.summary.status,
            "-" if value is None else format_metric(chosen, value).split(" ", 1)[1],
            format_duration(result.summary.seconds),
            "ran" if result.ran else "skipped",
            str(result.path),
        )
    return table
