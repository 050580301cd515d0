"""Global batches by index slicing over tensors, with a seeded shuffle and this rank's share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from trainctl.data.augment import batch_seed
from trainctl.data.types import Split


class BatchLoader:
    """Yields this rank's part of every global batch of one epoch.

    The permutation of epoch `e` depends only on (seed, e), so a run resumed mid-epoch sees the
    same batches as one that never stopped. Each global batch is split across ranks in contiguous
    chunks; the last, smaller batch of an epoch is kept unless `drop_last`.
    """

    def __init__(
        self,
        split: Split,
        global_batch: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        sampler: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        if global_batch < 1:
            raise ValueError("global_batch must be at least 1")
        self.split = split
        self.global_batch = global_batch
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.sampler = sampler  # (n, seeded generator) -> order; None: a plain shuffle (data.sampler)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.global_batch if self.drop_last else math.ceil(n / self.global_batch)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch`."""
        n = len(self.split)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.sampler is not None:
            return self.sampler(n, generator)
        return torch.randperm(n, generator=generator)

    def global_batch_indices(self, order: torch.Tensor, step: int) -> torch.Tensor:
        return order[step * self.global_batch : (step + 1) * self.global_batch]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int]]:
        """(step in epoch, inputs, targets, global batch size) from batch `start` to the epoch's end."""
        order = self.order(epoch)
        steps = range(start, len(self))
        chunks = [self.global_batch_indices(order, step) for step in steps]
        mine = (c.tensor_split(self.world_size)[self.rank] if self.world_size > 1 else c for c in chunks)
        seeds = (batch_seed(self.seed, epoch, step, self.rank) for step in steps)
        batches = self.split.batches(mine, seeds)  # read ahead by worker processes for file-backed splits
        for step, chunk, (inputs, targets) in zip(steps, chunks, batches, strict=True):
            yield step, inputs, targets, len(chunk)
