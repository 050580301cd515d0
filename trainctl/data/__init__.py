"""Data sets as in-memory tensors: the dataset registry and the one entry point that loads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainctl.errors import TrainctlError
from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.config.schema import DataConfig
    from trainctl.data.types import DataBundle, DataSpec

DATASETS: Registry = Registry("dataset", "trainctl.data.sets")


@dataclass(frozen=True)
class DataInfo:
    """What a plan needs to know about a data set without holding it (sizes None: not on disk yet)."""

    spec: DataSpec
    train_samples: int | None
    test_samples: int | None


def prepare_dataset(cfg: DataConfig, *, download: bool = True) -> DataInfo:
    """Make the data set ready (download, cache) once, before workers start; its sizes.

    A data set registers a `prepare(cfg, download) -> DataInfo` hook when loading it whole would be
    wasteful here; others are small enough to load and count.
    """
    check_root(cfg)
    entry = DATASETS.get(cfg.name)
    prepare = entry.hooks.get("prepare")
    if prepare is not None:
        return prepare(cfg, download)
    bundle = entry.build(cfg)
    return DataInfo(bundle.spec, len(bundle.train), len(bundle.test))


def load_dataset(cfg: DataConfig) -> DataBundle:
    """Load the data set that `cfg.name` names, as tensors."""
    check_root(cfg)
    return DATASETS.get(cfg.name).build(cfg)


def check_root(cfg: DataConfig) -> None:
    """Refuse a data.root that is a file: every data set reads and downloads into folders below it."""
    root = getattr(cfg, "root", None)
    path = Path(str(root)).expanduser() if root else None
    if path is not None and path.exists() and not path.is_dir():
        raise TrainctlError(
            f"data.root is a file, not a folder: {path}",
            where="data.root",
            fix="point data.root (or $TRAINCTL_DATA_DIR) at a folder: each data set has its own folder below "
            "it (mnist/, ml-100k/, sst2/, ...)",
        )
