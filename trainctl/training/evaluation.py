"""Evaluate a model on a split: mean loss plus the task's metrics, in batches, without gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainctl.data.types import DataBundle, Split
from trainctl.training.ema import WeightEMA
from trainctl.training.objective import Objective


def evaluated_model(
    model: torch.nn.Module, data: DataBundle, ema: WeightEMA | None = None
) -> torch.nn.Module:
    """The moving average when the run keeps one, else `model`; wrapped by the data set's test-time hook."""
    chosen = ema.module if ema is not None else model
    return data.test_time(chosen) if data.test_time is not None else chosen


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split: Split,
    objective: Objective,
    *,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Loss and metrics over `split`; with several ranks each takes a shard and `reduce` sums them."""
    was_training = model.training
    model.eval()
    index = torch.arange(len(split)).tensor_split(world_size)[rank]
    totals: dict[str, torch.Tensor] = {}
    for inputs, targets in split.batches(index.split(batch_size)):
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs).float()
        sums = {
            "loss": objective.loss(outputs, targets, reduction="sum"),
            **objective.statistics(outputs, targets),
        }
        for key, value in sums.items():
            totals[key] = totals.get(key, 0) + value.double()
    model.train(was_training)
    keys = sorted(totals)
    stacked = torch.stack(
        [totals[k] for k in keys] + [torch.tensor(float(len(index)), dtype=torch.float64, device=device)]
    )
    if reduce is not None:
        stacked = reduce(stacked)
    values = dict(zip(keys, stacked[:-1].tolist(), strict=True))
    count = int(stacked[-1].item())
    return {"loss": values.pop("loss") / count, **objective.metrics(values, count)}
