"""Models: the model registry (one module per family) and the one entry point that builds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainctl.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from trainctl.config.schema import ModelConfig
    from trainctl.data.types import DataSpec

MODELS: Registry = Registry("model", "trainctl.models")


def build_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """Build the model that `cfg.name` names for data shaped like `spec`."""
    return MODELS.get(cfg.name).build(cfg, spec)
