"""The one path for a job (compose, plan, launch, wait, post-steps) and open_run(): a run's model back.

`trainctl train`, sweeps (each job is a `trainctl train` process), smoke checks, lr-find and the
cross-validation of rating runs all run their jobs through `run_job`; eval, predict, compress,
compare and distillation teachers get a run's model through `open_run`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from trainctl.config.compose import Composed, compose
from trainctl.errors import TrainctlError
from trainctl.plan import Plan, make_plan
from trainctl.runs.identity import ClaimedRun, claim_run
from trainctl.runs.run_dir import (
    RunDir,
    check_folder_name,
    create_run_dir,
    default_runs_root,
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
    on_note: Callable[[str], None] | None = None,
) -> PlannedJob:
    """Compose and plan a job, or the continuation of the run `resume` names; nothing is written."""
    if resume is not None:
        return plan_resume(resume, overrides, download, on_note)
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


def plan_resume(
    target: str, overrides: Sequence[str], download: bool, on_note: Callable[[str], None] | None = None
) -> PlannedJob:
    """Plan the continuation of a run (RUN_DIR, `latest`, or one of its checkpoint files) from its saved
    config: the checkpoint verified, the overrides checked; nothing is written (a resume's changes are
    recorded when the run starts)."""
    from trainctl.config.resume import check_resume
    from trainctl.training.checkpoint import load_checkpoint

    run = resolve_run(target, default_runs_root())
    parent = run.read_meta().get("parent")
    if parent:  # a compressed run holds a model, not a training state
        raise TrainctlError(
            "a compressed run cannot be resumed: it has no optimizer or position to continue from",
            where=str(run.path),
            fix=f"resume its parent ({parent}), or compress again",
        )
    checkpoint = Path(target) if Path(target).suffix == ".pt" else run.checkpoint("last")
    if not checkpoint.exists():
        raise TrainctlError(
            f"the run has no checkpoint to resume from: {checkpoint}",
            fix="start a new run instead",
        )
    load_checkpoint(checkpoint, note=on_note)  # verified against its manifest and readable
    saved = OmegaConf.load(run.config_file)
    job = plan_composed(compose(overrides, base=saved), download)
    changes = check_resume(OmegaConf.to_container(saved, resolve=True), job.plan.tree, str(run.path))
    job.plan.run_dir = run.path
    job.plan.resume_from = checkpoint
    job.plan.resume_record = {
        "overrides": list(job.plan.overrides),
        "changed": {key: list(values) for key, values in sorted(changes.items())},
        "checkpoint": checkpoint.resolve().name,
    }
    job.run = run
    return job


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
    env = TorchrunEnv.from_environ() or srun_ranks(overrides, config_file)
    if env is not None:
        return run_as_rank(env, overrides, config_file, resume, log, on_note)
    with output_to(output):
        job = plan_job(overrides, config_file=config_file, base=base, resume=resume, on_note=on_note)
        job.plan.recipe_args = dict(recipe_args or {})
        for note in job.plan.notes:
            on_note(note)
        return launch(job, log, on_note)


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's console output (stdout and stderr) to `path`, appending; None keeps it."""
    if path is None:
        yield
        return
    with path.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def launch(
    job: PlannedJob, log: Callable[[str], None], on_note: Callable[[str], None] = lambda note: None
) -> dict[str, Any]:
    """Decide the run directory (once, before launch), hold the run, record it, launch, wait, post-steps.

    A resumed run's new config and resume record are written when it starts (runs/lifecycle.py): a job
    that fails before its first step leaves the run as it was."""
    from trainctl.runs.lifecycle import owning

    plan = job.plan
    if job.run is None:
        claimed = decide_run_dir(plan)
        run, plan.resume_from = claimed.run, claimed.resume_from  # a requeued job continues
    else:
        run = job.run
    plan.run_dir = run.path
    with owning(run, plan, on_note):  # the run's lock, and the ending its workers could not record
        if plan.config.launcher.name != "multinode":  # one parent: it writes the run's files
            record_run(run, plan.tree, plan.overrides, plan.config.preset)
        job.launcher.setup(plan)
        summary = job.launcher.launch(plan)
        return summary | after_training(plan, summary, log)


