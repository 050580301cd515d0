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
from trainctl.runs.identity import ClaimedRun, claim_run
from trainctl.runs.run_dir import RunDir, create_run_dir, default_runs_root, record_run, resolve_run
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


def decide_run_dir(plan: Plan) -> ClaimedRun:
    """The run's directory, decided once before launch: $TRAINCTL_RUN_DIR (set by our sbatch script and
    by sweeps), <root>/<preset>/<run_id> for a multi-node job (every node computes the same), else a new
    one. A named dir is claimed: the same job continues it, anything else is refused (run_identity)."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        return claim_run(Path(os.environ["TRAINCTL_RUN_DIR"]), plan.tree, "TRAINCTL_RUN_DIR")
    if cfg.launcher.name == "multinode":
        path = Path(cfg.run.root) / cfg.preset / cfg.launcher.run_id
        return claim_run(path, plan.tree, f"launcher.run_id={cfg.launcher.run_id}")
    return ClaimedRun(create_run_dir(Path(cfg.run.root), cfg.preset), None)


def print_notes(plan: Plan) -> None:
    for note in plan.notes:
        Console(stderr=True).print(f"[yellow]note:[/] {note}")


def train(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    resume: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    from trainctl.cli.show_plan import print_plan
    from trainctl.runtime.launch import build_launcher

    env = None if dry_run else TorchrunEnv.from_environ() or srun_ranks(overrides, config_file)
    if env is not None:
        return train_as_torchrun_worker(env, overrides, config_file, resume)
    if resume is not None:
        plan, run = plan_resume(resume, overrides, download=not dry_run)
    else:
        plan, run = make_plan(compose(overrides, config_file=config_file), download=not dry_run), None
    launcher = build_launcher(plan.config.launcher)
    print_notes(plan)
    if dry_run:
        print_plan(plan, launcher.describe(plan))
        return {}
    if run is None:
        claimed = decide_run_dir(plan)
        run, plan.resume_from = claimed.run, claimed.resume_from  # a requeued job continues
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


def srun_ranks(overrides: Sequence[str], config_file: Path | None) -> TorchrunEnv | None:
    """srun's tasks as the job's ranks, when srun started several tasks of a `local` launcher job (a
    `multinode` job, as our sbatch script runs, starts its own workers in one task per node)."""
    env = TorchrunEnv.from_srun()
    if env is None or compose(overrides, config_file=config_file).config.launcher.name != "local":
        return None
    return env


def job_shape_overrides(env: TorchrunEnv) -> list[str]:
    """The launcher settings that rerun this job in the shape torchrun or srun gave it."""
    if env.nnodes == 1:
        return ["launcher=local", f"launcher.nproc={env.local_world_size}"]
    return ["launcher=multinode", f"launcher.nnodes={env.nnodes}", f"launcher.nproc={env.local_world_size}"]


def claim_for_worker(env: TorchrunEnv, plan: Plan) -> ClaimedRun:
    """Rank 0's choice of run dir in a torchrun or srun job (a TrainctlError when it refuses)."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        return claim_run(Path(os.environ["TRAINCTL_RUN_DIR"]), plan.tree, "TRAINCTL_RUN_DIR")
    if env.run_id:
        label = (
            f"torchrun --rdzv-id {env.run_id}"
            if env.launched_by == "torchrun"
            else f"Slurm step {env.run_id}"
        )
        return claim_run(Path(cfg.run.root) / cfg.preset / env.run_id, plan.tree, label)
    return ClaimedRun(create_run_dir(Path(cfg.run.root), cfg.preset), None)


def train_as_torchrun_worker(
    env: TorchrunEnv, overrides: Sequence[str], config_file: Path | None, resume: str | None
) -> dict[str, Any]:
    """Started by torchrun or srun: run as that rank, directly. config.yaml records the job's real
    shape (its launcher section), so that `train --config` reruns it the same way."""
    import torch.distributed as dist

    from trainctl.runtime.collectives import barrier, broadcast_from
    from trainctl.runtime.rank import init_process_group, run_rank

    if resume is not None:
        raise TrainctlError(
            "--resume is for trainctl's own launch", fix="set TRAINCTL_RUN_DIR to the run instead"
        )
    env.export()
    ignored = [o for o in overrides if o.lstrip("+~").startswith("launcher")]
    kept = [o for o in overrides if o not in ignored]
    composed = compose([*kept, *job_shape_overrides(env)], config_file=config_file)
    # One download per node, by local rank 0, before the others look (they plan again after it).
    shape = {"world_size": env.world_size, "cpu_sharers": env.cpu_sharers}
    plan = make_plan(composed, **shape, download=env.local_rank == 0)
    init_process_group(env, plan.device, plan.collective_timeout_s)
    try:
        barrier()
        if plan.train_samples is None:
            plan = make_plan(composed, **shape, download=False)
        decision: dict[str, Any] = {}
        if env.rank == 0:
            if ignored:
                plan.notes.append(
                    f"{' '.join(ignored)} ignored: {env.launched_by} started {env.nnodes} node(s) x "
                    f"{env.local_world_size} rank(s)"
                )
            print_notes(plan)
            try:
                claimed = claim_for_worker(env, plan)
                decision = {"run": str(claimed.run.path), "resume": str(claimed.resume_from or "")}
            except TrainctlError as exc:
                decision = {"refused": True}
                broadcast_from(decision, src=0)
                raise exc from None
        decision = broadcast_from(decision, src=0)
        if decision.get("refused"):
            raise SystemExit(2)  # rank 0 says why
        plan.run_dir = Path(decision["run"])
        plan.resume_from = Path(decision["resume"]) if decision["resume"] else None
        return run_rank(plan, env, console=env.rank == 0)
    finally:
        dist.destroy_process_group()
