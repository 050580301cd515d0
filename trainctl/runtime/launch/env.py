"""The torchrun environment contract: a process started by torchrun, srun+torchrun or our agent."""

from __future__ import annotations

import os
from dataclasses import dataclass

REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class TorchrunEnv:
    """Who this process is in a job that torch.distributed's elastic agent (or an equivalent) started."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    restart_count: int
    run_id: str | None
    local_world_size: int = 1  # the workers on this node, which share its cores

    @classmethod
    def from_environ(cls) -> TorchrunEnv | None:
        """The environment's worker identity, or None when any of the five variables is missing."""
        if not all(name in os.environ for name in REQUIRED):
            return None
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("SLURM_JOB_ID")
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            master_addr=os.environ["MASTER_ADDR"],
            master_port=int(os.environ["MASTER_PORT"]),
            restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            run_id=None if run_id in (None, "", "none") else run_id,
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )
