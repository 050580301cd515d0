"""Launcher `multinode`: the same command on every node joins one c10d rendezvous."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from trainctl.config.ranges import ranged
from trainctl.config.schema import LauncherConfig
from trainctl.errors import TrainctlError
from trainctl.plan import Plan
from trainctl.runs.run_dir import check_folder_name
from trainctl.runtime.launch import LAUNCHERS
from trainctl.runtime.launch.local import STALL_TIMEOUT_S, StartMethod, check_stall_timeout
from trainctl.runtime.launch.rendezvous import check_endpoint


@dataclass
class MultinodeConfig(LauncherConfig):
    nnodes: int = ranged(2, "[1, inf)")
    nproc: int = ranged(1, "[1, inf)")  # workers per node
    rdzv_endpoint: str = "${oc.env:TRAINCTL_RDZV_ENDPOINT,''}"  # HOST:PORT of the rendezvous (the first node)
    run_id: str = "${oc.env:SLURM_JOB_ID,''}"  # the same on every node; names the run directory
    max_restarts: int = ranged(0, "[0, inf)")
    rdzv_timeout: int = ranged(300, "[1, inf)")  # seconds to wait for every node to join
    start_method: StartMethod = StartMethod.forkserver
    # seconds a rank may report nothing before the job is stopped
    stall_timeout: int = ranged(STALL_TIMEOUT_S, "[1, inf)")


class MultinodeLauncher:
    """Starts this node's workers with the elastic agent; the rendezvous assigns global ranks."""

    def __init__(self, cfg: MultinodeConfig) -> None:
        self.cfg = cfg

    def world_size(self) -> int:
        return self.cfg.nnodes * self.cfg.nproc

    def check(self) -> list[str]:
        host, _, port = self.cfg.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise TrainctlError(
                f"launcher.rdzv_endpoint='{self.cfg.rdzv_endpoint}' is not HOST:PORT",
                fix="set launcher.rdzv_endpoint=HOST:PORT, the same on every node",
            )
        if not self.cfg.run_id:
            raise TrainctlError(
                "launcher.run_id is not set",
                fix="set launcher.run_id=NAME, the same on every node (it names the run dir)",
            )
        check_folder_name(self.cfg.run_id, "launcher.run_id")
        check_stall_timeout(self.cfg.stall_timeout)
        check_endpoint(self.cfg.rdzv_endpoint)
        if self.cfg.rdzv_timeout < 1:
            raise TrainctlError(
                f"launcher.rdzv_timeout={self.cfg.rdzv_timeout}",
                fix="use seconds to wait for every node, e.g. 300",
            )
        return [f"rendezvous {self.cfg.rdzv_endpoint}, run id {self.cfg.run_id}, {self.cfg.nnodes} nodes"]

    def describe(self, plan: Plan) -> str:
        args = " ".join(shlex.quote(o) for o in plan.overrides)
        return (
            f"run on each of the {self.cfg.nnodes} nodes (c10d rendezvous at {self.cfg.rdzv_endpoint}, "
            f"{self.cfg.nproc} worker(s) per node, timeout {self.cfg.rdzv_timeout}s):\n"
            f"trainctl train {args}"
        )

    def setup(self, plan: Plan) -> None:
        pass

    def launch(self, plan: Plan) -> dict[str, Any]:
        from trainctl.runtime.launch.elastic import run_elastic

        return run_elastic(
            plan,
            nnodes=self.cfg.nnodes,
            nproc=self.cfg.nproc,
            rdzv_endpoint=self.cfg.rdzv_endpoint,
            run_id=self.cfg.run_id,
            max_restarts=self.cfg.max_restarts,
            rdzv_timeout=self.cfg.rdzv_timeout,
            start_method=StartMethod(self.cfg.start_method).value,
            stall_timeout=self.cfg.stall_timeout,
        )


@LAUNCHERS.register("multinode", MultinodeConfig)
def build_multinode(cfg: MultinodeConfig) -> MultinodeLauncher:
    return MultinodeLauncher(cfg)
