"""The function every launched worker process runs: logs, threads, process group, then the worker."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from trainctl.errors import TrainctlError
from trainctl.interrupts import handle_ctrl_c
from trainctl.observe.events import Beat
from trainctl.observe.files import EventFile
from trainctl.plan import Plan
from trainctl.runs.run_dir import RunDir
from trainctl.runtime.launch.env import TorchrunEnv
from trainctl.runtime.launch.lifeline import end_with_launcher


def rank_log(run: RunDir, rank: int) -> Path:
    return run.logs / f"rank{rank}.log"


def error_file(run: RunDir, rank: int) -> Path:
    return run.logs / f"rank{rank}.error.json"


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (Python and C level) to `path`, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def init_process_group(env: TorchrunEnv, device: str, timeout_s: float) -> None:
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(
        backend=backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=timeout_s)
    )


def run_rank(plan: Plan, env: TorchrunEnv, *, console: bool) -> dict[str, Any]:
    """Run this process's rank of the planned job, as the torchrun environment `env` places it."""
    from trainctl.runtime.worker import run_worker

    return run_worker(
        plan,
        rank=env.rank,
        world_size=env.world_size,
        local_rank=env.local_rank,
        restart=env.restart_count,
        console=console,
    )


def stall_for_test(rank: int) -> None:
    """Fault injection for the stall watch's tests: TRAINCTL_FAULT_STALL_RANK=N makes rank N hang before
    it reports that it started."""
    if os.environ.get("TRAINCTL_FAULT_STALL_RANK") == str(rank):
        while True:
            time.sleep(3600)


def elastic_worker(plan: Plan) -> dict[str, Any]:
    """Run as one rank of the plan; errors are left in logs/rank<N>.error.json for the parent."""
    handle_ctrl_c()
    end_with_launcher()
    env = TorchrunEnv.from_environ()
    assert env is not None and plan.run_dir is not None, "started without the torchrun environment"
    run = RunDir(plan.run_dir)
    redirect_output(rank_log(run, env.rank))
    torch.set_num_threads(plan.threads_per_worker)
    print(
        f"rank {env.rank}/{env.world_size} pid {os.getpid()} restart {env.restart_count} "
        f"host {socket.gethostname()} threads {torch.get_num_threads()}",
        flush=True,
    )
    stall_for_test(env.rank)  # before its first beat: the others' beats are later, its silence the longest
    beat = EventFile(run.logs / f"rank{env.rank}.events.jsonl")  # started: the stall watch's clock runs
    beat.emit(Beat(env.rank))
    beat.close()
    error_file(run, env.rank).unlink(missing_ok=True)
    init_process_group(env, plan.device, plan.collective_timeout_s)
    try:
        return run_rank(plan, env, console=False)
    except TrainctlError as exc:
        error_file(run, env.rank).write_text(
            json.dumps(
                {
                    "type": type(exc).__name__,
                    "what": exc.what,
                    "where": exc.where,
                    "fix": exc.fix,
                    "exit_code": exc.exit_code,
                }
            )
        )
        raise SystemExit(exc.exit_code) from None
    except BaseException:
        traceback.print_exc()  # into this rank's log, where the parent shows its tail
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
