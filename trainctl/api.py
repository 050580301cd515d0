"""The one path for a job (compose, plan, launch, wait, post-steps) and open_run(): a run's model back.

`trainctl train`, sweeps (each job is a `trainctl train` process), smoke checks, lr-find and the
cross-validation of rating runs all run their jobs through `run_job`; eval, predict, compress,
compare and distillation teachers get a run's model through `open_run`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import OmegaConf

from trainctl.config.compose import Composed, compose
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
from trainctl.runtime.launch import Launcher, build_launcher
from trainctl.runtime.launch.env import TorchrunEnv

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainctl.config.schema import Config
    from trainctl.data.types import DataBundle
    from trainctl.training.objective import Objective

FIXED_ON_RESUME = (
    "model",
    "data",
    "trainer.batch_size",
    "trainer.grad_accum",
    "trainer.seed",
    "recipe",
    "parallel",
)


@dataclass
class PlannedJob:
    """A planned job and the launcher that will run it; `run` is the run it continues, if any."""

    plan: Plan
    launcher: Launcher
    run: RunDir | None = None


def plan_job(
    overrides: Sequence[str] = (),
    *,
    config_file: Path | None = None,
    base: Any = None,
    resume: str | None = None,
    download: bool = True,
) -> PlannedJob:
    """Compose and plan a job, or the continuation of the run `resume` names; nothing is written."""
    if resume is not None:
        return plan_resume(resume, overrides, download)
    return plan_composed(compose(overrides, config_file=config_file, base=base), download)


def plan_composed(composed: Composed, download: bool) -> PlannedJob:
    """The plan of a composed config, with the world its launcher config asks for."""
    launcher = build_launcher(composed.config.launcher)
    launcher_checks = launcher.check()
    plan = make_plan(
        composed,
        world_size=launcher.world_size(),
        local_workers=getattr(composed.config.launcher, "nproc", 1),
        launcher_checks=launcher_checks,
        download=download,
    )
    return PlannedJob(plan, launcher)


def plan_resume(target: str, overrides: Sequence[str], download: bool) -> PlannedJob:
    """Plan the continuation of a run from its saved config and last checkpoint."""
    run = resolve_run(target, default_runs_root())
    parent = run.read_meta().get("parent")
    if parent:  # a compressed run holds a model, not a training state
        raise TrainctlError(
            "a compressed run cannot be resumed: it has no optimizer or position to continue from",
            where=str(run.path),
            fix=f"resume its parent ({parent}), or compress again",
        )
    if not run.checkpoint("last").is_file():
        raise TrainctlError(
            f"the run has no checkpoint to resume from: {run.checkpoint('last')}",
            fix="start a new run instead",
        )
    saved = OmegaConf.load(run.config_file)
    job = plan_composed(compose(overrides, base=saved), download)
    check_resumable(OmegaConf.to_container(saved, resolve=True), job.plan.tree)
    job.plan.run_dir = run.path
    job.plan.resume_from = run.checkpoint("last")
    job.run = run
    return job


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


def run_job(
    overrides: Sequence[str] = (),
    *,
    config_file: Path | None = None,
    base: Any = None,
    resume: str | None = None,
    recipe_args: dict[str, Any] | None = None,
    output: Path | None = None,
    on_note: Callable[[str], None] = lambda note: None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Plan a job, launch it, wait for it and run its post-steps; returns rank 0's summary.

    Started by torchrun or srun (their variables are set), runs as that rank instead. `output`: a file
    that takes the job's console output; `on_note`: what composition changed that a person should
    know; `log`: the post-steps' progress lines.
    """
    env = TorchrunEnv.from_environ()
    if env is not None:
        return run_as_rank(env, overrides, config_file, resume, log)
    with output_to(output):
        job = plan_job(overrides, config_file=config_file, base=base, resume=resume)
        job.plan.recipe_args = dict(recipe_args or {})
        for note in job.plan.notes:
            on_note(note)
        return launch(job, log)


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's console output (stdout and stderr) to `path`, appending; None keeps it."""
    if path is None:
        yield
        return
    with path.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def launch(job: PlannedJob, log: Callable[[str], None]) -> dict[str, Any]:
    """Decide the run directory (once, before launch), record the run, launch, wait, post-steps."""
    plan = job.plan
    if job.run is None:
        run = decide_run_dir(plan)
        if run.checkpoint("last").is_file():  # a requeued or restarted multi-node job: continue it
            plan.resume_from = run.checkpoint("last")
    else:  # resuming: the config may have new values (e.g. more epochs)
        run = job.run
        run.config_file.write_text(yaml.safe_dump(plan.tree, sort_keys=False))
        resumes = run.read_meta().get("resumes", [])
        stamp = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "overrides": list(plan.overrides)}
        run.update_meta(resumes=[*resumes, stamp])
    plan.run_dir = run.path
    if plan.config.launcher.name != "multinode":  # one parent: it writes the run's files
        record_run(run, plan.tree, plan.overrides, plan.config.preset)
    job.launcher.setup(plan)
    summary = job.launcher.launch(plan)
    return summary | after_training(plan, summary, log)


