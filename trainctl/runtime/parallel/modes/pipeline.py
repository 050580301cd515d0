"""Parallel mode `pipeline`: the model's layers split into stages across ranks (GPipe or 1F1B)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from trainctl.config.ranges import ranged
from trainctl.config.schema import Config, ParallelConfig
from trainctl.data.loader import BatchLoader
from trainctl.data.samplers import Order
from trainctl.data.types import Split
from trainctl.errors import TrainctlError, suggestion
from trainctl.runtime.collectives import all_reduce_sum, broadcast_from, gather_to_rank0
from trainctl.runtime.parallel import STRATEGIES
from trainctl.runtime.parallel.base import Optimizer, State, Strategy
from trainctl.training.objective import Objective

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


@dataclass
class PipelineConfig(ParallelConfig):
    schedule: str = "gpipe"  # gpipe | 1f1b
    microbatches: int = ranged(4, "[1, inf)")


def stage_groups(model: nn.Sequential, stages: int) -> list[list[int]]:
    """Indices of the model's layers per stage: a new block starts at every layer with parameters,
    and consecutive blocks go to one stage so that parameter counts are as even as possible."""
    starts = [i for i, layer in enumerate(model) if any(True for _ in layer.parameters())]
    bounds = [*starts[1:], len(model)]
    block_layers = [
        list(range(0 if b == 0 else start, end))
        for b, (start, end) in enumerate(zip(starts, bounds, strict=True))
    ]
    sizes = [sum(p.numel() for i in layers for p in model[i].parameters()) for layers in block_layers]
    if len(block_layers) < stages:
        raise TrainctlError(
            f"the model has {len(block_layers)} blocks, too few for {stages} pipeline stages",
            fix="use fewer ranks or a deeper model",
        )
    target, groups, current, acc = sum(sizes) / stages, [], [], 0
    for b, layers in enumerate(block_layers):
        current += layers
        acc += sizes[b]
        blocks_left, stages_left = len(block_layers) - b - 1, stages - len(groups) - 1
        if stages_left and (acc >= target * (len(groups) + 1) or blocks_left == stages_left):
            groups.append(current)
            current = []
    groups.append(current)
    return groups


class PipelineParallel(Strategy):
    """Rank r runs stage r; micro-batches flow through the stages under a GPipe or 1F1B schedule."""

    name = "pipeline"
    supported_models = ("mlp",)
    owns_step = True
    cfg: PipelineConfig

    def check(self, cfg: Config, world_size: int, model: Callable[[], nn.Module]) -> list[str]:
        passed = super().check(cfg, world_size, model)
        if self.cfg.schedule not in SCHEDULES:
            raise TrainctlError(
                f"unknown pipeline schedule '{self.cfg.schedule}'.{suggestion(self.cfg.schedule, SCHEDULES)}",
                fix=f"parallel.schedule= one of: {', '.join(SCHEDULES)}",
            )
        micro = self.cfg.microbatches
        if micro < 1 or cfg.trainer.batch_size % micro:
            raise TrainctlError(
                f"parallel.microbatches={micro} does not divide trainer.batch_size={cfg.trainer.batch_size}",
                fix="choose a divisor of the batch size",
            )
        if cfg.trainer.grad_accum != 1:
            raise TrainctlError(
                "pipeline mode accumulates over micro-batches itself",
                fix="set trainer.grad_accum=1 and raise parallel.microbatches instead",
            )
        groups = stage_groups(model(), world_size)
        return [
            *passed,
            f"{micro} micro-batches divide the batch of {cfg.trainer.batch_size}",
            f"{world_size} stage(s) over {sum(len(g) for g in groups)} layers",
        ]

    def layout(self, model: nn.Module, world_size: int, per_rank_batch: int) -> list[str]:
        groups = stage_groups(model, world_size)
        lines = []
        for r, layers in enumerate(groups):
            params = sum(p.numel() for i in layers for p in model[i].parameters())
            role = "inputs" if r == 0 else "targets and loss" if r == world_size - 1 else "activations"
            lines.append(
                f"rank {r}: stage {r} = layers {layers[0]}..{layers[-1]} ({params:,} parameters); "
                f"gets the {role}; {self.cfg.microbatches} micro-batches per step"
            )
        return lines

    @property
    def data_rank(self) -> int:
        return 0

    def data_world_for(self, world_size: int) -> int:
        return 1

    @property
    def last(self) -> bool:
        return self.rank == self.world_size - 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """Keep this rank's layers (under their original names, so state dicts merge back)."""
        layers = stage_groups(model, self.world_size)[self.rank]
        self.stage_module = nn.Sequential(OrderedDict((str(i), model[i]) for i in layers))
        # Stages fix their micro-batch shapes on first use: one for training, one for evaluation.
        self.train_stage = PipelineStage(self.stage_module, self.rank, self.world_size, self.device)
        self.eval_stage = PipelineStage(self.stage_module, self.rank, self.world_size, self.device)
        self.schedules: dict[str, Any] = {}
        return self.stage_module

    def train_loader(
        self, split: Split, batch_size: int, seed: int, order: Order | None = None
    ) -> BatchLoader:
        return BatchLoader(
            split, batch_size, shuffle=True, seed=seed, drop_last=True, sampler=order
        )  # fixed shapes

    def schedule(self, purpose: str, objective: Objective) -> Any:
        if purpose not in self.schedules:
            kind = SCHEDULES[self.cfg.schedule]
            if purpose == "train":
                self.schedules[purpose] = kind(
                    self.train_stage, self.cfg.microbatches, loss_fn=objective.loss
                )
            else:
                self.schedules[purpose] = ScheduleGPipe(self.eval_stage, self.cfg.microbatches)
        return self.schedules[purpose]

    def step(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective
    ) -> torch.Tensor:
        """One training batch through the pipeline; the mean loss (on the last stage, 0 elsewhere)."""
        schedule = self.schedule("train", objective)
        losses: list[torch.Tensor] = []
        if self.rank == 0:
            schedule.step(inputs, target=targets if self.last else None, losses=losses)
        elif self.last:
            schedule.step(target=targets, losses=losses)
        else:
            schedule.step()
        return torch.stack(losses).detach().float().mean() if losses else torch.zeros(())

    def reduce_losses(self, losses: torch.Tensor, stop: bool) -> tuple[list[float], bool]:
        """The last stage's losses (the only ones measured) on every rank, and any rank's stop request."""
        mine = losses.double() if self.last else torch.zeros(len(losses), dtype=torch.float64)
        values = all_reduce_sum(torch.cat([mine, torch.tensor([float(stop)], dtype=torch.float64)]))
        return values[:-1].tolist(), values[-1].item() > 0

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        square = torch.stack([g.pow(2).sum() for g in grads]).sum() if grads else torch.zeros(())
        norm = all_reduce_sum(square.double()).sqrt().item()
        if norm > max_norm:
            for g in grads:
                g.mul_(max_norm / (norm + 1e-6))

    def evaluate(
        self, model: nn.Module, split: Split, objective: Objective, batch_size: int
    ) -> dict[str, float]:
        """Forward-only passes through the pipeline in equal chunks (the last one padded); the last
        stage measures, and every rank learns the result."""
        was_training = model.training
        model.eval()
        schedule = self.schedule("eval", objective)
        size = max(1, batch_size // self.cfg.microbatches) * self.cfg.microbatches
        totals: dict[str, float] = {}
        with torch.no_grad():
            for start in range(0, len(split), size):
                count = min(size, len(split) - start)
                index = torch.arange(start, start + size).clamp(
                    max=len(split) - 1
                )  # pad with the last sample
                inputs, targets = split.batch(index)
                outputs = schedule.eval(inputs) if self.rank == 0 else schedule.eval()
                if self.last:
                    outputs, targets = outputs[:count].float(), targets[:count]
                    sums = {
                        "loss": objective.loss(outputs, targets, reduction="sum"),
                        **objective.statistics(outputs, targets),
                    }
                    for key, value in sums.items():
                        totals[key] = totals.get(key, 0.0) + float(value)
        model.train(was_training)
        totals = broadcast_from(totals, src=self.world_size - 1)
        loss = totals.pop("loss")
        return {"loss": loss / len(split), **objective.metrics(totals, len(split))}

    def checkpoint_state(
        self, model: nn.Module, optimizer: Optimizer, folder: Path, tag: str, step: int
    ) -> State:
        """The stages' state dicts merged into the whole model's, and one optimizer state per stage."""
        stages = gather_to_rank0(model.state_dict())
        optimizers = gather_to_rank0(optimizer.state_dict())
        if stages is None:
            return {}
        merged: dict[str, torch.Tensor] = {}
        for part in stages:
            merged.update(part)
        return {"model": merged, "optimizer": optimizers}

    def restore(self, model: nn.Module, optimizer: Optimizer, state: State, folder: Path) -> None:
        own = model.state_dict().keys()
        model.load_state_dict({k: v for k, v in state["model"].items() if k in own})
        optimizer.load_state_dict(state["optimizer"][self.rank])


@STRATEGIES.register("pipeline", PipelineConfig)
def build_pipeline(cfg: PipelineConfig) -> PipelineParallel:
    return PipelineParallel(cfg)
