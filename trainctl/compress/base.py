"""What every compression pass provides, and what a pass gets to work with (data, fine-tuning)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import nn

from trainctl.compress import build_passes
from trainctl.config.schema import CompressConfig, Config
from trainctl.data.types import DataBundle
from trainctl.errors import TrainctlError

Record = dict[str, Any]  # {"config": the pass's settings with its name, "structure": what restore needs}


@dataclass
class PassJob:
    """What a pass may use besides the model: the run's config and data, the device, a log."""

    cfg: Config  # the trained run's config: optimizer, batch size and seed for fine-tuning
    data: DataBundle
    device: torch.device
    log: Callable[[str], None]

    def example_input(self) -> torch.Tensor:
        """One test sample as a batch of one: what graph tracing runs the model on."""
        return self.data.test.inputs[:1]

    def calibration_batches(self, count: int) -> Iterator[torch.Tensor]:
        """The inputs of the first `count` training batches in the run's seeded order."""
        from trainctl.data.loader import BatchLoader

        loader = BatchLoader(
            self.data.train, self.cfg.trainer.batch_size, shuffle=True, seed=self.cfg.trainer.seed
        )
        for i, (_, inputs, _, _) in enumerate(loader.epoch(0)):
            if i == count:
                return
            yield inputs

    def finetune(self, model: nn.Module, epochs: int, lr: float | None) -> None:
        """Train `model` in place for `epochs` epochs on the train split (see finetune.py)."""
        from trainctl.compress.finetune import finetune

        finetune(model, self, epochs, lr)


class CompressionPass:
    """One transformation of a trained model.

    `apply` runs it with data (calibration, fine-tuning) and notes in `structure` what a freshly built
    model needs to take its state dict; `restore` makes that change again without data, so a compressed
    checkpoint holds only a state dict and the list of pass records (loadable with weights_only=True).
    """

    final = False  # quantized or cast weights: no pass can follow

    def __init__(self, cfg: CompressConfig) -> None:
        self.cfg = cfg
        self.structure: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.cfg.name

    def describe(self) -> str:
        """The pass and its settings on one line, e.g. `prune amount=0.5 method=global-l1`."""
        settings = " ".join(f"{k}={v}" for k, v in plain(self.cfg).items() if k != "name")
        return f"{self.name} {settings}".strip()

    def check(self, model: nn.Module) -> None:
        """Raise a TrainctlError when `model` cannot take this pass (before anything is written)."""

    def apply(self, model: nn.Module, job: PassJob) -> nn.Module:
        raise NotImplementedError

    def restore(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        """Give a freshly built `model` the layout `apply` produced (the weights are loaded after)."""
        return model

    def record(self) -> Record:
        return {"config": plain(self.cfg), "structure": self.structure}


def plain(cfg: Any) -> dict[str, Any]:
    """A pass config as JSON-ready data (enums as their values)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {f.name: convert(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def check_passes(passes: list[CompressionPass], model: nn.Module, done: list[Record]) -> None:
    """Refuse a pass after a final one (quantized or cast weights), then let each pass check the model."""
    finished = [p.name for r in done for p in build_passes(r["config"]) if p.final]
    for compression in passes:
        if finished:
            raise TrainctlError(
                f"compression pass '{compression.name}' cannot follow '{finished[0]}': the weights are "
                "no longer float32",
                fix="put quantization or casting last (e.g. prune, then int8), or start from the parent run",
            )
        compression.check(model)
        if compression.final:
            finished.append(compression.name)


def check_amount(amount: float, key: str) -> None:
    """A pruning amount is a fraction strictly between 0 and 1."""
    if not 0.0 < amount < 1.0:
        raise TrainctlError(
            f"{key} must be a fraction between 0 and 1 (exclusive), got {amount}",
            where=key,
            fix="e.g. 0.5 removes half of the weights",
        )


def replace(model: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """Put `module` at `path` in `model` ("" replaces the model itself); returns the model."""
    if not path:
        return module
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent), name, module)
    return model