def decide_run_dir(plan: Plan) -> ClaimedRun:
    """The run's directory, decided once before launch: $TRAINCTL_RUN_DIR (set by our sbatch script and
    by sweeps), <root>/<preset>/<run_id> for a multi-node job (every node computes the same), else a new
    one. A named dir is claimed: the same job continues it, anything else is refused (runs/identity.py)."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        return claim_run(Path(os.environ["TRAINCTL_RUN_DIR"]), plan.tree, "TRAINCTL_RUN_DIR")
    if cfg.launcher.name == "multinode":
        path = Path(cfg.run.root) / cfg.preset / cfg.launcher.run_id
        return claim_run(path, plan.tree, f"launcher.run_id={cfg.launcher.run_id}")
    return ClaimedRun(create_run_dir(Path(cfg.run.root), cfg.preset), None)


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


def run_as_rank(
    env: TorchrunEnv,
    overrides: Sequence[str],
    config_file: Path | None,
    resume: str | None,
    log: Callable[[str], None],
    on_note: Callable[[str], None],
) -> dict[str, Any]:
    """Started by torchrun or srun: run as that rank, directly. config.yaml records the job's real
    shape (its launcher section), so that `train --config` reruns it the same way."""
    import torch.distributed as dist

    from trainctl.data import prepare_dataset
    from trainctl.runtime.collectives import barrier
    from trainctl.runtime.launch.rank import init_process_group, run_rank

    if resume is not None:
        raise TrainctlError(
            "--resume is for trainctl's own launch", fix="set TRAINCTL_RUN_DIR to the run instead"
        )
    env.export()
    ignored = [o for o in overrides if o.lstrip("+~").startswith("launcher")]
    kept = [o for o in overrides if o not in ignored]
    composed = compose([*kept, *job_shape_overrides(env)], config_file=config_file)
    plan = plan_rank(composed, env)
    init_process_group(env, plan.device, plan.collective_timeout_s)
    try:
        if env.local_rank == 0:  # one download per node, before the others look
            prepare_dataset(composed.config.data, download=True)
        barrier()
        if plan.train_samples is None:  # the data arrived after the first plan: plan with it
            plan = plan_rank(composed, env)
        if env.rank == 0:
            if ignored:
                plan.notes.append(
                    f"{' '.join(ignored)} ignored: {env.launched_by} started {env.nnodes} node(s) x "
                    f"{env.local_world_size} rank(s)"
                )
            for note in plan.notes:
                on_note(note)
        claimed = rank_run_dir(plan, env)
        plan.run_dir, plan.resume_from = claimed.run.path, claimed.resume_from
        summary = run_rank(plan, env, console=env.rank == 0)
        return summary | (after_training(plan, summary, log) if env.rank == 0 else {})
    finally:
        dist.destroy_process_group()


def plan_rank(composed: Composed, env: TorchrunEnv) -> Plan:
    """The plan of one rank of a job that torchrun or srun started (its world comes from them)."""
    return make_plan(composed, world_size=env.world_size, local_workers=env.cpu_sharers, download=False)


def rank_run_dir(plan: Plan, env: TorchrunEnv) -> ClaimedRun:
    """Rank 0's choice, followed by every rank: $TRAINCTL_RUN_DIR, the cluster's run id under the preset
    (claimed: the same job continues it, anything else is refused), or a new directory. A refusal
    reaches every rank: rank 0 raises it, the others exit 2."""
    from trainctl.runtime.collectives import broadcast_from

    decision: dict[str, Any] = {}
    if env.rank == 0:
        try:
            decision = claimed_dir(plan, env)
        except TrainctlError:
            broadcast_from({"refused": True}, src=0)
            raise
    decision = broadcast_from(decision, src=0)
    if decision.get("refused"):
        raise SystemExit(2)  # rank 0 says why
    resume = Path(decision["resume"]) if decision["resume"] else None
    return ClaimedRun(RunDir(Path(decision["run"])), resume)


def claimed_dir(plan: Plan, env: TorchrunEnv) -> dict[str, Any]:
    """Rank 0's run dir and checkpoint to continue from, as plain data to broadcast."""
    cfg = plan.config
    if os.environ.get("TRAINCTL_RUN_DIR"):
        claimed = claim_run(Path(os.environ["TRAINCTL_RUN_DIR"]), plan.tree, "TRAINCTL_RUN_DIR")
    elif env.run_id:
        label = (
            f"torchrun --rdzv-id {env.run_id}"
            if env.launched_by == "torchrun"
            else f"Slurm step {env.run_id}"
        )
        check_folder_name(env.run_id, label.rpartition(" ")[0])
        claimed = claim_run(Path(cfg.run.root) / cfg.preset / env.run_id, plan.tree, label)
    else:
        claimed = ClaimedRun(create_run_dir(Path(cfg.run.root), cfg.preset), None)
    return {"run": str(claimed.run.path), "resume": str(claimed.resume_from or "")}


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

        return build_objective(self.cfg.trainer, self.data, torch.device(device), self.cfg.loss)

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


def open_run(
    target: str | Path | RunDir,
    *,
    tag: str = "last",
    overrides: Sequence[str] = (),
    note: Callable[[str], None] | None = None,
) -> OpenedRun:
    """A run (RUN_DIR, 'latest', a RunDir) or a checkpoint file (.pt), opened at its `tag` checkpoint,
    verified against its manifest. `note` hears that the run is training right now (its latest
    checkpoint is read) or that a checkpoint has no manifest to verify it against."""
    from trainctl.runs.lock import reading_note
    from trainctl.training.checkpoint import load_checkpoint

    run, checkpoint = locate_checkpoint(target, tag)
    holder = checkpoint.resolve().parent.parent if checkpoint.resolve().parent.name == "checkpoints" else None
    running = reading_note(RunDir(holder)) if holder is not None else None
    if running is not None and note is not None:
        note(running)
    state = load_checkpoint(checkpoint, note=note)
    cfg = compose(overrides, base=OmegaConf.create(state["config"])).config
    if run is not None and note is not None:
        from trainctl.runs.record import changed_code

        for line in changed_code(run):  # user components edited since the run
            note(line)
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
