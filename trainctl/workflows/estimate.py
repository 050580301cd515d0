"""`trainctl plan --estimate`: run a job for a few measured steps in a scratch folder (recipe `estimate`
on the real launcher and world) and project the whole run: time, memory per rank, checkpoint size."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trainctl.errors import RunInterrupted, TrainctlError
from trainctl.workflows.cost_model import Network, Prediction, Workload, compute_per_sample, predict_step

MEASURE_SECONDS = 8.0  # measured steps after warm-up (fewer when the run has fewer steps)
SUPPORTED_RECIPES = ("supervised",)
LOCAL_LAUNCHERS = ("local",)


@dataclass
class RunShape:
    """How a run goes through its steps: epochs started, evaluations and checkpoint writes."""

    steps_per_epoch: int
    run_steps: int
    epochs: int
    eval_passes: int
    checkpoint_writes: int


def run_shape(
    epochs: int, eval_every: int, steps_per_epoch: int, run_steps: int, checkpoint_every: int | None = None
) -> RunShape:
    """The supervised recipe's loop: the last epoch it runs (trainer.epochs or trainer.max_steps)
    evaluates, so do epochs k x eval_every; `last` is written every epoch (and every
    `checkpoint_every` steps inside one) and `best` at each evaluation (counted as if each evaluation
    improved: an upper bound)."""
    ran = max(1, math.ceil(run_steps / max(steps_per_epoch, 1)))
    ran = min(ran, epochs)
    evals = 1 + sum(1 for e in range(ran - 1) if (e + 1) % eval_every == 0)
    inside = range(checkpoint_every, run_steps, checkpoint_every) if checkpoint_every else ()
    mid_epoch = sum(1 for step in inside if step % max(steps_per_epoch, 1))
    return RunShape(steps_per_epoch, run_steps, ran, evals, ran + evals + mid_epoch)


@dataclass
class Estimate:
    """What a measured job predicts for its whole run; `per_rank` holds each rank's own figures."""

    overrides: list[str]
    preset: str
    parallel: str
    world_size: int
    device: str
    threads_per_rank: int
    global_batch: int
    startup_seconds: float
    first_step_seconds: float  # warm-up steps (compilation, first allocations), paid once
    seconds_per_step: float
    samples_per_second: float
    steps_per_epoch: int
    run_steps: int
    epochs: int
    seconds_per_epoch: float  # training steps only, as each run's epoch record counts them
    eval_passes: int
    eval_seconds: float  # one evaluation of the whole test split
    checkpoint_writes: int
    checkpoint_seconds: float
    checkpoint_bytes: int
    teardown_seconds: float
    total_seconds: float
    peak_memory_bytes_per_rank: list[int]
    input_wait_fraction: float  # of a step, waiting for the loader and augmentation (slowest rank)
    bound: str  # "data" or "compute"
    warmup_steps: int
    measured_steps: int
    estimate_seconds: float  # how long measuring took
    per_rank: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # model facts for the what-if model

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def step_seconds(figures: dict[str, Any]) -> float:
    """A rank's seconds per step over the run: the mean of its measured steps; where batches differ in
    size, a least-squares line of seconds against input elements, read at the epoch's mean size."""
    steps, sizes, epoch_size = (
        figures["step_seconds"],
        figures.get("input_sizes"),
        figures.get("epoch_mean_input_size"),
    )
    if not sizes or epoch_size is None or len(set(sizes)) < 3:
        return mean(steps)
    slope, intercept = statistics.linear_regression(sizes, steps)
    if slope <= 0:
        return mean(steps)
    return intercept + slope * epoch_size


