"""Data sets as in-memory tensors: the dataset registry and the one entry point that loads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.config.schema import DataConfig
    from trainctl.data.types import DataBundle

DATASETS: Registry = Registry("dataset", "trainctl.data.sets")


def load_dataset(cfg: DataConfig) -> DataBundle:
    """Load the data set that `cfg.name` names, as tensors."""
    return DATASETS.get(cfg.name).build(cfg)
