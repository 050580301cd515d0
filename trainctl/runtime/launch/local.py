"""Launcher `local`: the job's workers on this machine (one in this process, or N through elastic_launch)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trainctl.config.schema import LauncherConfig
from trainctl.errors import TrainctlError
from trainctl.plan import Plan
from trainctl.runtime.launch import LAUNCHERS


class StartMethod(str, Enum):
    fork = "fork"  # ~0.2 s to start a worker
    spawn = "spawn"  # 2-4 s, but safe where the parent holds threads that fork would copy badly


@dataclass
class LocalConfig(LauncherConfig):
    nproc: int = 1
    max_restarts: int = 0  # restarts of all workers, from the last checkpoint, after a failure
    start_method: StartMethod = StartMethod.fork


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
        return [f"{self.cfg.nproc} local worker(s)"]

    def describe(self, plan: Plan) -> str:
        if self.in_process():
            return "in this process (no worker processes)"
        args = " ".join(shlex.quote(o) for o in plan.overrides)
        return (
            f"elastic_launch: {self.cfg.nproc} workers on 127.0.0.1, c10d rendezvous on a free port, "
            f"start method {StartMethod(self.cfg.start_method).value}, max_restarts {self.cfg.max_restarts}, "
            f"{plan.threads_per_worker} thread(s) each\n"
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
        )


@LAUNCHERS.register("local", LocalConfig)
def build_local(cfg: LocalConfig) -> LocalLauncher:
    return LocalLauncher(cfg)
