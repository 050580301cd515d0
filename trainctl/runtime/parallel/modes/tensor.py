"""Parallel mode `tensor`: Linear layers split across ranks with DTensor `parallelize_module`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from trainctl.config.schema import Config, ParallelConfig
from trainctl.data.types import Split
from trainctl.errors import TrainctlError
from trainctl.runtime.collectives import broadcast_from
from trainctl.runtime.parallel import STRATEGIES
from trainctl.runtime.parallel.base import Optimizer, State, Strategy
from trainctl.runtime.parallel.dtensor_state import full_state, load_full_state
from trainctl.training.objective import Objective


@dataclass
class TensorParallelConfig(ParallelConfig):
    pass


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


class TensorParallel(Strategy):
    """Linear layers alternate: split by output columns, then by input rows (whose partial sums are
    all-reduced), Megatron-style; a last column-split layer (the head) gathers its outputs.

    Every rank sees the whole batch. Activations between layers stay DTensors, so dropout on a
    replicated activation draws the same mask on every rank (DTensor's RNG), and on a sharded one
    draws the mask of its shard.
    """

    name = "tensor"
    supported_models = ("mlp",)

    def check(self, cfg: Config, world_size: int, model: Callable[[], nn.Module]) -> list[str]:
        passed = super().check(cfg, world_size, model)
        linears = [m for m in model().modules() if isinstance(m, nn.Linear)]
        for layer in linears[0::2]:  # the column-split layers divide their outputs among the ranks
            if layer.out_features % world_size:
                raise TrainctlError(
                    f"a Linear layer of {layer.out_features} outputs does not split over {world_size} ranks",
                    fix=f"use model.hidden sizes (and a class count) divisible by {world_size}",
                )
        return [*passed, f"column-split widths divide over {world_size} ranks"]

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        names = linear_names(model)
        split = ", ".join(f"{name} by {'columns' if i % 2 == 0 else 'rows'}" for i, name in enumerate(names))
        return [f"rank {r}: 1/{world_size} of {split}; the whole batch" for r in range(world_size)]

    @property
    def data_rank(self) -> int:
        return 0

    def data_world_for(self, world_size: int) -> int:
        return 1

    def wrap(self, model: nn.Module) -> nn.Module:
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        names = linear_names(model)
        plan: dict[str, Any] = {}
        for i, name in enumerate(names):
            last = i == len(names) - 1
            if i % 2 == 0:
                plan[name] = ColwiseParallel(
                    output_layouts=Replicate() if last else Shard(-1), use_local_output=last
                )
            else:
                plan[name] = RowwiseParallel(input_layouts=Shard(-1), use_local_output=last)
        return parallelize_module(model, mesh, plan)

    def evaluate(
        self, model: nn.Module, split: Split, objective: Objective, batch_size: int
    ) -> dict[str, float]:
        """Every rank computes the same figures; rank 0's are taken so that decisions agree exactly."""
        return broadcast_from(super().evaluate(model, split, objective, batch_size), src=0)

    def checkpoint_state(
        self, model: nn.Module, optimizer: Optimizer, folder: Path, tag: str, step: int
    ) -> State:
        return full_state(model, optimizer)

    def restore(self, model: nn.Module, optimizer: Optimizer, state: State, folder: Path) -> None:
        load_full_state(model, optimizer, state)


@STRATEGIES.register("tensor", TensorParallelConfig)
def build_tensor(cfg: TensorParallelConfig) -> TensorParallel:
    return TensorParallel(cfg)
