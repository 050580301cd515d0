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
from typing import TYPE_CHECKING, Any

import torch

from trainctl.compress.stored import rebuild_from_file
from trainctl.config.schema import Config
from trainctl.data import load_dataset
from trainctl.data.augment import batch_seed
from trainctl.data.samplers import build_order
from trainctl.errors import RunFailed, RunInterrupted, TrainctlError
from trainctl.models import Penalized, build_model, training_penalty
from trainctl.observe.events import EpochRecord, EvalRecord, RunStart, StepRecord
from trainctl.observe.profiling import step_profiler
from trainctl.observe.ticker import Ticker
from trainctl.optim import build_optimizer
from trainctl.optim.param_groups import param_groups
from trainctl.optim.schedules import build_scheduler
from trainctl.recommend.run_ranking import run_ranking
from trainctl.runs.metrics import higher_is_better
from trainctl.runtime.collectives import gather_to_rank0
from trainctl.runtime.precision import MixedPrecision
from trainctl.training.checkpoint import (
    FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from trainctl.training.distillation import Distiller, teacher_checkpoint
from trainctl.training.early_stopping import EarlyStopping
from trainctl.training.ema import WeightEMA
from trainctl.training.evaluation import evaluated_model
from trainctl.training.objective import build_objective

if TYPE_CHECKING:
    from trainctl.runtime.worker import WorkerContext


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
        self.objective = build_objective(  # + class_weights, loss._target_
            self.trainer, self.data, self.ctx.device, self.cfg.loss
        )
        # distill.teacher: a teacher run's soft targets join the loss; each rank loads its own teacher
        self.distiller = self.build_distiller()
        model = build_model(self.cfg.model, self.data.spec).to(self.ctx.device)
        seed_everything(self.trainer.seed + self.ctx.rank)  # then each rank its own dropout masks
        self.model = self.strategy.wrap(model)
        self.penalized = isinstance(model, Penalized)  # mf: its own penalty joins the loss (once, here)
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
            self.trainer,
            self.optimizer,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            target=self.cfg.scheduler,  # scheduler._target_
        )
        self.monitor = self.trainer.monitor or self.objective.main_metric
        self.ranking = run_ranking(self.cfg.model.name, self.cfg.data)  # a top-N model's figures, or None
        self.best: float | None = None
        self.position = Position()
        self.last_loss = math.nan
        self.compiled: set[str] = set()  # phases that torch.compile has compiled (model.compile=true)
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
                max_steps=t.max_steps,
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
        if self.stopped_why():
            self.ctx.message(f"stopped {self.stopped_at()}", "warning")
        if not test_metrics:  # resumed after the last epoch: measure what was saved
            test_metrics = self.evaluate(t.epochs - 1)
        return self.summary(test_metrics)  # compress=OPTION runs after the job, on last.pt

    def build_distiller(self) -> Distiller | None:
        """The distillation loss of distill.teacher, its teacher rebuilt on this rank; None without one."""
        d = self.cfg.distill
        if not d.teacher:
            return None
        teacher = rebuild_from_file(teacher_checkpoint(d), self.data.spec, self.ctx.device)
        return Distiller(teacher, d.temperature, d.alpha, self.objective)

    def train_epoch(self, epoch: int) -> None:
        t = self.trainer
        self.model.train()
        started = window_start = time.perf_counter()
        # Each step's loss stays a tensor until the next report: no host sync and no collective per
        # step. Ranks agree on the losses and on a stop request at each report (every trainer.log_every
        # steps and at the epoch's end); a lone process looks at its stop flag after every step.
        window: list[torch.Tensor] = []
        window_samples, epoch_samples = 0, 0
        for batch, inputs, targets, global_size in self.loader.epoch(epoch, start=self.position.batch):
            if self.data.augment is not None:  # the data set's batch augmentation, seeded by position
                inputs, targets, global_size = self.augment(inputs, targets, global_size, epoch, batch)
            with self.compiling("the first training step"):
                window.append(self.train_step(inputs, targets, global_size))
            self.position = Position(epoch, batch + 1, self.position.step + 1)
            window_samples += global_size
            epoch_samples += global_size
            report = (
                self.position.step % t.log_every == 0
                or batch + 1 == self.steps_per_epoch
                or self.out_of_steps()
            )
            stop = False
            if report or (self.ctx.world_size == 1 and self.ctx.stop.requested):
                losses, stop = self.strategy.reduce_losses(torch.stack(window), self.ctx.stop.requested)
                self.check_finite(losses, epoch)
                if report:
                    now = time.perf_counter()
                    self.last_loss = sum(losses) / len(losses)
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
                    window, window_samples, window_start = [], 0, now
            self.profiler.step()
            self.ctx.alive()
            if stop:
                self.stop_now()
            if self.out_of_steps() and batch + 1 < self.steps_per_epoch:  # trainer.max_steps, mid-epoch
                return
            every = t.checkpoint_every  # last.pt inside the epoch too (its end writes one anyway)
            if every and self.position.step % every == 0 and batch + 1 < self.steps_per_epoch:
                self.save_checkpoint("last")
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

    def check_finite(self, losses: list[float], epoch: int) -> None:
        """Fail the run at the first step of `losses` (the steps up to this one) whose loss is not finite."""
        bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
        if bad is None:
            return
        step = self.position.step - len(losses) + 1 + bad
        last = self.ctx.run.checkpoint("last")
        raise RunFailed(
            f"the loss became {losses[bad]} at step {step} (epoch {epoch + 1})",
            where=f"last good checkpoint: {last}"
            if last.exists()
            else "no checkpoint was written: the loss diverged before the first one",
            fix="lower optim.lr, set trainer.grad_clip, or check the data",
        )

    def compiling(self, phase: str) -> contextlib.AbstractContextManager[Any]:
        """model.compile=true: torch.compile works during the first training step and the first
        evaluation, silently for a long while; rank 0 says so at least every 10 s while it does."""
        if not getattr(self.cfg.model, "compile", False) or phase in self.compiled or not self.ctx.is_main:
            return contextlib.nullcontext()
        self.compiled.add(phase)
        return Ticker(f"compiling the model for {phase} (model.compile=true)", say=self.ctx.message)

    def out_of_steps(self) -> bool:
        return self.trainer.max_steps is not None and self.position.step >= self.trainer.max_steps

    def stopped_why(self) -> str | None:
        """Why the run ended before its planned epochs (early stopping, trainer.max_steps), else None."""
        if self.early_stopping.reason:
            return f"early stopping: {self.early_stopping.reason}"
        if self.out_of_steps() and self.position.step < self.total_steps:
            return f"trainer.max_steps={self.trainer.max_steps}"
        return None

    def stopped_at(self) -> str:
        return f"at step {self.position.step} of {self.total_steps} ({self.stopped_why()})"

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, global_size: int) -> torch.Tensor:
        """One optimizer step over this rank's share of a global batch; its mean loss, as a tensor (the
        caller reads it at the next report, so the step forces no host sync)."""
        device = self.ctx.device
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        if self.strategy.owns_step:  # a pipeline schedule interleaves forward and backward itself
            total = self.strategy.step(self.model, inputs, targets, self.objective)
        else:
            accum = self.trainer.grad_accum
            pieces = list(zip(inputs.chunk(accum), targets.chunk(accum), strict=True)) if accum > 1 else None
            total = None
            for i, (x, y) in enumerate(pieces or [(inputs, targets)]):
                last_piece = pieces is None or i == len(pieces) - 1  # gradients synchronise on the last
                with contextlib.nullcontext() if last_piece else self.strategy.no_sync(self.model):
                    with self.precision.autocast():
                        loss = self.training_loss(x, y)
                        if self.penalized:
                            loss = loss + self.regularization()
                    # Weight each piece by its share of the global batch: gradients summed over
                    # pieces and averaged over ranks are then those of the global batch's mean loss.
                    weight = len(y) * self.loader.world_size / global_size
                    self.precision.backward(loss * weight if weight != 1.0 else loss)
                share = loss.detach().float() * (len(y) / len(targets)) if pieces else loss.detach()
                total = share if total is None else total + share
        if self.trainer.grad_clip is not None:
            self.precision.unscale(self.optimizer)
            self.strategy.clip_grad_norm(self.model, self.trainer.grad_clip)
        # A non-finite loss fails the run at the next report, before any checkpoint takes its weights.
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
        """The model's own penalty of its last forward pass (mf's L2 on its rows), else 0."""
        return training_penalty(self.strategy.unwrap(self.model))

    def augment(
        self, inputs: torch.Tensor, targets: torch.Tensor, global_size: int, epoch: int, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The data set's augmentation of this rank's batch, seeded by its position (resuming is exact).

        Repeated samples (batch augmentation) count in the global batch size that weighs the loss.
        """
        seed = batch_seed(self.trainer.seed, epoch, batch, self.ctx.rank)
        device = self.ctx.device
        augmented, repeated = self.data.augment(inputs.to(device), targets.to(device), seed)
        return augmented, repeated, global_size * len(repeated) // len(targets)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, epoch: int) -> dict[str, float]:
        started = time.perf_counter()
        # the averaged weights if any, under the data set's test-time views
        evaluated = evaluated_model(self.model, self.data, self.ema)
        with self.compiling("the first evaluation"), self.precision.autocast():
            metrics = self.strategy.evaluate(
                evaluated, self.data.test, self.objective, self.trainer.eval_batch_size
            )
        if self.ranking is not None:  # a ranker's top-10 figures first: its main metric
            metrics = {**self.ranking(self.strategy.unwrap(evaluated)), **metrics}
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
        ran = {"stopped": self.stopped_at()} if self.stopped_why() else {"epochs": self.trainer.epochs}
        return {
            **ran,  # the planned epochs only when the run went through them
            "steps": self.position.step,
            "train loss": self.last_loss,
            "test": test_metrics,
            **({"model": learned} if learned else {}),
            "wall seconds": time.perf_counter() - self.ctx.started,
            "run dir": str(self.ctx.run.path),
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, tag: str) -> None:
        """Every rank contributes (sharded state, RNG); rank 0 writes <tag>.pt atomically, with the
        manifest that every load verifies, and keeps the trainer.keep_checkpoints newest `last` ones."""
        folder = self.ctx.run.checkpoints
        self.ctx.reporter.flush()  # every step line up to this checkpoint is on disk before it
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
        keep = self.trainer.keep_checkpoints if tag == "last" else 1
        parts = self.strategy.checkpoint_parts(state)
        save_checkpoint(state, folder, tag, self.position.step, parts=parts, keep=keep)

    def load_checkpoint(self, path: Path) -> None:
        # verified against its manifest; `trainctl train --resume` has refused incompatible changes
        state = load_checkpoint(path, note=lambda text: self.ctx.message(text, "warning"))
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
