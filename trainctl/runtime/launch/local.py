"""Launcher `local`: the job's workers on this machine (one in this process, or N through elastic_launch)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trainctl.config.ranges import ranged
from trainctl.config.schema import LauncherConfig
from trainctl.errors import TrainctlError
from trainctl.plan import Plan
from trainctl.runtime.launch import LAUNCHERS


class StartMethod(str, Enum):
    """How the elastic agent starts workers (and restarts them: the same way every time).

    forkserver is the default. fork copies the parent, and a parent that has run multithreaded
    OpenMP work (the planner builds models) leaves a copy in which a worker with more than one thread
    waits forever in gomp_team_barrier_wait_end: `launcher.nproc=2 trainer.threads=2` hung here.
    spawn and forkserver start from a fresh interpreter that never ran OpenMP. Measured here (2 busy
    cores), elastic_launch of 2 workers after OpenMP work in the parent: spawn 12-13 s per launch,
    forkserver with torch preloaded 2.8 s for the first launch and 0.8-1.3 s after (restarts reuse
    the server), fork with a clean parent 1.0-1.1 s.
    """

    forkserver = "forkserver"
    spawn = "spawn"  # torchrun's choice; every worker imports torch again
    fork = "fork"  # only safe when the parent never ran OpenMP work (it hangs otherwise)


STALL_TIMEOUT_S = 300  # beyond the longest step or evaluation of the presets on 2 CPU cores


@dataclass
class LocalConfig(LauncherConfig):
    nproc: int = ranged(1, "[1, inf)")
    # restarts of all workers, from the last checkpoint, after a failure
    max_restarts: int = ranged(0, "[0, inf)")
    start_method: StartMethod = StartMethod.forkserver
    # seconds a rank may report nothing before the job is stopped
    stall_timeout: int = ranged(STALL_TIMEOUT_S, "[1, inf)")


class LocalLauncher:
    """One process runs the worker itself; several are started and supervised by the elastic agent
    on 127.0.0.1 with c10d rendezvous on a free port."""

    def __init__(self, cfg: LocalConfig) -> None:
        self.cfg = cfg

    def world_size(self) -> int:
        return self.cfg.nproc

    def check(self) -> list[str]:
        if self.cfg.nproc < 1:
            raise TrainctlError(f"launcher.nproc={self.cfg.nproc}", fix="use launcher.nproc=1 or more")
        check_stall_timeout(self.cfg.stall_timeout)
        return [f"{self.cfg.nproc} local worker(s)"]

    def describe(self, plan: Plan) -> str:
        if self.in_process():
            return "in this process (no worker processes)"
        args = " ".join(shlex.quote(o) for o in plan.overrides)
        return (
            f"elastic_launch: {self.cfg.nproc} workers on 127.0.0.1, c10d rendezvous on a free port, "
            f"start method {StartMethod(self.cfg.start_method).value}, max_restarts {self.cfg.max_restarts}, "
            f"{plan.threads_per_worker} thread(s) each, stopped when a rank is silent "
            f"{self.cfg.stall_timeout}s\n"
            f"same as: torchrun --nproc-per-node {self.cfg.nproc} -m trainctl train {args}"
        )

    def in_process(self) -> bool:
        return self.cfg.nproc == 1 and self.cfg.max_restarts == 0

    def setup(self, plan: Plan) -> None:
        pass

    def launch(self, plan: Plan) -> dict[str, Any]:
        if self.in_process():
            from trainctl.runtime.worker import run_worker

            return run_worker(plan)
        from trainctl.runtime.launch.elastic import free_port, run_elastic

        assert plan.run_dir is not None
        return run_elastic(
            plan,
            nnodes=1,
            nproc=self.cfg.nproc,
            rdzv_endpoint=f"127.0.0.1:{free_port()}",
            run_id=plan.run_dir.name,
            max_restarts=self.cfg.max_restarts,
            rdzv_timeout=60,
            start_method=StartMethod(self.cfg.start_method).value,
            stall_timeout=self.cfg.stall_timeout,
        )


def check_stall_timeout(seconds: int) -> None:
    if seconds < 1:
        raise TrainctlError(
            f"launcher.stall_timeout={seconds}",
            fix=f"use the seconds a rank may stay silent, e.g. {STALL_TIMEOUT_S}",
        )


@LAUNCHERS.register("local", LocalConfig)
def build_local(cfg: LocalConfig) -> LocalLauncher:
    return LocalLauncher(cfg)
