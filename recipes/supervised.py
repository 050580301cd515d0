"""Recipe: supervised training on in-memory tensors, for classification and regression.

Read top to bottom: `setup` builds every component from the config, `train` runs the epochs,
`train_step` is one optimizer step, `evaluate` measures the test split, and `save_checkpoint` /
`load_checkpoint` hold everything needed to resume exactly where the run stopped. The parallel
strategy (ctx.strategy) decides how ranks share the model and the data; with one process it
changes nothing.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trainctl.compress.job import compress_after_training
from trainctl.config.schema import Config
from trainctl.data import load_dataset
from trainctl.data.samplers import build_order
from trainctl.errors import RunFailed, RunInterrupted, TrainctlError
from trainctl.models import build_model
from trainctl.observe.events import EpochRecord, EvalRecord, RunStart, StepRecord
from trainctl.observe.profiling import step_profiler
from trainctl.optim import build_optimizer
from trainctl.optim.param_groups import param_groups
from trainctl.optim.schedules import build_scheduler
from trainctl.runtime.collectives import gather_to_rank0
from trainctl.runtime.precision import MixedPrecision
from trainctl.runtime.worker import WorkerContext
from trainctl.training.checkpoint import (
    FORMAT,
    load_checkpoint,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
)
from trainctl.training.distillation import build_distiller
from trainctl.training.early_stopping import EarlyStopping
from trainctl.training.ema import WeightEMA
from trainctl.training.evaluation import evaluated_model
from trainctl.training.objective import build_objective, higher_is_better


@dataclass
class Position:
    """Where training stands: the next epoch and batch to run, and optimizer steps taken so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


