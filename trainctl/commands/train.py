"""`trainctl train`: compose, plan, decide the run directory, launch."""

from __future__ import annotations

import sys
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
from trainctl.runs import RunDir, create_run_dir, default_runs_root, resolve_run


def plan_new_run(overrides: Sequence[str], config_file: Path | None) -> Plan:
    """Compose and check a new run; nothing is written yet."""
    return make_plan(compose(overrides, config_file=config_file))


def plan_resume(target: str, overrides: Sequence[str]) -> tuple[Plan, RunDir]:
    """Plan the continuation of a run from its saved config and last checkpoint."""
    run = resolve_run(target, default_runs_root())
    if not run.checkpoint("last").is_file():
        raise TrainctlError(
            f"the run has no checkpoint to resume from: {run.checkpoint('last')}",
            fix="start a new run instead",
        )
    saved = OmegaConf.load(run.config_file)
    plan = make_plan(compose(overrides, base=saved))
    check_resumable(OmegaConf.to_container(saved, resolve=True), plan.tree)
    plan.run_dir = run.path
    plan.resume_from = run.checkpoint("last")
    return plan, run


FIXED_ON_RESUME = ("model", "data", "trainer.batch_size", "trainer.grad_accum", "trainer.seed", "recipe")


def check_resumable(saved: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse changes that would make the checkpoint mean something else."""

    def lookup(tree: dict[str, Any], dotted: str) -> Any:
        for part in dotted.split("."):
            tree = tree[part]
        return tree

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


def write_run_files(run: RunDir, plan: Plan) -> None:
    """config.yaml, overrides.yaml and run.json: the run's identity, written once by the parent."""
    run.config_file.write_text(yaml.safe_dump(plan.tree, sort_keys=False))
    if not run.overrides_file.exists():
        run.overrides_file.write_text(yaml.safe_dump(list(plan.overrides)))
    run.update_meta(
        id=f"{run.path.parent.name}/{run.path.name}",
        preset=plan.config.preset,
        status="created",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        command=["trainctl", *sys.argv[1:]],
    )


def train(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    resume: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    from trainctl.commands.show_plan import print_plan
    from trainctl.launch import build_launcher

    if resume is not None:
        plan, run = plan_resume(resume, overrides)
        meta = run.read_meta()
        resumes = [
            *meta.get("resumes", []),
            {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "overrides": list(plan.overrides)},
        ]
    else:
        plan = plan_new_run(overrides, config_file)
        run, resumes = None, None
    launcher = build_launcher(plan.config.launcher)
    for note in plan.notes:
        Console(stderr=True).print(f"[yellow]note:[/] {note}")
    if dry_run:
        print_plan(plan)
        return {}
    if run is None:
        run = create_run_dir(Path(plan.config.run.root), plan.config.preset)
        plan.run_dir = run.path
    write_run_files(run, plan)
    if resumes is not None:
        run.update_meta(resumes=resumes)
    launcher.setup(plan)
    return launcher.launch(plan)
