"""Who a worker process is when an outside launcher started it: torchrun's variables, or srun's with
one task per rank."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_REQUIRED = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_ID", "SLURM_STEP_ID")


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
    launched_by: str = "torchrun"

    @property
    def nnodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))

    @property
    def cpu_sharers(self) -> int:
        """Workers that share this process's CPU allocation: torchrun's workers share its task's, an
        srun task has its own (--cpus-per-task is per task)."""
        return 1 if self.launched_by == "srun" else self.local_world_size

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

    @classmethod
    def from_srun(cls, environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
        """One task of an srun step of several tasks, each task one rank (as Lightning runs under
        SLURM); None outside srun (a batch script or salloc shell has no SLURM_STEP_ID) or for one task.

        Every task computes the same rendezvous: the first node of the step and a port from the job id.
        The run id is Slurm's step name, JOB.STEP: a requeued job runs its steps again under the same
        names, two trainings in one job get two."""
        environ = os.environ if environ is None else environ
        if not all(environ.get(name) for name in SLURM_REQUIRED):
            return None
        world = int(environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS") or "1")
        if world < 2:
            return None
        nodes = int(environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES") or "1")
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_NODELIST") or "127.0.0.1"
        job = environ["SLURM_JOB_ID"]
        return cls(
            rank=int(environ["SLURM_PROCID"]),
            world_size=world,
            local_rank=int(environ["SLURM_LOCALID"]),
            master_addr=environ.get("MASTER_ADDR") or first_host(nodelist),
            master_port=int(environ.get("MASTER_PORT") or port_for_job(job)),
            restart_count=int(environ.get("SLURM_RESTART_COUNT", "0")),
            run_id=f"{job}.{environ['SLURM_STEP_ID']}",
            local_world_size=max(1, world // max(1, nodes)),
            launched_by="srun",
        )

    def export(self) -> None:
        """Set torchrun's variables in this process (what init_process_group and the planner read)."""
        os.environ.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK=str(self.local_rank),
            LOCAL_WORLD_SIZE=str(self.local_world_size),
            MASTER_ADDR=self.master_addr,
            MASTER_PORT=str(self.master_port),
        )


def port_for_job(job_id: str) -> int:
    """The rendezvous port of a Slurm job: 15000 + the job id's last four digits, so that two jobs
    on one head node use two ports (the same rule as the sbatch script's and Lightning's)."""
    digits = re.sub(r"\D", "", job_id)
    return 15000 + int(digits[-4:] or "0")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: 'gpu[07-09,12],cpu1' -> 'gpu07'."""
    head = re.match(r"([^,\[]*)(\[([^\],-]*))?", nodelist.strip())
    assert head is not None  # the pattern matches any string
    return head.group(1) + (head.group(3) or "")
