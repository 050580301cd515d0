"""Launcher `local`: the job's workers on this machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainctl.config.schema import LauncherConfig
from trainctl.errors import TrainctlError
from trainctl.launch import LAUNCHERS
from trainctl.plan import Plan


@dataclass
class LocalConfig(LauncherConfig):
    nproc: int = 1


class LocalLauncher:
    """One worker runs in this process."""

    def __init__(self, cfg: LocalConfig) -> None:
        self.cfg = cfg

    def world_size(self) -> int:
        if self.cfg.nproc != 1:
            raise TrainctlError(
                f"launcher.nproc={self.cfg.nproc}: this version runs one process", fix="use launcher.nproc=1"
            )
        return 1

    def setup(self, plan: Plan) -> None:
        pass

    def launch(self, plan: Plan) -> dict[str, Any]:
        from trainctl.worker import run_worker

        return run_worker(plan)


@LAUNCHERS.register("local", LocalConfig)
def build_local(cfg: LocalConfig) -> LocalLauncher:
    return LocalLauncher(cfg)
