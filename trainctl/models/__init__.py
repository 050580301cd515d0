"""Models: the model registry (one module per family) and the one entry point that builds them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from trainctl.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainctl.config.schema import ModelConfig
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
