"""Recipe `estimate`: the supervised recipe's setup, then warm-up and measured steps, one evaluation of a
slice of the test split and one checkpoint write, each timed on every rank, and each rank's peak memory
(where batches differ in size, after one more step on the first epoch's largest batch).

Steps are timed by this recipe's own loop over the recipe's `train_step` (the step every run takes): the
loader's wait and the augmentation apart from the step itself. Rank 0 decides when enough steps were
measured (`settings["measure_seconds"]` after `settings["warmup_steps"]`) and every rank follows through
the step's collective stop flag, so all ranks run the same steps.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from trainctl.recipes.supervised import SupervisedRecipe

from trainctl.errors import RunInterrupted
from trainctl.runtime.collectives import broadcast_from, gather_to_rank0
from trainctl.training.evaluation import evaluated_model

if TYPE_CHECKING:
    from trainctl.config.schema import Config
    from trainctl.runtime.worker import WorkerContext

WARMUP_STEPS = 3
MIN_MEASURED_STEPS = 5
MAX_MEASURED_STEPS = 1000
BUDGET_FLOOR_S = 30.0  # an estimate may take this long, or a tenth of the run it predicts if longer
RESERVE_S = 5.0
LONGEST_MEASURE_S = 60.0
EVAL_SLICE_SAMPLES = 512  # test samples per data-parallel rank evaluated, timed and scaled to the whole split


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss where /proc is missing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Start this process's peak resident memory again from its current size (Linux clear_refs 5)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory(device: torch.device) -> dict[str, int]:
    memory = {"rss_bytes": peak_rss_bytes()}
    if device.type == "cuda":
        memory["cuda_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        memory["cuda_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    return memory


def batches(recipe: SupervisedRecipe) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, int]]:
    """(epoch, batch, inputs, targets, global size) of the recipe's loader, epoch after epoch."""
    epoch = 0
    while True:
        for batch, inputs, targets, size in recipe.loader.epoch(epoch):
            yield epoch, batch, inputs, targets, size
        epoch += 1


class StepClock:
    """Rank 0's rule for when to stop measuring: after warm-up, at least MIN_MEASURED_STEPS, never more
    steps than the run has; then until `measure_seconds` of steps, longer for long runs (a tenth of
    the run they predict, at most a minute), and within the estimate's budget: max(30 s, 10% of the
    predicted run) since the command started, less RESERVE_S for the evaluation and checkpoint after."""

    def __init__(self, warmup: int, measure_seconds: float, run_steps: int, command_started: float) -> None:
        self.warmup = min(warmup, max(run_steps - 1, 0))
        self.measure_seconds = measure_seconds
        self.run_steps = run_steps
        self.most = max(1, min(MAX_MEASURED_STEPS, run_steps - self.warmup))
        self.command_started = command_started

    def enough(self, measured: list[float]) -> bool:
        if len(measured) >= self.most:
            return True
        if len(measured) < MIN_MEASURED_STEPS:
            return False
        spent = time.time() - self.command_started
        predicted = spent + (self.run_steps - self.warmup - len(measured)) * sum(measured) / len(measured)
        target = max(self.measure_seconds, min(0.1 * predicted, LONGEST_MEASURE_S))
        budget = max(BUDGET_FLOOR_S, 0.1 * predicted) - RESERVE_S
        return sum(measured) >= target or spent >= budget


