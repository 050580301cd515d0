"""What "loss" and "metric" mean for each kind of task: classification and regression."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainctl.config.schema import ClassWeights, TrainerConfig
from trainctl.config.targets import LOSS, Targeted, instantiate, target_section
from trainctl.data.samplers import balanced_class_weights
from trainctl.data.types import DataBundle, Task
from trainctl.errors import TrainctlError


@dataclass
class Objective:
    """Per-sample loss plus summable metric statistics for one task."""

    task: Task
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # loss._target_: batch mean

    @property
    def main_metric(self) -> str:
        return "accuracy" if self.task is Task.classification else "rmse"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The task's loss over a batch: its mean, or its sum with reduction="sum"."""
        if self.criterion is not None:
            mean = self.criterion(outputs, targets)
            return mean * len(targets) if reduction == "sum" else mean
        if self.task is Task.classification:
            return F.cross_entropy(
                outputs,
                targets,
                weight=self.class_weights,
                reduction=reduction,
                label_smoothing=self.label_smoothing,
            )
        return F.mse_loss(outputs, targets, reduction=reduction)

    def statistics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sums that add up across batches and ranks into the task's metrics."""
        if self.task is Task.classification:
            return {"correct": (outputs.argmax(dim=1) == targets).sum()}
        error = outputs - targets
        return {"squared_error": error.pow(2).sum(), "absolute_error": error.abs().sum()}

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Turn summed statistics over `count` samples into metrics."""
        if self.task is Task.classification:
            return {"accuracy": sums["correct"] / count}
        return {"rmse": (sums["squared_error"] / count) ** 0.5, "mae": sums["absolute_error"] / count}


def build_objective(
    trainer: TrainerConfig, data: DataBundle, device: torch.device, loss: Targeted | None = None
) -> Objective:
    """The task's loss and metrics with the run's label smoothing and class weights, or the loss module of
    `loss._target_` (given `weight`, the class weights, where it asks for it and they are on)."""
    weights = loss_class_weights(trainer, data)
    weights = None if weights is None else weights.to(device)
    criterion = None
    if loss is not None:
        extra = {} if weights is None else {"weight": weights}
        criterion = instantiate(target_section(loss), LOSS, "loss", **extra).to(device)
    return Objective(
        data.spec.task,
        label_smoothing=trainer.label_smoothing,
        class_weights=weights,
        criterion=criterion,
    )


def loss_class_weights(trainer: TrainerConfig, data: DataBundle) -> torch.Tensor | None:
    """Per-class loss weights that trainer.class_weights asks for, from the train split's label counts."""
    if ClassWeights(trainer.class_weights) is ClassWeights.none:
        return None
    if data.spec.task is not Task.classification:
        raise TrainctlError(
            "trainer.class_weights=balanced weighs classes; this data set is a regression task",
            where="trainer.class_weights",
            fix="use trainer.class_weights=none",
        )
    return balanced_class_weights(data.train.targets, data.spec.num_outputs)
