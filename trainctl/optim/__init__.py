"""Optimizers and learning-rate schedules: the optimizer registry and its one entry point."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainctl.config import targets
from trainctl.config.schema import OptimConfig
from trainctl.registry import Registry

if TYPE_CHECKING:
    import torch

OPTIMIZERS: Registry = Registry("optimizer", "trainctl.optim.optimizers")


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Build the optimizer that `cfg.name` names over `params`."""
    return OPTIMIZERS.get(cfg.name).build(cfg, params)


def check_target_optimizer(section: dict[str, object], where: str) -> None:
    targets.check_call(section, targets.OPTIMIZER, where, positional=1, provided=("lr", "weight_decay"))


@dataclass
class TargetOptimConfig(OptimConfig, targets.Targeted):
    """An optimizer built from `optim._target_`: lr, weight_decay, layer_decay, head_lr_scale and
    decay_norm_and_bias are trainctl's (its parameter groups); every other key goes to the class."""


@OPTIMIZERS.register_target(TargetOptimConfig, check=check_target_optimizer)
def build_target_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer class of `optim._target_` over `params` (trainctl's groups carry lr and weight decay);
    the section's other keys go to its constructor."""
    return targets.instantiate(
        targets.target_section(cfg),
        targets.OPTIMIZER,
        "optim",
        params,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