def measure_steps(recipe: SupervisedRecipe, ctx: WorkerContext, clock: StepClock) -> dict[str, Any]:
    """Warm-up and measured steps: seconds of each, and of each the part spent waiting for input."""
    warmup: list[float] = []
    steps: list[float] = []
    inputs_wait: list[float] = []
    sizes: list[int] = []  # elements of each measured step's inputs (text batches: trimmed to their longest)
    first_step_at = time.time()
    source = batches(recipe)
    recipe.model.train()
    while True:
        started = time.perf_counter()
        epoch, batch, inputs, targets, size = next(source)
        if recipe.data.augment is not None:
            inputs, targets, size = recipe.augment(inputs, targets, size, epoch, batch)
        ready = time.perf_counter()
        recipe.train_step(inputs, targets, size)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)  # the step's kernels, not only their launch
        took = time.perf_counter() - started
        measuring = len(warmup) >= clock.warmup
        if measuring:
            steps.append(took)
            inputs_wait.append(ready - started)
            sizes.append(inputs.numel())
        else:
            warmup.append(took)
        # Ranks agree after every step (outside the timed part): rank 0's verdict, or a stop request.
        decided = ctx.is_main and measuring and clock.enough(steps)
        no_loss = torch.zeros(1, device=ctx.device)
        _, stop = recipe.strategy.reduce_losses(no_loss, decided or ctx.stop.requested)
        ctx.alive()
        if ctx.stop.requested:
            raise RunInterrupted("the estimate was interrupted")
        if stop:
            break
    epoch_mean = None
    if broadcast_from(len(set(sizes)) > 1, src=0):  # texts padded per batch: batches differ in size
        epoch_sizes = [inputs.numel() for _, inputs, _, _ in recipe.loader.epoch(0)]  # only gathered
        epoch_mean = sum(epoch_sizes) / len(epoch_sizes)  # the measured steps' cost is scaled to it
        largest = max(range(len(epoch_sizes)), key=epoch_sizes.__getitem__)
        train_on_batch(recipe, broadcast_from(largest, src=0))
    return {
        "first_step_at": first_step_at,
        "warmup_seconds": warmup,
        "step_seconds": steps,
        "input_seconds": inputs_wait,
        "input_sizes": sizes,
        "epoch_mean_input_size": epoch_mean,
    }


def train_on_batch(recipe: SupervisedRecipe, batch: int) -> None:
    """One untimed training step on this rank's share of the first epoch's batch `batch`: the run's peak
    memory is set by its largest batch, which the measured steps need not have met."""
    for _, inputs, targets, size in recipe.loader.epoch(0, start=batch):
        if recipe.data.augment is not None:
            inputs, targets, size = recipe.augment(inputs, targets, size, 0, batch)
        recipe.train_step(inputs, targets, size)
        return


def measure_evaluation(recipe: SupervisedRecipe) -> dict[str, Any]:
    """One evaluation of the first batches of the test split, as the run evaluates (averaged weights,
    test-time views); its seconds and how many samples it covered."""
    test = recipe.data.test
    shown = min(len(test), EVAL_SLICE_SAMPLES * recipe.strategy.data_world)
    part = test.subset(torch.arange(shown))
    started = time.perf_counter()
    with recipe.precision.autocast():
        recipe.strategy.evaluate(
            evaluated_model(recipe.model, recipe.data, recipe.ema),
            part,
            recipe.objective,
            recipe.trainer.eval_batch_size,
        )
    return {"eval_seconds": time.perf_counter() - started, "eval_samples": shown}


def checkpoint_bytes(folder: os.PathLike[str]) -> int:
    """Bytes of every file under the checkpoints folder (one checkpoint: its file, parts and manifest)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def main(cfg: Config, ctx: WorkerContext) -> dict[str, Any]:
    """Measure the job; rank 0 returns every rank's figures and the job's shape under "estimate"."""
    settings = ctx.plan.recipe_args
    recipe = SupervisedRecipe(cfg, ctx)
    setup_started = time.perf_counter()
    recipe.setup()
    setup_seconds = time.perf_counter() - setup_started
    t = recipe.trainer
    run_steps = recipe.total_steps if t.max_steps is None else min(recipe.total_steps, t.max_steps)
    warmup = int(settings.get("warmup_steps", WARMUP_STEPS))
    started = float(settings["command_started"])
    clock = StepClock(warmup, float(settings["measure_seconds"]), run_steps, started)
    figures: dict[str, Any] = {"setup_seconds": setup_seconds, **measure_steps(recipe, ctx, clock)}
    figures.update(measure_evaluation(recipe))
    started = time.perf_counter()
    recipe.save_checkpoint("last")
    figures["checkpoint_seconds"] = time.perf_counter() - started
    figures["memory"] = peak_memory(ctx.device)
    figures["finished_at"] = time.time()
    ranks = gather_to_rank0(figures)
    if not ctx.is_main:
        return {}
    return {
        "estimate": {
            "ranks": ranks,
            "steps_per_epoch": recipe.steps_per_epoch,
            "run_steps": run_steps,
            "test_samples": len(recipe.data.test),
            "checkpoint_bytes": checkpoint_bytes(ctx.run.checkpoints),
            "threads": torch.get_num_threads(),
        },
        "run dir": str(ctx.run.path),
    }
