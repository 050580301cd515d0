"""A run's life in its files: nothing changes before it starts; at its start the config, the resume
history, metrics rolled back to the checkpoint, the status and `latest`; at its end, how it ended."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import yaml

from trainctl.runs.disk import disk_error, write_atomic
from trainctl.runs.lock import RunLock
from trainctl.runs.run_dir import RunDir, point_latest

if TYPE_CHECKING:
    from trainctl.plan import Plan

TIME = "%Y-%m-%dT%H:%M:%S"
ENDINGS = ("finished", "failed", "interrupted", "killed", "disk full", "stalled")


def ending_status(exc: BaseException | None) -> str:
    """How a run that stopped with `exc` (None: it returned) ended, as run.json records it."""
    if exc is None:
        return "finished"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError) and (error := disk_error(exc)) is not None:
        return error.status
    status = getattr(exc, "status", "failed")
    return status if status in ENDINGS else "failed"


def rollback_metrics(run: RunDir, step: int) -> int:
    """Drop the records of metrics.jsonl past optimizer step `step` (written after the checkpoint a run
    resumes from: they are about to be written again); returns how many were dropped."""
    path = run.metrics_file
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a torn last line
            continue
        if int(record.get("step", 0)) <= step:
            kept.append(line)
    if len(kept) < len(lines):
        write_atomic(path, "".join(f"{line}\n" for line in kept).encode())
    return len(lines) - len(kept)


def record_start(run: RunDir, plan: Plan, start_step: int, restart: int) -> None:
    """The run has started (its checkpoint loaded, its first step next): write what this command changes."""
    now = time.strftime(TIME)
    fields: dict[str, Any] = {}
    if plan.resume_from is not None or restart > 0:
        dropped = rollback_metrics(run, start_step)
        if dropped:
            fields["rolled_back"] = [
                *run.read_meta().get("rolled_back", []),
                {"at": now, "after_step": start_step, "records": dropped},
            ]
    if plan.resume_record is not None and run.read_meta().get("attempt") != plan.attempt:
        # what --resume applied and when; once (an elastic restart of the resumed job adds nothing)
        write_atomic(run.config_file, yaml.safe_dump(plan.tree, sort_keys=False).encode())
        entry = {"at": now, "from_step": start_step, **plan.resume_record}
        fields["resumes"] = [*run.read_meta().get("resumes", []), entry]
    run.update_meta(
        status="running",
        attempt=plan.attempt,
        restarts=restart,
        pid=os.getpid(),
        host=socket.gethostname(),
        heartbeat=now,
        threads=plan.threads_per_worker,
        threads_source=plan.threads_source,
        **fields,
    )
    point_latest(run.path.parent.parent, run.path)


def started_here(run: RunDir, plan: Plan) -> bool:
    """Whether this command may record how the run ends: it started the run, or made its directory."""
    return plan.resume_from is None or run.read_meta().get("attempt") == plan.attempt


def record_end(run: RunDir, plan: Plan, status: str, *, precise: bool = True) -> None:
    """Record the ending, unless the run was an existing one that this command never started (a resume
    that failed before its first step leaves it exactly as it was). A `precise` status replaces any;
    otherwise only a status that still says the run is going."""
    if not started_here(run, plan):
        return
    recorded = run.read_meta().get("status")
    if not precise and recorded not in ("running", "created", None):
        return
    with contextlib.suppress(OSError):  # a full disk: the error on screen says it all
        run.update_meta(status=status, ended=time.strftime(TIME))


def hold_in_worker(run: RunDir, note: Callable[[str], None]) -> RunLock:
    """Rank 0's hold on the run: the lock of the trainctl process that launched it, or its own (started
    by torchrun or srun; a restart of the same job takes it over)."""
    return RunLock.acquire(run, job=os.environ.get("TORCHELASTIC_RUN_ID", ""), note=note)


@contextlib.contextmanager
def owning(run: RunDir, plan: Plan, note: Callable[[str], None]) -> Iterator[None]:
    """The launching command's hold on the run while its job runs: the lock (a multi-node job's rank 0
    takes it instead: its nodes share the directory), and the ending when the workers could not record it
    (killed, hung, stopped by a signal)."""
    lock = None if plan.config.launcher.name == "multinode" else RunLock.acquire(run, note=note)
    try:
        yield
    except BaseException as exc:
        status = ending_status(exc)
        record_end(run, plan, status, precise=status != "failed")
        raise
    finally:
        if lock is not None:
            lock.release()