def project(
    measured: dict[str, Any],
    *,
    overrides: Sequence[str],
    config: Any,
    world_size: int,
    device: str,
    threads: int,
    command_started: float,
    returned_at: float,
) -> Estimate:
    """The whole run from the estimate recipe's figures (every rank's) and the job's config."""
    ranks = measured["ranks"]
    t = config.trainer
    shape = run_shape(
        t.epochs, t.eval_every, measured["steps_per_epoch"], measured["run_steps"], t.checkpoint_every
    )
    per_rank = []
    for rank, figures in enumerate(ranks):
        steps, inputs = figures["step_seconds"], figures["input_seconds"]
        memory = figures["memory"]
        peak = memory.get("cuda_reserved_bytes", memory["rss_bytes"])
        per_rank.append(
            {
                "rank": rank,
                "seconds_per_step": step_seconds(figures),
                "input_wait_fraction": sum(inputs) / max(sum(steps), 1e-12),
                "setup_seconds": figures["setup_seconds"],
                "warmup_seconds": figures["warmup_seconds"],
                "eval_seconds": figures["eval_seconds"] * measured["test_samples"] / figures["eval_samples"],
                "checkpoint_seconds": figures["checkpoint_seconds"],
                "peak_memory_bytes": peak,
                **memory,
            }
        )
    step = max(r["seconds_per_step"] for r in per_rank)
    warmup = max(sum(r["warmup_seconds"]) for r in per_rank)
    warmup_steps = len(ranks[0]["warmup_seconds"])
    startup = max(f["first_step_at"] for f in ranks) - command_started
    eval_seconds = max(r["eval_seconds"] for r in per_rank)
    checkpoint_seconds = max(r["checkpoint_seconds"] for r in per_rank)
    teardown = max(0.0, returned_at - max(f["finished_at"] for f in ranks))
    total = (
        startup
        + warmup
        + max(shape.run_steps - warmup_steps, 0) * step
        + shape.eval_passes * eval_seconds
        + shape.checkpoint_writes * checkpoint_seconds
        + teardown
    )
    waiting = max(r["input_wait_fraction"] for r in per_rank)
    return Estimate(
        overrides=list(overrides),
        preset=config.preset,
        parallel=config.parallel.name,
        world_size=world_size,
        device=device,
        threads_per_rank=threads,
        global_batch=t.batch_size,
        startup_seconds=startup,
        first_step_seconds=warmup,
        seconds_per_step=step,
        samples_per_second=t.batch_size / step if step > 0 else math.inf,
        steps_per_epoch=shape.steps_per_epoch,
        run_steps=shape.run_steps,
        epochs=shape.epochs,
        seconds_per_epoch=shape.steps_per_epoch * step,
        eval_passes=shape.eval_passes,
        eval_seconds=eval_seconds,
        checkpoint_writes=shape.checkpoint_writes,
        checkpoint_seconds=checkpoint_seconds,
        checkpoint_bytes=measured["checkpoint_bytes"],
        teardown_seconds=teardown,
        total_seconds=total,
        peak_memory_bytes_per_rank=[r["peak_memory_bytes"] for r in per_rank],
        input_wait_fraction=waiting,
        bound="data" if waiting >= 0.5 else "compute",
        warmup_steps=warmup_steps,
        measured_steps=len(ranks[0]["step_seconds"]),
        estimate_seconds=returned_at - command_started,
        per_rank=per_rank,
    )


def process_started() -> float:
    """When this process started (wall clock), so that start-up counts the interpreter and imports."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    return time.time()


@contextlib.contextmanager
def scratch_root() -> Iterator[Path]:
    """A temporary runs root for the measured job, removed whatever happens (Ctrl-C included); the
    user's runs root, its `latest` and $TRAINCTL_RUN_DIR are not used."""
    root = Path(tempfile.mkdtemp(prefix="trainctl-estimate-"))
    saved = os.environ.pop("TRAINCTL_RUN_DIR", None)
    try:
        yield root
    finally:
        if saved is not None:
            os.environ["TRAINCTL_RUN_DIR"] = saved
        shutil.rmtree(root, ignore_errors=True)


def check_estimable(config: Any) -> None:
    """The estimate measures the supervised recipe's steps on this machine's launcher."""
    if config.recipe not in SUPPORTED_RECIPES:
        raise TrainctlError(
            f"--estimate measures the steps of the supervised recipe; this job runs recipe={config.recipe}",
            fix="train it directly (closed-form fits take seconds to minutes)",
        )
    if config.launcher.name not in LOCAL_LAUNCHERS:
        raise TrainctlError(
            f"--estimate runs the job here, and launcher={config.launcher.name} runs it elsewhere",
            fix="estimate launcher=local launcher.nproc=N (one node's share); --world N predicts more ranks",
        )


