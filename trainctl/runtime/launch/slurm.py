"""Launcher `slurm`: an sbatch script that runs the job on an allocation with srun and c10d rendezvous."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from trainctl.config.ranges import ranged
from trainctl.config.schema import LauncherConfig
from trainctl.errors import TrainctlError
from trainctl.plan import Plan
from trainctl.runs.run_dir import RunDir
from trainctl.runtime.launch import LAUNCHERS


@dataclass
class SlurmConfig(LauncherConfig):
    nnodes: int = ranged(2, "[1, inf)")
    nproc: int = ranged(1, "[1, inf)")  # workers per node (one per GPU, typically)
    partition: str | None = None
    account: str | None = None
    time: str = "01:00:00"
    # null: launcher.nproc x trainer.threads (1 when unset)
    cpus_per_task: int | None = ranged(None, "[1, inf)")
    gpus_per_node: int = ranged(0, "[0, inf)")
    # the rendezvous port on the first node; null: 15000 + job id % 10000
    port: int | None = ranged(None, "[1, 65535]")
    max_restarts: int = ranged(0, "[0, inf)")
    setup: str = ""  # shell lines run before srun, e.g. "source .venv/bin/activate"


class SlurmLauncher:
    """Writes <run dir>/slurm.sbatch and submits it; every node then runs `launcher=multinode`."""

    def __init__(self, cfg: SlurmConfig) -> None:
        self.cfg = cfg

    def world_size(self) -> int:
        return self.cfg.nnodes * self.cfg.nproc

    def cpus_per_task(self, plan: Plan) -> int:
        """CPUs of the one task per node: its nproc workers x their threads. Asking for more than a
        node has leaves the job pending for ever, so the default asks for what the plan uses."""
        return self.cfg.cpus_per_task or self.cfg.nproc * (plan.config.trainer.threads or 1)

    def script(self, plan: Plan) -> str:
        c = self.cfg
        cpus = self.cpus_per_task(plan)
        # Two jobs on one head node must not share a rendezvous port: it comes from the job id.
        port = str(c.port) if c.port else "$((15000 + SLURM_JOB_ID % 10000))"
        run_dir = str(plan.run_dir or f"{plan.config.run.root}/{plan.config.preset}/<timestamp>")
        worker_overrides = [o for o in plan.overrides if not o.startswith("launcher")]
        args = " ".join(shlex.quote(o) for o in worker_overrides)
        header = [
            "#!/bin/bash",
            f"#SBATCH --job-name=trainctl-{plan.config.preset}",
            f"#SBATCH --nodes={c.nnodes}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --cpus-per-task={cpus}",
            f"#SBATCH --time={c.time}",
            f"#SBATCH --output={run_dir}/logs/slurm-%j.out",
        ]
        header += [f"#SBATCH --partition={c.partition}"] if c.partition else []
        header += [f"#SBATCH --account={c.account}"] if c.account else []
        header += [f"#SBATCH --gpus-per-node={c.gpus_per_node}"] if c.gpus_per_node else []
        body = [
            "set -euo pipefail",
            *([c.setup] if c.setup else []),
            # awk reads every line: `head -n 1` exits early, and under pipefail scontrol's SIGPIPE
            # then failed the whole script
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk "NR == 1")',
            f"port={port}",
            f"export TRAINCTL_RUN_DIR={shlex.quote(run_dir)}",
            f"srun --nodes={c.nnodes} --ntasks-per-node=1 --cpus-per-task={cpus} trainctl train {args} \\",
            f"    launcher=multinode launcher.nnodes={c.nnodes} launcher.nproc={c.nproc} \\",
            '    launcher.rdzv_endpoint="$head_node:$port" launcher.run_id="$SLURM_JOB_ID" \\',
            f"    launcher.max_restarts={c.max_restarts}",
        ]
        return "\n".join([*header, "", *body]) + "\n"

    def check(self) -> list[str]:
        if self.cfg.nnodes < 1 or self.cfg.nproc < 1:
            raise TrainctlError("launcher.nnodes and launcher.nproc must be at least 1")
        if self.cfg.cpus_per_task is not None and self.cfg.cpus_per_task < 1:
            raise TrainctlError(
                f"launcher.cpus_per_task={self.cfg.cpus_per_task}",
                fix="use 1 or more, or null for launcher.nproc x trainer.threads",
            )
        return [f"sbatch job of {self.cfg.nnodes} node(s) x {self.cfg.nproc} worker(s)"]

    def describe(self, plan: Plan) -> str:
        return f"submit this sbatch script (written to <run dir>/slurm.sbatch):\n{self.script(plan)}"

    def setup(self, plan: Plan) -> None:
        pass

    def launch(self, plan: Plan) -> dict[str, Any]:
        assert plan.run_dir is not None
        run = RunDir(plan.run_dir)
        run.logs.mkdir(parents=True, exist_ok=True)
        path = run.path / "slurm.sbatch"
        path.write_text(self.script(plan))
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            raise TrainctlError(
                f"sbatch is not installed here; the script is written to {path}",
                fix=f"submit it from a Slurm login node: sbatch {path}",
            )
        out = subprocess.run([sbatch, str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            raise TrainctlError(f"sbatch refused the job: {out.stderr.strip()}", where=str(path))
        print(out.stdout.strip())
        return {"submitted": out.stdout.strip(), "script": str(path), "run dir": str(run.path)}


@LAUNCHERS.register("slurm", SlurmConfig)
def build_slurm(cfg: SlurmConfig) -> SlurmLauncher:
    return SlurmLauncher(cfg)