def decide_run_dir(plan: Plan) -> RunDir:
    """The run's directory, decided once before launch: $TRAINCTL_RUN_DIR (set by our sbatch script),
    <root>/<preset>/<run_id> for a multi-node job (every node computes the same), else a new one."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        return named_run_dir(Path(os.environ["TRAINCTL_RUN_DIR"]))
    if cfg.launcher.name == "multinode":
        return named_run_dir(Path(cfg.run.root) / cfg.preset / cfg.launcher.run_id)
    return create_run_dir(Path(cfg.run.root), cfg.preset)


def after_training(plan: Plan, summary: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The post-steps of a finished training, where rank 0's summary (with its test metrics) came back:
    compress=OPTION compresses the run's last.pt into a child run. Returns the summary's new entries."""
    from trainctl.compress import build_passes

    if "test" not in summary or plan.run_dir is None or not build_passes(plan.config.compress):
        return {}
    from trainctl.compress.child_run import compress_run, report_summary

    child, card = compress_run(
        open_run(RunDir(plan.run_dir)), plan.config.compress, device=plan.device, log=log
    )
    return {"compressed": report_summary(child, card, log)}


def run_as_rank(
    env: TorchrunEnv,
    overrides: Sequence[str],
    config_file: Path | None,
    resume: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Started by torchrun or srun (the torchrun variables are set): run as that rank, directly."""
    import torch.distributed as dist

    from trainctl.data import prepare_dataset
    from trainctl.runtime.collectives import barrier
    from trainctl.runtime.launch.rank import init_process_group, run_rank

    if resume is not None:
        raise TrainctlError(
            "--resume is for trainctl's own launch", fix="set TRAINCTL_RUN_DIR to the run instead"
        )
    composed = compose(overrides, config_file=config_file)
    plan = plan_rank(composed, env)
    init_process_group(env, plan.device, plan.collective_timeout_s)
    try:
        if env.local_rank == 0:  # one download per node, before the others look
            prepare_dataset(composed.config.data, download=True)
        barrier()
        if plan.train_samples is None:  # the data arrived after the first plan: plan with it
            plan = plan_rank(composed, env)
        plan.run_dir = rank_run_dir(plan, env).path
        summary = run_rank(plan, env, console=env.rank == 0)
        return summary | (after_training(plan, summary, log) if env.rank == 0 else {})
    finally:
        dist.destroy_process_group()


def plan_rank(composed: Composed, env: TorchrunEnv) -> Plan:
    """The plan of one rank of a job that torchrun or srun started (its world comes from them)."""
    return make_plan(composed, world_size=env.world_size, local_workers=env.local_world_size, download=False)


def rank_run_dir(plan: Plan, env: TorchrunEnv) -> RunDir:
    """$TRAINCTL_RUN_DIR, the cluster's run id under the preset, or a new directory rank 0 makes."""
    from trainctl.runtime.collectives import broadcast_from

    if os.environ.get("TRAINCTL_RUN_DIR"):
        return named_run_dir(Path(os.environ["TRAINCTL_RUN_DIR"]))
    if env.run_id:
        return named_run_dir(Path(plan.config.run.root) / plan.config.preset / env.run_id)
    made = create_run_dir(Path(plan.config.run.root), plan.config.preset).path if env.rank == 0 else None
    return RunDir(Path(broadcast_from(str(made), src=0)))  # rank 0 decides, everyone follows


@dataclass
class OpenedRun:
    """A run's checkpoint and its config (with any overrides); its data and model are built on first use.

    `model` is the checkpoint's model with its weights (the run's moving average when it kept one),
    compression passes redone, in eval mode. `run` is None for a bare checkpoint file.
    """

    run: RunDir | None
    checkpoint: Path
    state: dict[str, Any]
    cfg: Config

    @property
    def location(self) -> Path:
        """The run directory, or the checkpoint file when there is no run."""
        return self.checkpoint if self.run is None else self.run.path

    @property
    def id(self) -> str:
        if self.run is None:
            return str(self.checkpoint)
        return str(self.run.read_meta().get("id") or f"{self.run.path.parent.name}/{self.run.path.name}")

    @functools.cached_property
    def data(self) -> DataBundle:
        from trainctl.data import load_dataset

        return load_dataset(self.cfg.data)

    @functools.cached_property
    def model(self) -> nn.Module:
        from trainctl.compress.stored import rebuild_model

        return rebuild_model(self.cfg.model, self.data.spec, self.state).eval()

    def objective(self, device: torch.device | str = "cpu") -> Objective:
        """The run's loss and metrics (label smoothing, class weights) on `device`."""
        import torch

        from trainctl.training.objective import build_objective

        return build_objective(self.cfg.trainer, self.data, torch.device(device))

    def inference_model(self) -> tuple[nn.Module, torch.device]:
        """The model as the run evaluated it (wrapped for test-time views) on the device it runs on."""
        import torch

        from trainctl.compress.stored import inference_model
        from trainctl.runtime.devices import resolve_device

        device = torch.device(resolve_device(self.cfg.trainer.device))
        return inference_model(self.cfg, self.data, self.state, device)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """The mixed precision the model runs under (compressed models: the dtypes their passes chose)."""
        from trainctl.compress.stored import inference_precision
        from trainctl.runtime.precision import MixedPrecision

        return MixedPrecision(inference_precision(self.cfg, self.state), device).autocast()

    def evaluate(self) -> dict[str, float]:
        """Loss and metrics on the test split, as the run evaluated (averaged weights, test-time views)."""
        from trainctl.training.evaluation import evaluate

        model, device = self.inference_model()
        objective = self.objective(device)
        with self.autocast(device):
            return evaluate(
                model, self.data.test, objective, batch_size=self.cfg.trainer.eval_batch_size, device=device
            )


def open_run(target: str | Path | RunDir, *, tag: str = "last", overrides: Sequence[str] = ()) -> OpenedRun:
    """A run (RUN_DIR, 'latest', a RunDir) or a checkpoint file (.pt), opened at its `tag` checkpoint."""
    from trainctl.training.checkpoint import load_checkpoint

    run, checkpoint = locate_checkpoint(target, tag)
    state = load_checkpoint(checkpoint)
    cfg = compose(overrides, base=OmegaConf.create(state["config"])).config
    return OpenedRun(run, checkpoint, state, cfg)


def locate_checkpoint(target: str | Path | RunDir, tag: str) -> tuple[RunDir | None, Path]:
    """The run and checkpoint file `target` names; a TrainctlError when there is no such file."""
    if not isinstance(target, RunDir) and Path(target).suffix == ".pt":
        if not Path(target).is_file():
            raise TrainctlError(f"checkpoint not found: {target}")
        return None, Path(target)
    run = target if isinstance(target, RunDir) else resolve_run(str(target), default_runs_root())
    checkpoint = run.checkpoint(tag)
    if not checkpoint.is_file():
        raise TrainctlError(
            f"the run has no {tag} checkpoint: {checkpoint}",
            where=str(run.path),
            fix="train it first (or wait for it to finish), pass --best/--last to pick the other one, "
            "or give another run",
        )
    return run, checkpoint
