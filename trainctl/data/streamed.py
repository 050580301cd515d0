"""Splits read sample by sample from a map-style Dataset, in DataLoader worker processes, in trainctl's order.

The epoch order and each rank's share stay trainctl's (`BatchLoader`: seed and epoch alone decide
them); this module only fetches the planned batches. A torch DataLoader takes them as its
`batch_sampler`, so `data.workers` processes read (decode) the samples while the model trains, and
nothing ever holds every sample: the split keeps its Dataset (file names, a memory map) and, when a
sampler or class weights ask for them, the labels.

Randomness inside a worker (a user's `__getitem__` that draws augmentations) is seeded once per
batch from the batch's position (seed, epoch, batch, rank) before its samples are read, so which
worker reads which batch does not matter and a run resumed mid-epoch reads exactly what an
uninterrupted one would. Workers start with the `forkserver` method: ranks are themselves started
from a forkserver and run threads (OpenMP, gloo), after which a plain fork is not safe.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from trainctl.data.rank_lifeline import end_with
from trainctl.data.types import Split

Batch = tuple[torch.Tensor, torch.Tensor]
WORKER_START_METHOD = "forkserver"
MAX_DEFAULT_WORKERS = 8
EVAL_SEED = 0  # batches read for evaluation, prediction or calibration


def default_workers() -> int:
    """data.workers when unset: this rank's thread budget (its share of the CPUs), at most 8."""
    return max(1, min(MAX_DEFAULT_WORKERS, torch.get_num_threads()))


def seed_all(seed: int) -> None:
    """Seed every generator a Dataset may draw from: torch, numpy and Python's `random`."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a start seed from (the loader's base seed, rank, worker); each batch
    then reseeds from its own position (SeededFetch)."""
    rank = int(os.environ.get("RANK", "0"))
    seed_all(((torch.initial_seed() % 2**31) * 1_009 + rank) * 101 + worker_id)


def start_worker(rank_pid: int, worker_id: int) -> None:
    """DataLoader worker_init_fn: end with the rank `rank_pid` (see rank_lifeline), then seed."""
    end_with(rank_pid)
    seed_worker(worker_id)


def stack_samples(samples: list[Any]) -> Batch:
    """(inputs, targets) of a list of (input, target) samples; float targets as float32."""
    inputs, targets = default_collate(samples)
    targets = torch.as_tensor(targets)
    if targets.is_floating_point():  # regression: one row of targets per sample
        targets = targets.to(torch.float32).view(len(targets), -1)
    return inputs, targets


class SeededFetch(Dataset):
    """The split's Dataset, read one planned batch at a time: `(seed, indices)` in, samples out."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, planned: tuple[int, list[int]]) -> Any:
        seed, indices = planned
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (torch.get_rng_state(), np.random.get_state(), random.getstate())
        seed_all(seed)
        try:
            many = getattr(self.dataset, "__getitems__", None)
            return many(indices) if many is not None else [self.dataset[i] for i in indices]
        finally:
            if saved is not None:  # read in the training process: its own draws (dropout) go on untouched
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])


class PlannedBatches:
    """The DataLoader's batch_sampler: the batches of the current pass, as `(seed, indices)`."""

    def __init__(self) -> None:
        self.planned: Iterable[tuple[int, list[int]]] = ()

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        return iter(self.planned)


class DatasetSplit(Split):
    """A split whose samples a map-style Dataset reads on demand; batches come through a DataLoader.

    `collate` turns what the Dataset returns for one batch (a list of samples, or whatever its
    `__getitems__` returns) into (inputs, targets); it runs in the worker. `labels` gives the targets
    of every sample without reading the samples when it can (a folder's class per file, a table's
    label column); it is asked only when something needs all labels (a balanced sampler, class weights).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        labels: Callable[[], torch.Tensor],
        collate: Callable[[Any], Batch] = stack_samples,
        workers: int | None = None,
        persistent: bool = True,
    ) -> None:
        self.dataset = dataset
        self.labels = labels
        self.collate = collate
        self.workers = workers
        self.persistent = persistent
        self._targets: torch.Tensor | None = None
        self._loader: DataLoader | None = None
        self._planned = PlannedBatches()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def targets(self) -> torch.Tensor:  # type: ignore[override]
        if self._targets is None:
            self._targets = self.labels()
        return self._targets

    @property
    def inputs(self) -> LazyInputs:  # type: ignore[override]
        return LazyInputs(self)

    def batch(self, index: torch.Tensor) -> Batch:
        """The samples at `index`, read here in this process (a few samples: an example, a prediction)."""
        return self.collate(SeededFetch(self.dataset).__getitems__((EVAL_SEED, index.tolist())))

    def batches(self, chunks: Iterable[torch.Tensor], seeds: Iterable[int] | None = None) -> Iterator[Batch]:
        """The batches at `chunks`, in that order, read by the worker processes."""
        seeds = seeds if seeds is not None else iter(lambda: EVAL_SEED, None)
        self._planned.planned = ((s, c.tolist()) for s, c in zip(seeds, chunks, strict=False))
        return iter(self.loader())

    def loader(self) -> DataLoader:
        if self._loader is None:
            workers = default_workers() if self.workers is None else self.workers
            self._loader = DataLoader(
                SeededFetch(self.dataset),
                batch_sampler=self._planned,
                collate_fn=self.collate,
                num_workers=workers,
                pin_memory=torch.cuda.is_available(),
                persistent_workers=self.persistent and workers > 0,
                worker_init_fn=functools.partial(start_worker, os.getpid()) if workers > 0 else None,
                multiprocessing_context=WORKER_START_METHOD if workers > 0 else None,
                # its own generator: starting a pass draws the workers' base seed, never from the
                # training process's global one (a resumed run's dropout masks stay those of a straight run)
                generator=torch.Generator().manual_seed(0),
            )
        return self._loader

    def subset(self, index: torch.Tensor) -> DatasetSplit:
        chosen = index.tolist()
        labels = self.labels
        return DatasetSplit(
            torch.utils.data.Subset(self.dataset, chosen),
            labels=lambda: labels()[index],
            collate=self.collate,
            workers=self.workers,
            persistent=self.persistent,
        )


class LazyInputs:
    """`split.inputs` of a DatasetSplit: indexing reads just those samples (`inputs[:1]`: an example)."""

    def __init__(self, split: DatasetSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: slice | int | torch.Tensor) -> torch.Tensor:
        index = torch.arange(len(self.split))[key]
        return (
            self.split.batch(index.reshape(-1))[0] if index.dim() else self.split.batch(index.view(1))[0][0]
        )
