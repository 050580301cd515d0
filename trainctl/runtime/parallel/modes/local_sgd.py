"""Parallel mode `local_sgd`: K local optimizer steps per rank, then parameter averaging (FedAvg)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from trainctl.config.schema import Config, ParallelConfig
from trainctl.data.loader import BatchLoader
from trainctl.data.samplers import Order
from trainctl.data.types import Split
from trainctl.errors import TrainctlError
from trainctl.runtime.collectives import all_reduce_sum, gather_to_rank0
from trainctl.runtime.parallel import STRATEGIES
from trainctl.runtime.parallel.base import Optimizer, State, Strategy
from trainctl.training.objective import Objective


class Partition(str, Enum):
    iid = "iid"  # every rank takes its shard of every global batch
    label = "label"  # ranks own disjoint label ranges: non-identical clients


@dataclass
class LocalSGDConfig(ParallelConfig):
    sync_every: int = 8  # K: local steps between parameter averages
    partition: Partition = Partition.iid


class LocalSGD(Strategy):
    """Ranks train their own copy on their own data and average parameters every K steps."""

    name = "local_sgd"
    cfg: LocalSGDConfig

    def check(self, cfg: Config, world_size: int, model: Callable[[], nn.Module]) -> list[str]:
        passed = super().check(cfg, world_size, model)
        if self.cfg.sync_every < 1:
            raise TrainctlError(
                "parallel.sync_every must be at least 1", fix="use parallel.sync_every=1 or more"
            )
        return [*passed, f"parameters averaged every {self.cfg.sync_every} local step(s)"]

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        data = (
            "its label range of the data"
            if Partition(self.cfg.partition) is Partition.label
            else "its shard of each global batch"
        )
        params = sum(p.numel() for p in model.parameters())
        return [
            f"rank {r}: its own copy of the model ({params:,} parameters), {data} ({per_rank_batch} "
            f"samples per step); average every {self.cfg.sync_every} steps"
            for r in range(world_size)
        ]

    def setup(self, rank: int, world_size: int, device: torch.device) -> None:
        super().setup(rank, world_size, device)
        self.local_steps = 0

    def train_loader(
        self, split: Split, batch_size: int, seed: int, order: Order | None = None
    ) -> BatchLoader:
        if Partition(self.cfg.partition) is Partition.iid:
            return super().train_loader(split, batch_size, seed, order)
        # Sorted by label, cut into equal contiguous parts: rank r sees only its part (data.sampler
        # does not apply: the partition is the point).
        labels = torch.argsort(split.targets, stable=True)
        share = len(labels) // self.world_size
        mine = labels[self.rank * share : (self.rank + 1) * share]
        return BatchLoader(
            split.subset(mine), batch_size // self.world_size, shuffle=True, seed=seed + self.rank
        )

    def after_step(self, model: nn.Module) -> None:
        self.local_steps += 1
        if self.local_steps % self.cfg.sync_every == 0:
            self.average(model)

    @torch.no_grad()
    def average(self, model: nn.Module) -> None:
        """Replace every parameter by its mean over ranks (collective)."""
        if self.world_size == 1:
            return
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        all_reduce_sum(flat).div_(self.world_size)
        offset = 0
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def evaluate(
        self, model: nn.Module, split: Split, objective: Objective, batch_size: int
    ) -> dict[str, float]:
        self.average(model)
        return super().evaluate(model, split, objective, batch_size)

    def checkpoint_state(
        self, model: nn.Module, optimizer: Optimizer, folder: Path, tag: str, step: int
    ) -> State:
        """The averaged model, and every rank's own optimizer state."""
        self.average(model)
        optimizers = gather_to_rank0(optimizer.state_dict())
        return {"model": model.state_dict(), "optimizer": optimizers}

    def restore(self, model: nn.Module, optimizer: Optimizer, state: State, folder: Path) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"][self.rank])


@STRATEGIES.register("local_sgd", LocalSGDConfig)
def build_local_sgd(cfg: LocalSGDConfig) -> LocalSGD:
    return LocalSGD(cfg)