class SupervisedRecipe:
    def __init__(self, cfg: Config, ctx: WorkerContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.trainer = cfg.trainer
        self.strategy = ctx.strategy

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        seed_everything(self.trainer.seed)  # the same initial weights on every rank
        self.data = load_dataset(self.cfg.data)
        self.objective = build_objective(self.trainer, self.data, self.ctx.device)  # + class_weights
        # distill.teacher: a teacher run's soft targets join the loss; each rank loads its own teacher
        self.distiller = build_distiller(self.cfg, self.data.spec, self.objective, self.ctx.device)
        model = build_model(self.cfg.model, self.data.spec).to(self.ctx.device)
        seed_everything(self.trainer.seed + self.ctx.rank)  # then each rank its own dropout masks
        self.model = self.strategy.wrap(model)
        # Mixed precision (trainer.precision) and weight averaging (trainer.ema), evaluated in its place.
        self.precision = MixedPrecision(self.trainer.precision, self.ctx.device)
        self.ema = WeightEMA(self.strategy.unwrap(self.model), self.trainer.ema) if self.trainer.ema else None
        self.optimizer = build_optimizer(  # optim.layer_decay, optim.decay_norm_and_bias
            self.cfg.optim, param_groups(self.cfg.optim, self.strategy.unwrap(self.model))
        )
        order = build_order(  # data.sampler: plain shuffle, class-balanced or length-grouped
            self.cfg.data.sampler,
            self.data.train,
            self.data.spec.task,
            self.data.spec.num_outputs,
            self.trainer.batch_size,
        )
        self.loader = self.strategy.train_loader(
            self.data.train, self.trainer.batch_size, self.trainer.seed, order
        )
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * self.trainer.epochs
        self.scheduler = build_scheduler(
            self.trainer, self.optimizer, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps
        )
        self.monitor = self.trainer.monitor or self.objective.main_metric
        self.best: float | None = None
        self.position = Position()
        self.last_loss = math.nan
        # issue 7: early stopping, profiler
        self.early_stopping = EarlyStopping(self.trainer.early_stopping, default_metric=self.monitor)
        self.profiler = step_profiler(
            self.trainer.profile and self.ctx.is_main, self.ctx.run.path / "profile", self.ctx.message
        )
        if self.ctx.resume_from is not None:
            self.load_checkpoint(self.ctx.resume_from)

    # ------------------------------------------------------------------ training
    def train(self) -> dict[str, Any]:
        t = self.trainer
        self.ctx.reporter.emit(
            RunStart(
                run_dir=str(self.ctx.run.path),
                preset=self.cfg.preset,
                epochs=t.epochs,
                steps_per_epoch=self.steps_per_epoch,
                start_epoch=self.position.epoch,
                start_step=self.position.step,
                world_size=self.ctx.world_size,
                parameters=sum(p.numel() for p in self.model.parameters()),
                train_samples=len(self.data.train),
                test_samples=len(self.data.test),
                rank=self.ctx.rank,
            )
        )
        test_metrics: dict[str, float] = {}
        for epoch in range(self.position.epoch, t.epochs):
            if self.out_of_steps():  # resumed at the trainer.max_steps cap
                break
            self.train_epoch(epoch)
            last = epoch == t.epochs - 1 or self.out_of_steps()
            stopping = False
            if last or (epoch + 1) % t.eval_every == 0:
                test_metrics = self.evaluate(epoch)
                self.remember_best(test_metrics)
                stopping = self.early_stopping.update(test_metrics, self.position.step)
            self.save_checkpoint("last")
            if last or stopping:
                break
        self.profiler.close()
        if self.early_stopping.reason:
            self.ctx.message(self.early_stopping.reason, "warning")
        if not test_metrics:  # resumed after the last epoch: measure what was saved
            test_metrics = self.evaluate(t.epochs - 1)
        # compress=OPTION: rank 0 compresses last.pt into a child run (report card, `latest` points at it)
        return self.summary(test_metrics) | compress_after_training(self.cfg, self.ctx)

    def train_epoch(self, epoch: int) -> None:
        t = self.trainer
        self.model.train()
        started = window_start = time.perf_counter()
        window_loss, window_steps, window_samples, epoch_samples = 0.0, 0, 0, 0
        for batch, inputs, targets, global_size in self.loader.epoch(epoch, start=self.position.batch):
            if self.data.augment is not None:  # the data set's batch augmentation, seeded by position
                inputs, targets, global_size = self.augment(inputs, targets, global_size, epoch, batch)
            loss = self.train_step(inputs, targets, global_size)
            loss, stop = self.strategy.reduce_step(loss, self.ctx.stop.requested)  # every rank agrees
            self.position = Position(epoch, batch + 1, self.position.step + 1)
            if not math.isfinite(loss):
                raise RunFailed(
                    f"the loss became {loss} at step {self.position.step} (epoch {epoch + 1})",
                    where=f"last good checkpoint: {self.ctx.run.checkpoint('last')}",
                    fix="lower optim.lr, set trainer.grad_clip, or check the data",
                )
            window_loss += loss
            window_steps += 1
            window_samples += global_size
            epoch_samples += global_size
            if (
                self.position.step % t.log_every == 0
                or batch + 1 == self.steps_per_epoch
                or self.out_of_steps()
            ):
                now = time.perf_counter()
                self.last_loss = window_loss / window_steps
                self.ctx.reporter.emit(
                    StepRecord(
                        step=self.position.step,
                        epoch=epoch,
                        batch=batch + 1,
                        loss=self.last_loss,
                        lr=self.optimizer.param_groups[0]["lr"],
                        samples_per_s=window_samples / max(now - window_start, 1e-9),
                        rank=self.ctx.rank,
                    )
                )
                window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, now
            self.profiler.step()
            self.ctx.alive()
            if stop:
                self.stop_now()
            if self.out_of_steps() and batch + 1 < self.steps_per_epoch:  # trainer.max_steps, mid-epoch
                return
        self.position = Position(epoch + 1, 0, self.position.step)
        self.ctx.reporter.emit(
            EpochRecord(
                epoch=epoch,
                step=self.position.step,
                seconds=time.perf_counter() - started,
                samples=epoch_samples,
                rank=self.ctx.rank,
            )
        )

    def out_of_steps(self) -> bool:
        return self.trainer.max_steps is not None and self.position.step >= self.trainer.max_steps

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, global_size: int) -> float:
        """One optimizer step over this rank's share of a global batch; returns its mean loss."""
        device = self.ctx.device
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        if self.strategy.owns_step:  # a pipeline schedule interleaves forward and backward itself
            total = self.strategy.step(self.model, inputs, targets, self.objective)
        else:
            accum = self.trainer.grad_accum
            pieces = list(zip(inputs.chunk(accum), targets.chunk(accum), strict=True))
            total = 0.0
            for i, (x, y) in enumerate(pieces):
                last_piece = i == len(pieces) - 1  # gradients are synchronised once, on the last piece
                with contextlib.nullcontext() if last_piece else self.strategy.no_sync(self.model):
                    with self.precision.autocast():
                        loss = self.training_loss(x, y) + self.regularization()
                    # Weight each piece by its share of the global batch: gradients summed over
                    # pieces and averaged over ranks are then those of the global batch's mean loss.
                    weight = len(y) * self.loader.world_size / global_size
                    self.precision.backward(loss * weight if weight != 1.0 else loss)
                total += loss.item() * len(y) / len(targets)
        if self.trainer.grad_clip is not None:
            self.precision.unscale(self.optimizer)
            self.strategy.clip_grad_norm(self.model, self.trainer.grad_clip)
        if math.isfinite(total):
            self.precision.step(self.optimizer)
            self.scheduler.step()
            self.strategy.after_step(self.model)
            if self.ema is not None:
                self.ema.update(self.strategy.unwrap(self.model))
        return total

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The objective's loss of the model's outputs; with distill.teacher, the distillation loss."""
        outputs = self.model(inputs).float()
        if self.distiller is not None:
            return self.distiller.loss(outputs, inputs, targets)
        return self.objective.loss(outputs, targets)

    def regularization(self) -> torch.Tensor | float:
        """Hook: the penalty a model's last forward pass left in `.penalty` (mf's L2 on its rows), else 0."""
        penalty = getattr(self.strategy.unwrap(self.model), "penalty", None)
        return 0.0 if penalty is None else penalty

    def augment(
        self, inputs: torch.Tensor, targets: torch.Tensor, global_size: int, epoch: int, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The data set's augmentation of this rank's batch, seeded by its position (resuming is exact).

        Repeated samples (batch augmentation) count in the global batch size that weighs the loss.
        """
        seed = ((self.trainer.seed * 1_000_003 + epoch) * 100_003 + batch) * 1_009 + self.ctx.rank
        device = self.ctx.device
        augmented, repeated = self.data.augment(inputs.to(device), targets.to(device), seed)
        return augmented, repeated, global_size * len(repeated) // len(targets)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, epoch: int) -> dict[str, float]:
        started = time.perf_counter()
        with self.precision.autocast():  # the averaged weights if any, under the data set's test-time views
            metrics = self.strategy.evaluate(
                evaluated_model(self.model, self.data, self.ema),
                self.data.test,
                self.objective,
                self.trainer.eval_batch_size,
            )
        self.ctx.reporter.emit(
            EvalRecord(
                step=self.position.step,
                epoch=epoch,
                split="test",
                metrics=metrics,
                seconds=time.perf_counter() - started,
                rank=self.ctx.rank,
            )
        )
        return metrics

    def remember_best(self, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise TrainctlError(
                f"trainer.monitor='{self.monitor}' is not a metric of this task",
                fix=f"choose one of: {', '.join(metrics)}",
            )
        value = metrics[self.monitor]
        higher = higher_is_better(self.monitor)
        if self.best is None or (value > self.best if higher else value < self.best):
            self.best = value
            self.save_checkpoint("best")

    def summary(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        describe = getattr(self.strategy.unwrap(self.model), "describe", None)
        learned = describe() if callable(describe) else {}
        return {
            "epochs": self.trainer.epochs,
            "steps": self.position.step,
            "train loss": self.last_loss,
            "test": test_metrics,
            **({"stopped early": self.early_stopping.reason} if self.early_stopping.reason else {}),
            **({"model": learned} if learned else {}),
            "wall seconds": time.perf_counter() - self.ctx.started,
            "run dir": str(self.ctx.run.path),
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, tag: str) -> None:
        """Every rank contributes (sharded state, RNG); rank 0 writes <tag>.pt atomically."""
        folder = self.ctx.run.checkpoints
        entries = self.strategy.checkpoint_state(self.model, self.optimizer, folder, tag, self.position.step)
        rngs = gather_to_rank0(rng_state())
        if not self.ctx.is_main:
            return
        state = {
            "format": FORMAT,
            **entries,
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "position": asdict(self.position),
            "best": self.best,
            "early_stopping": self.early_stopping.state_dict(),
            "total_steps": self.total_steps,
            "world_size": self.ctx.world_size,
            "config": self.ctx.plan.tree,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "grad_scaler": self.precision.state_dict(),
        }
        save_atomic(state, self.ctx.run.checkpoint(tag))
        self.strategy.checkpoint_written(folder, tag, state)

    def load_checkpoint(self, path: Path) -> None:
        state = load_checkpoint(path)  # `trainctl train --resume` has refused incompatible changes
        if state["world_size"] != self.ctx.world_size:
            raise TrainctlError(
                f"the checkpoint has {state['world_size']} rank(s), this run {self.ctx.world_size}",
                fix="resume with the launcher settings of the original run",
            )
        self.strategy.restore(self.model, self.optimizer, state, path.parent)
        self.scheduler.load_state_dict(state["scheduler"])
        if state["total_steps"] != self.total_steps:  # re-plan the schedule from the saved step on
            self.scheduler.last_epoch -= 1
            self.scheduler.step()
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.precision.load_state_dict(state.get("grad_scaler") or {})
        self.position = Position(**state["position"])
        self.best = state["best"]
        if "early_stopping" in state:
            self.early_stopping.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"][self.ctx.rank])
        self.ctx.message(f"resumed from {path} at epoch {self.position.epoch + 1}, step {self.position.step}")

    def stop_now(self) -> None:
        self.save_checkpoint("last")
        raise RunInterrupted(
            f"stopped at step {self.position.step} (epoch {self.position.epoch + 1}); checkpoint saved",
            where=str(self.ctx.run.checkpoint("last")),
            fix=f"continue with: trainctl train --resume {self.ctx.run.path}",
        )


def main(cfg: Config, ctx: WorkerContext) -> dict[str, Any]:
    recipe = SupervisedRecipe(cfg, ctx)
    recipe.setup()
    return recipe.train()
