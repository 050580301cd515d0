"""The model a run evaluates and predicts with: its averaged weights if any, wrapped for test-time views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from trainctl.averaging import WeightEMA, inference_weights
from trainctl.config.schema import ClassWeights, TrainerConfig
from trainctl.data.samplers import balanced_class_weights
from trainctl.data.types import DataBundle, Task
from trainctl.errors import TrainctlError
from trainctl.tasks import Objective

if TYPE_CHECKING:
    import torch


def evaluated_model(model: nn.Module, data: DataBundle, ema: WeightEMA | None = None) -> nn.Module:
    """The moving average when the run keeps one, else `model`; wrapped by the data set's test-time hook."""
    chosen = ema.module if ema is not None else model
    return data.test_time(chosen) if data.test_time is not None else chosen


def restore_for_inference(model: nn.Module, state: dict[str, Any], data: DataBundle) -> nn.Module:
    """Load the weights a checkpoint's run evaluated into `model` and wrap it as the run evaluated it."""
    model.load_state_dict(inference_weights(state))
    return evaluated_model(model, data)


def build_objective(trainer: TrainerConfig, data: DataBundle, device: torch.device) -> Objective:
    """The task's loss and metrics with the run's label smoothing and class weights."""
    weights = loss_class_weights(trainer, data)
    return Objective(
        data.spec.task,
        label_smoothing=trainer.label_smoothing,
        class_weights=None if weights is None else weights.to(device),
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
