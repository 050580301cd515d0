"""The schema of a `data._target_` section: trainctl's keys beside the user's Dataset and its arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainctl.config import targets
from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig


@dataclass
class UserDataConfig(DataConfig):
    """trainctl's keys of a `data._target_` section."""

    test_fraction: float = ranged(0.2, "(0, 1)")  # a Dataset without a `split` parameter: this share is test
    split_seed: int = 0
    num_classes: int | None = ranged(None, "[1, inf)")  # null: the Dataset's `classes` / `num_classes`
    workers: int | None = ranged(None, "[0, inf)")  # reading processes per rank; null: its thread budget


@dataclass
class TargetDataConfig(UserDataConfig, targets.Targeted):
    """A data set built from `data._target_`: the user's Dataset class (or a function of their project)."""


def check_target_dataset(section: dict[str, Any], where: str) -> None:
    targets.check_call(section, targets.DATASET, where, provided=("split",))
