"""Parallel mode `fsdp`: FSDP2 (`fully_shard` per block); checkpoints through torch.distributed.checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from trainctl.config.schema import ParallelConfig
from trainctl.runtime.parallel import STRATEGIES
from trainctl.runtime.parallel.base import Optimizer, State, Strategy, blocks
from trainctl.runtime.parallel.dcp_metadata import load_sharded
from trainctl.runtime.parallel.dtensor_state import FULL, get_model_state_dict


@dataclass
class FSDPConfig(ParallelConfig):
    reshard_after_forward: bool = True


class ShardedDataParallel(Strategy):
    """Each rank holds 1/N of every block's parameters, gradients and optimizer state."""

    name = "fsdp"
    cfg: FSDPConfig

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        params = sum(p.numel() for p in model.parameters())
        units = len(blocks(model))
        return [
            f"rank {r}: 1/{world_size} of each of {units} blocks (~{params // world_size:,} of "
            f"{params:,} parameters), {per_rank_batch} samples of each batch"
            for r in range(world_size)
        ]

    def wrap(self, model: nn.Module) -> nn.Module:
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        for block in blocks(model):
            fully_shard(block, mesh=mesh, reshard_after_forward=self.cfg.reshard_after_forward)
        fully_shard(model, mesh=mesh, reshard_after_forward=self.cfg.reshard_after_forward)
        return model

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module) -> Iterator[None]:
        assert isinstance(model, FSDPModule)
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def checkpoint_state(
        self, model: nn.Module, optimizer: Optimizer, folder: Path, tag: str, step: int
    ) -> State:
        """Sharded state through DCP in <tag>-step<N>.dcp/, plus the full model for eval and export."""
        model_state, optimizer_state = get_state_dict(model, optimizer)
        shards = f"{tag}-step{step}.dcp"
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder / shards)
        return {"model": get_model_state_dict(model, options=FULL), "sharded": shards}

    def checkpoint_parts(self, state: State) -> list[str]:
        return [state["sharded"]]

    def restore(self, model: nn.Module, optimizer: Optimizer, state: State, folder: Path) -> None:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        sharded = {"model": model_state, "optimizer": optimizer_state}
        # The checkpoint's manifest (sharded folder included) was verified before this; the metadata
        # is still read without running pickled code.
        load_sharded(sharded, folder / state["sharded"])
        set_state_dict(
            model, optimizer, model_state_dict=sharded["model"], optim_state_dict=sharded["optimizer"]
        )


@STRATEGIES.register("fsdp", FSDPConfig)
def build_fsdp(cfg: FSDPConfig) -> ShardedDataParallel:
    return ShardedDataParallel(cfg)
