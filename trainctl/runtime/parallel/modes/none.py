"""Parallel mode `none`: one process holds the whole model and every batch."""

from __future__ import annotations

from dataclasses import dataclass

from trainctl.config.schema import ParallelConfig
from trainctl.runtime.parallel import STRATEGIES
from trainctl.runtime.parallel.base import Strategy


@dataclass
class NoParallelConfig(ParallelConfig):
    pass


@STRATEGIES.register("none", NoParallelConfig)
def build_none(cfg: NoParallelConfig) -> Strategy:
    return Strategy(cfg)
