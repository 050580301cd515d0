"""Models: the model registry (one module per family) and the one entry point that builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from trainctl.config import targets
from trainctl.config.schema import ModelConfig
from trainctl.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainctl.data.types import DataSpec

MODELS: Registry = Registry("model", "trainctl.models")


def build_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """Build the model that `cfg.name` names for data shaped like `spec`."""
    return MODELS.get(cfg.name).build(cfg, spec)


@runtime_checkable
class Penalized(Protocol):
    """A model whose training loss includes a penalty of its own (mf: L2 on the rows a batch used)."""

    def training_penalty(self) -> torch.Tensor | None:
        """The penalty of the last forward pass in training mode; None when it has none."""
        ...


def training_penalty(model: nn.Module) -> torch.Tensor | float:
    """What `model` adds to its training loss: its declared penalty, 0 for a model that declares none."""
    penalty = model.training_penalty() if isinstance(model, Penalized) else None
    return 0.0 if penalty is None else penalty


# What a `_target_` model's constructor gets from the data, by parameter name (where it asks for it and
# the config does not set it): every model's output width and input shape, and the rest where they apply.
MODEL_INPUTS = (
    "num_outputs",
    "num_classes",
    "input_shape",
    "in_channels",
    "in_features",
    "vocab_size",
    "pad_token_id",
)


def model_inputs(spec: DataSpec) -> dict[str, object]:
    """The values of MODEL_INPUTS for data shaped like `spec` (those that apply to it)."""
    from trainctl.data.types import Task

    shape = tuple(spec.input_shape)
    inputs: dict[str, object] = {"num_outputs": spec.num_outputs, "input_shape": shape}
    if spec.task is Task.classification:
        inputs["num_classes"] = spec.num_outputs
    if len(shape) == 3:
        inputs["in_channels"] = shape[0]
    if len(shape) == 1:
        inputs["in_features"] = shape[0]
    for name in ("vocab_size", "pad_token_id"):
        if getattr(spec, name, None) is not None:
            inputs[name] = getattr(spec, name)
    return inputs


def check_target_model(section: dict[str, object], where: str) -> None:
    targets.check_call(section, targets.MODEL, where, provided=MODEL_INPUTS)


@dataclass
class TargetModelConfig(ModelConfig, targets.Targeted):
    """A model built from `model._target_`: the user's nn.Module class, or a function of their project."""


@MODELS.register_target(TargetModelConfig, check=check_target_model)
def build_target_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """The user's model class (or factory) from `model._target_`, with what it asks for of the data."""
    return targets.instantiate(targets.target_section(cfg), targets.MODEL, "model", **model_inputs(spec))
