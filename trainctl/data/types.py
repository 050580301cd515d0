"""What a data set hands to a recipe: splits held as tensors and the shape of the task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

import torch
from torch import nn


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


@dataclass(frozen=True)
class DataSpec:
    """What a model builder needs to know about the data: input shape and output width."""

    input_shape: tuple[int, ...]
    num_outputs: int
    task: Task
    pad_token_id: int | None = None  # token data: the id that pads sequences (the model masks it out)


@dataclass(frozen=True)
class Normalisation:
    """How raw inputs become model inputs: (raw / divide_by - mean[c]) / std[c] for each channel c
    (dimension 1; one value: every element)."""

    raw: str  # what a raw input is, e.g. "uint8 pixels 0..255, shape (N, 1, 28, 28)"
    divide_by: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: torch.Tensor) -> torch.Tensor:
        """Model inputs (float32) from raw inputs; `raw` is left as it is."""
        shape = (1, -1) + (1,) * (raw.dim() - 2) if len(self.mean) > 1 else (1,)
        mean, std = torch.tensor(self.mean).view(shape), torch.tensor(self.std).view(shape)
        return raw.to(torch.float32, copy=True).div_(self.divide_by).sub_(mean).div_(std)


@dataclass
class Split:
    """One split as tensors; a batch is gathered by an index tensor, never sample by sample."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def batches(
        self, chunks: Iterable[torch.Tensor], seeds: Iterable[int] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches at `chunks`, in order (`seeds`: one per batch, for splits whose reading draws)."""
        return (self.batch(chunk) for chunk in chunks)

    def subset(self, index: torch.Tensor) -> Split:
        """The samples at `index`, as a split of the same kind (every per-sample tensor follows)."""
        per_sample = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(
            **{k: v[index] if isinstance(v, torch.Tensor) else v for k, v in per_sample.items()}
        )


@dataclass
class DataBundle:
    """A loaded data set: train and test splits plus the facts a model and a task need."""

    train: Split
    test: Split
    spec: DataSpec
    class_names: list[str] | None = None
    # Optional hooks a data set may offer (None: not used):
    # (train inputs, targets, seed) -> (inputs, targets): batch augmentation, which may repeat samples
    augment: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    test_time: Callable[[nn.Module], nn.Module] | None = None  # model -> model to evaluate (e.g. flip TTA)
    encode: Callable[[list[str]], torch.Tensor] | None = None  # raw texts -> model inputs (predict)
    normalisation: Normalisation | None = None  # raw inputs -> model inputs, for exported models
    read_files: Callable[[list[Path]], torch.Tensor] | None = None  # input files -> model inputs (predict)