def measure(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    command_started: float | None = None,
    measure_seconds: float = MEASURE_SECONDS,
) -> Estimate:
    """Plan the job as `train` would (same checks, same exit 2), run it as recipe `estimate` under a
    scratch runs root, and project the whole run from what it measured."""
    from trainctl import api
    from trainctl.config.compose import compose
    from trainctl.recipes.estimate import reset_peak_rss

    started = time.time() if command_started is None else command_started
    config = compose(overrides, config_file=config_file).config  # the user's job: its errors first
    check_estimable(config)
    with scratch_root() as root:
        job = api.plan_job([*overrides, "recipe=estimate", f"run.root={root}"], config_file=config_file)
        job.plan.recipe_args = {"measure_seconds": measure_seconds, "command_started": started}
        in_process = getattr(job.launcher, "in_process", lambda: False)()
        try:
            with api.output_to(root / "estimate.log"):
                if in_process:
                    reset_peak_rss()  # this process becomes the worker: its peak from here on
                summary = api.launch(job, log=lambda line: None)
        except (RunInterrupted, KeyboardInterrupt):
            raise RunInterrupted("the estimate was interrupted; nothing was kept") from None
        returned = time.time()
    plan = job.plan
    estimate = project(
        summary["estimate"],
        overrides=overrides,
        config=config,
        world_size=plan.world_size,
        device=plan.device,
        threads=plan.threads_per_worker,
        command_started=started,
        returned_at=returned,
    )
    estimate.facts = model_facts(plan, config)
    return estimate


def model_facts(plan: Any, config: Any) -> dict[str, Any]:
    """What the what-if model needs from the model: gradient bytes, sharded blocks, and for pipelines
    the widest activation crossing a stage boundary per sample, for each number of stages."""
    import torch

    from trainctl.models import build_model
    from trainctl.runtime.parallel.base import blocks

    model = build_model(config.model, plan.spec)
    facts: dict[str, Any] = {
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad),
        "blocks": len(blocks(model)),
        "microbatches": getattr(config.parallel, "microbatches", 1),
        "layer_output_bytes": [],
    }
    if config.parallel.name == "pipeline" and isinstance(model, torch.nn.Sequential):
        with torch.no_grad():
            x = torch.zeros(1, *plan.spec.input_shape)
            for layer in model:
                x = layer(x)
                facts["layer_output_bytes"].append(x.numel() * x.element_size())
    return facts


def workload(estimate: Estimate) -> Workload:
    """The measured job as the what-if model sees it: compute per sample with the modelled
    communication of the measured world taken out, gradient bytes, blocks, pipeline boundaries."""
    facts = estimate.facts
    outputs = facts.get("layer_output_bytes") or [0]
    base = Workload(
        mode=estimate.parallel if estimate.parallel != "none" else "ddp",
        global_batch=estimate.global_batch,
        compute_per_sample=0.0,
        parameter_bytes=facts["parameter_bytes"],
        blocks=facts["blocks"],
        microbatches=facts["microbatches"],
        boundary_bytes_per_sample=max(outputs[:-1] or [0]),  # the widest a stage boundary can be
    )
    network = Network()  # the measured world is one machine; its links are what the model assumes
    per_sample = compute_per_sample(estimate.seconds_per_step, base, estimate.world_size, network)
    return replace(base, compute_per_sample=per_sample)


def what_if(estimate: Estimate, ranks: int, network: Network) -> Prediction:
    """The predicted step at `ranks` ranks from this measurement."""
    if estimate.parallel == "pipeline" and ranks > estimate.facts["blocks"]:
        raise TrainctlError(
            f"--world {ranks}: the model has {estimate.facts['blocks']} blocks, too few for {ranks} "
            "pipeline stages",
            fix=f"predict at most --world {estimate.facts['blocks']}",
        )
    return predict_step(workload(estimate), ranks, network)
