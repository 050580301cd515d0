"""Optimizers and learning-rate schedules: the optimizer registry and its one entry point."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from trainctl.registry import Registry

if TYPE_CHECKING:
    import torch

    from trainctl.config.schema import OptimConfig

OPTIMIZERS: Registry = Registry("optimizer", "trainctl.optim.optimizers")


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Build the optimizer that `cfg.name` names over `params`."""
    return OPTIMIZERS.get(cfg.name).build(cfg, params)
