"""The Strategy every parallel mode extends; its defaults are the single-process behaviour."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainctl.config.schema import Config, ParallelConfig
from trainctl.data.loader import BatchLoader
from trainctl.data.samplers import Order
from trainctl.data.types import Split
from trainctl.errors import TrainctlError
from trainctl.runtime.collectives import all_reduce_sum
from trainctl.training.evaluation import evaluate
from trainctl.training.objective import Objective

Optimizer = torch.optim.Optimizer
State = dict[str, Any]  # entries of a checkpoint file


class Strategy:
    """How ranks share the model and the data, and how their state reaches a checkpoint.

    Planning methods (`check`, `layout`) run in the parent before any process group exists; the
    rest run in each worker after `setup`. Collective methods must be called on every rank.
    """

    name = "none"
    supported_models: tuple[str, ...] | None = None  # None: every model
    owns_step = False  # True when the mode runs forward and backward itself (pipeline schedules)

    def __init__(self, cfg: ParallelConfig) -> None:
        self.cfg = cfg
        self.rank = 0
        self.world_size = 1
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ planning
    def check(self, cfg: Config, world_size: int, model: Callable[[], nn.Module]) -> list[str]:
        """Refuse combinations this mode cannot run; return the checks that passed.

        `model()` builds the model (on the CPU, unwrapped) for checks that need its structure."""
        if self.supported_models is not None and cfg.model.name not in self.supported_models:
            raise TrainctlError(
                f"parallel={self.name} does not support model={cfg.model.name}",
                fix=f"it supports: {', '.join(self.supported_models)}; or choose parallel=ddp",
            )
        if world_size > 1 and self.name == "none":
            raise TrainctlError(
                f"parallel=none runs one process, but the launcher asks for {world_size}",
                fix="choose a parallel mode (ddp, fsdp, ...) or launcher.nproc=1",
            )
        return [f"parallel {self.name} supports model {cfg.model.name} on {world_size} rank(s)"]

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        """One line per rank: what it holds (data, stage, parameters)."""
        params = sum(p.numel() for p in model.parameters())
        return [
            f"rank {r}: the whole model ({params:,} parameters), {per_rank_batch} samples of each batch"
            for r in range(world_size)
        ]

    # ------------------------------------------------------------------ in the worker
    def setup(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device

    @property
    def data_rank(self) -> int:
        return self.rank

    @property
    def data_world(self) -> int:
        return self.data_world_for(self.world_size)

    def data_world_for(self, world_size: int) -> int:
        """How many ranks split each global batch (1 where every rank sees all of it)."""
        return world_size

    def train_loader(
        self, split: Split, batch_size: int, seed: int, order: Order | None = None
    ) -> BatchLoader:
        """This rank's batches; `order` replaces the plain shuffle (data.sampler)."""
        return BatchLoader(
            split,
            batch_size,
            shuffle=True,
            seed=seed,
            rank=self.data_rank,
            world_size=self.data_world,
            sampler=order,
        )

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """Skip gradient synchronisation (all but the last accumulation step)."""
        return contextlib.nullcontext()

    def step(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective
    ) -> torch.Tensor:
        """Forward and backward of a whole batch, for modes with `owns_step`; its loss (a 0-d tensor)."""
        raise NotImplementedError

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (local SGD averages parameters here)."""

    def reduce_losses(self, losses: torch.Tensor, stop: bool) -> tuple[list[float], bool]:
        """Each step's loss (`losses`: this rank's, one per step since the last report) as the mean over
        ranks, and whether any rank asked to stop (collective: one all-reduce for all those steps)."""
        if self.world_size == 1:
            return losses.tolist(), stop
        flag = torch.tensor([float(stop)], dtype=torch.float64, device=losses.device)
        values = all_reduce_sum(torch.cat([losses.double(), flag]))
        return (values[:-1] / self.world_size).tolist(), values[-1].item() > 0

    def evaluate(
        self, model: nn.Module, split: Split, objective: Objective, batch_size: int
    ) -> dict[str, float]:
        """Loss and metrics over `split`; every rank gets the same figures (collective)."""
        return evaluate(
            model,
            split,
            objective,
            batch_size=batch_size,
            device=self.device,
            rank=self.data_rank,
            world_size=self.data_world,
            reduce=all_reduce_sum if self.data_world > 1 else None,
        )

    # ------------------------------------------------------------------ checkpoints (collective)
    def checkpoint_state(
        self, model: nn.Module, optimizer: Optimizer, folder: Path, tag: str, step: int
    ) -> State:
        """The model (full, unsharded) and optimizer entries of a checkpoint; rank 0's is written."""
        return {"model": self.unwrap(model).state_dict(), "optimizer": optimizer.state_dict()}

    def checkpoint_parts(self, state: State) -> list[str]:
        """Files or folders beside the checkpoint file that belong to it (sharded state): its manifest
        covers them, and they are deleted with it."""
        return []

    def restore(self, model: nn.Module, optimizer: Optimizer, state: State, folder: Path) -> None:
        self.unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])


def blocks(model: nn.Module) -> list[nn.Module]:
    """The units a model is sharded or split by: its `blocks()` if it has them, else its Linear layers."""
    own = getattr(model, "blocks", None)
    if callable(own):
        return list(own())
    return [m for m in model.modules() if isinstance(m, nn.Linear)]
