"""Epoch orders beyond a plain shuffle (class-balanced, length-grouped), and class-balanced loss weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainctl.config.schema import Sampler
from trainctl.data.types import Split, Task
from trainctl.errors import TrainctlError

# (number of samples, seeded generator) -> the epoch's sample order; the loader slices it into batches
Order = Callable[[int, torch.Generator], torch.Tensor]


def label_counts(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(targets.long(), minlength=num_classes)


def balanced_class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Loss weight n / (classes x count) per class, so every class adds the same total weight.

    A class absent from the split gets weight 0 (it has no samples to weigh).
    """
    counts = label_counts(targets, num_classes).double()
    weights = torch.where(counts > 0, len(targets) / (num_classes * counts.clamp(min=1)), 0.0)
    return weights.float()


class BalancedOrder:
    """n draws with replacement, each class equally likely (a sample's chance: 1 / its class's count)."""

    def __init__(self, targets: torch.Tensor, num_classes: int) -> None:
        counts = label_counts(targets, num_classes).double()
        self.weights = (1.0 / counts.clamp(min=1))[targets.long()]

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)


class LengthGroupedOrder:
    """Batches of similar length in a random order: less padding when each batch is trimmed to its longest.

    The samples are shuffled, cut into groups of `group` batches, each group sorted by length and
    cut into batches; the full batches are then shuffled (the short last batch stays last, so the
    loader's slices still fall on batch boundaries).
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, group: int = 50) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.group = group

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        order = torch.randperm(n, generator=generator)
        chunk = self.batch_size * self.group
        pieces = []
        for part in order.split(chunk):
            by_length = torch.sort(self.lengths[part], descending=True, stable=True).indices
            pieces.append(part[by_length])
        grouped = torch.cat(pieces)
        full = n // self.batch_size
        batches = grouped[: full * self.batch_size].view(full, self.batch_size)
        shuffled = batches[torch.randperm(full, generator=generator)].flatten()
        return torch.cat([shuffled, grouped[full * self.batch_size :]])


def build_order(
    sampler: Sampler | str, split: Split, task: Task, num_classes: int, batch: int
) -> Order | None:
    """The order that data.sampler asks for; None means the loader's plain seeded shuffle."""
    sampler = Sampler(sampler)
    if sampler is Sampler.random:
        return None
    if sampler is Sampler.balanced:
        if task is not Task.classification:
            raise TrainctlError(
                "data.sampler=balanced balances classes; this data set is a regression task",
                where="data.sampler",
                fix="use data.sampler=random",
            )
        return BalancedOrder(split.targets, num_classes)
    lengths = getattr(split, "lengths", None)
    if lengths is None:
        raise TrainctlError(
            "data.sampler=length groups token sequences by length; this data set has no lengths",
            where="data.sampler",
            fix="use it with a text data set (dataset=text, dataset=sst2), or data.sampler=random",
        )
    return LengthGroupedOrder(lengths, batch)
