"""`trainctl train`: compose, plan, decide the run directory once, launch (or run as a torchrun worker)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trainctl.cli.notes import note
from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.plan import Plan, make_plan
from trainctl.runs.lifecycle import owning
from trainctl.runs.run_dir import (
    RunDir,
    create_run_dir,
    default_runs_root,
    named_run_dir,
    record_run,
    resolve_run,
)
from trainctl.runtime.launch.env import TorchrunEnv


def plan_resume(target: str, overrides: Sequence[str], download: bool) -> tuple[Plan, RunDir]:
    """Plan the continuation of a run (RUN_DIR, `latest`, or one of its checkpoint files) from its saved
    config: the checkpoint verified, the overrides checked (nothing is written here)."""
    from trainctl.config.resume import check_resume
    from trainctl.training.checkpoint import load_checkpoint

    run = resolve_run(target, default_runs_root())
    if run.read_meta().get("parent"):  # a compressed run holds a model, not a training state
        raise TrainctlError(
            "a compressed run cannot be resumed: it has no optimizer or position to continue from",
            where=str(run.path),
            fix=f"resume its parent ({run.read_meta()['parent']}), or compress again",
        )
    checkpoint = Path(target) if Path(target).suffix == ".pt" else run.checkpoint("last")
    if not checkpoint.exists():
        raise TrainctlError(
            f"the run has no checkpoint to resume from: {checkpoint}",
            fix="start a new run instead",
        )
    load_checkpoint(checkpoint, note=note)  # verified against its manifest and readable, before any write
    saved = OmegaConf.load(run.config_file)
    plan = make_plan(compose(overrides, base=saved), download=download)
    changes = check_resume(OmegaConf.to_container(saved, resolve=True), plan.tree, str(run.path))
    plan.run_dir = run.path
    plan.resume_from = checkpoint
    plan.resume_record = {
        "overrides": list(plan.overrides),
        "changed": {key: list(values) for key, values in sorted(changes.items())},
        "checkpoint": checkpoint.resolve().name,
    }
    return plan, run


def decide_run_dir(plan: Plan) -> RunDir:
    """The run's directory, decided once before launch: $TRAINCTL_RUN_DIR (set by our sbatch script),
    <root>/<preset>/<run_id> for a multi-node job (every node computes the same), else a new one."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        return named_run_dir(Path(os.environ["TRAINCTL_RUN_DIR"]))
    if cfg.launcher.name == "multinode":
        return named_run_dir(Path(cfg.run.root) / cfg.preset / cfg.launcher.run_id)
    return create_run_dir(Path(cfg.run.root), cfg.preset)


def train(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    resume: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    from trainctl.cli.show_plan import print_plan
    from trainctl.runtime.launch import build_launcher

    env = TorchrunEnv.from_environ()
    if env is not None and not dry_run:
        return train_as_torchrun_worker(env, overrides, config_file, resume)
    if resume is not None:
        plan, run = plan_resume(resume, overrides, download=not dry_run)
    else:
        plan, run = make_plan(compose(overrides, config_file=config_file), download=not dry_run), None
    launcher = build_launcher(plan.config.launcher)
    for text in plan.notes:
        note(text)
    if dry_run:
        print_plan(plan, launcher.describe(plan))
        return {}
    if run is None:
        run = decide_run_dir(plan)
        if run.checkpoint("last").is_file():  # a requeued or restarted multi-node job: continue it
            plan.resume_from = run.checkpoint("last")
    plan.run_dir = run.path
    with owning(run, plan, note):  # the run's lock; a resume's changes are written when it starts
        if plan.config.launcher.name != "multinode":  # one parent: it writes the run's files
            record_run(run, plan.tree, plan.overrides, plan.config.preset)
        launcher.setup(plan)
        return launcher.launch(plan)


def train_as_torchrun_worker(
    env: TorchrunEnv, overrides: Sequence[str], config_file: Path | None, resume: str | None
) -> dict[str, Any]:
    """Started by torchrun or srun (the torchrun variables are set): run as that rank, directly."""
    import torch.distributed as dist

    from trainctl.runtime.collectives import barrier, broadcast_from
    from trainctl.runtime.rank import init_process_group, run_rank

    if resume is not None:
        raise TrainctlError(
            "--resume is for trainctl's own launch", fix="set TRAINCTL_RUN_DIR to the run instead"
        )
    composed = compose(overrides, config_file=config_file)
    device_plan = make_plan(composed, world_size=env.world_size, download=False)
    init_process_group(env, device_plan.device, device_plan.collective_timeout_s)
    try:
        if env.local_rank == 0:  # one download per node, before the others look
            make_plan(composed, world_size=env.world_size, download=True)
        barrier()
        plan = make_plan(composed, world_size=env.world_size, download=False)
        if os.environ.get("TRAINCTL_RUN_DIR"):
            run = named_run_dir(Path(os.environ["TRAINCTL_RUN_DIR"]))
        elif env.run_id:
            run = named_run_dir(Path(plan.config.run.root) / plan.config.preset / env.run_id)
        else:  # rank 0 decides, everyone follows
            made = (
                create_run_dir(Path(plan.config.run.root), plan.config.preset).path if env.rank == 0 else None
            )
            run = RunDir(Path(broadcast_from(str(made), src=0)))
        plan.run_dir = run.path
        return run_rank(plan, env, console=env.rank == 0)
    finally:
        dist.destroy_process_group()
