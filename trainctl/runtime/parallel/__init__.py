"""Parallel modes: how ranks share the model and the work; the strategy registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.config.schema import ParallelConfig
    from trainctl.runtime.parallel.base import Strategy

STRATEGIES: Registry = Registry("parallel mode", "trainctl.runtime.parallel.modes")


def build_strategy(cfg: ParallelConfig) -> Strategy:
    return STRATEGIES.get(cfg.name).build(cfg)
