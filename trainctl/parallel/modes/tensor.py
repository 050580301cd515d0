"""Parallel mode `tensor`: Linear layers split across ranks with DTensor `parallelize_module`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from trainctl.config.schema import Config, ParallelConfig
from trainctl.errors import TrainctlError
from trainctl.parallel import STRATEGIES
from trainctl.parallel.base import Strategy
from trainctl.parallel.dtensor_state import full_state, load_full_state


@dataclass
class TensorParallelConfig(ParallelConfig):
    pass


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


class TensorParallel(Strategy):
    """Consecutive Linear layers pair up: the first split by output columns, the second by input rows.

    Every rank sees the whole batch; the row-parallel layer's all-reduce rebuilds the activations.
    A last unpaired Linear (the classifier head) stays replicated.
    """

    name = "tensor"
    supported_models = ("mlp",)

    def check(self, cfg: Config, world_size: int, model: Callable[[], nn.Module]) -> list[str]:
        passed = super().check(cfg, world_size, model)
        hidden = list(cfg.model.hidden)
        pairs = (len(hidden) + 1) // 2  # Linear layers pair up; each pair splits the width between them
        for width in hidden[0::2][:pairs]:
            if width % world_size:
                raise TrainctlError(
                    f"hidden width {width} does not split over {world_size} ranks",
                    fix=f"use model.hidden sizes divisible by {world_size}",
                )
        return [*passed, f"hidden widths {hidden} split over {world_size} ranks"]

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        names = linear_names(model)
        pairs = ", ".join(
            f"{names[i]} by columns + {names[i + 1]} by rows" for i in range(0, len(names) - 1, 2)
        )
        tail = f"; {names[-1]} replicated" if len(names) % 2 else ""
        return [f"rank {r}: 1/{world_size} of {pairs}{tail}; the whole batch" for r in range(world_size)]

    @property
    def data_rank(self) -> int:
        return 0

    def data_world_for(self, world_size: int) -> int:
        return 1

    def wrap(self, model: nn.Module) -> nn.Module:
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        names = linear_names(model)
        plan: dict[str, Any] = {}
        for i in range(0, len(names) - 1, 2):
            plan[names[i]] = ColwiseParallel()
            plan[names[i + 1]] = RowwiseParallel()
        return parallelize_module(model, mesh, plan)

    def checkpoint_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path, tag: str, step: int
    ) -> dict[str, Any]:
        return full_state(model, optimizer)

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        folder: Path,
        tag: str,
    ) -> None:
        load_full_state(model, optimizer, state)


@STRATEGIES.register("tensor", TensorParallelConfig)
def build_tensor(cfg: TensorParallelConfig) -> TensorParallel:
    return TensorParallel(cfg)
