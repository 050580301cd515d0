"""The model a run evaluates and predicts with: its averaged weights if any, wrapped for test-time views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from trainctl.averaging import WeightEMA
from trainctl.config.schema import ClassWeights, Config, TrainerConfig
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


def inference_model(
    cfg: Config, data: DataBundle, state: dict[str, Any], device: torch.device
) -> tuple[nn.Module, torch.device]:
    """The checkpoint's model as its run evaluated it (compression passes redone, averaged weights
    loaded, wrapped for test-time views) and its device: the CPU when its kernels exist only there."""
    from trainctl.compress.stored import inference_device, rebuild_model

    device = inference_device(state, device)
    return evaluated_model(rebuild_model(cfg.model, data.spec, state), data).to(device).eval(), device


def inference_precision(cfg: Config, state: dict[str, Any]) -> str:
    """The autocast a checkpoint's model runs under: the run's, except for compressed models, which
    run in the dtypes their passes chose (int8 kernels take float32 activations)."""
    from trainctl.compress.stored import compression_records

    return "fp32" if compression_records(state) else cfg.trainer.precision


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
