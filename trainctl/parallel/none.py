"""Parallel mode `none`: one process holds the whole model and every batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from trainctl.config.schema import ParallelConfig
from trainctl.parallel import STRATEGIES


@dataclass
class NoParallelConfig(ParallelConfig):
    pass


class SingleProcess:
    """The identity strategy."""

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        return model.state_dict()

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        model.load_state_dict(state)


@STRATEGIES.register("none", NoParallelConfig)
def build_none(cfg: NoParallelConfig) -> SingleProcess:
    return SingleProcess()
