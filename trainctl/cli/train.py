"""`trainctl train`: compose, plan, decide the run directory once, launch (or run as a torchrun worker)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from rich.console import Console

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.plan import Plan, make_plan
from trainctl.runs.run_dir import (
    RunDir,
    create_run_dir,
    default_runs_root,
    named_run_dir,
    record_run,
    resolve_run,
)
from trainctl.runtime.launch.env import TorchrunEnv

FIXED_ON_RESUME = (
    "model",
    "data",
    "trainer.batch_size",
    "trainer.grad_accum",
    "trainer.seed",
    "recipe",
    "parallel",
)


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def check_resumable(saved: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse changes that would make the checkpoint mean something else."""
    for key in FIXED_ON_RESUME:
        if lookup(saved, key) != lookup(new, key):
            raise TrainctlError(f"'{key}' cannot change when resuming", fix="start a new run for that change")
    schedule = new["trainer"]["schedule"]
    if schedule == "onecycle" and saved["trainer"]["epochs"] != new["trainer"]["epochs"]:
        raise TrainctlError(
            f"a one-cycle schedule planned over {saved['trainer']['epochs']} epochs cannot be stretched "
            f"to {new['trainer']['epochs']}",
            fix="resume with the original trainer.epochs, or train with another trainer.schedule",
        )


def plan_resume(target: str, overrides: Sequence[str], download: bool) -> tuple[Plan, RunDir]:
    """Plan the continuation of a run from its saved config and last checkpoint."""
    run = resolve_run(target, default_runs_root())
    if run.read_meta().get("parent"):  # issue 5: a compressed run holds a model, not a training state
        raise TrainctlError(
            "a compressed run cannot be resumed: it has no optimizer or position to continue from",
            where=str(run.path),
            fix=f"resume its parent ({run.read_meta()['parent']}), or compress again",
        )
    if not run.checkpoint("last").is_file():
        raise TrainctlError(
            f"the run has no checkpoint to resume from: {run.checkpoint('last')}",
            fix="start a new run instead",
        )
    saved = OmegaConf.load(run.config_file)
    plan = make_plan(compose(overrides, base=saved), download=download)
    check_resumable(OmegaConf.to_container(saved, resolve=True), plan.tree)
    plan.run_dir = run.path
    plan.resume_from = run.checkpoint("last")
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
    for note in plan.notes:
        Console(stderr=True).print(f"[yellow]note:[/] {note}")
    if dry_run:
        print_plan(plan, launcher.describe(plan))
        return {}
    if run is None:
        run = decide_run_dir(plan)
        if run.checkpoint("last").is_file():  # a requeued or restarted multi-node job: continue it
            plan.resume_from = run.checkpoint("last")
    else:  # resuming: the config may have new values (e.g. more epochs)
        run.config_file.write_text(yaml.safe_dump(plan.tree, sort_keys=False))
        meta = run.read_meta()
        run.update_meta(
            resumes=[
                *meta.get("resumes", []),
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "overrides": list(plan.overrides)},
            ]
        )
    plan.run_dir = run.path
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
