"""Data sets: the dataset registry and the entry points that prepare, load and locate them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainctl.data.target_schema import TargetDataConfig, check_target_dataset
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
    notes: tuple[str, ...] = ()  # what the plan should say about the data (files left out)


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


def data_paths(cfg: DataConfig) -> list[Path]:
    """The files and folders the data set reads, for the run's record: its `files(cfg)` hook, else the
    paths its config names (`path`, `*_file`, `*_path`, `*_dir` under `root` and `folder`), else `root`."""
    files = DATASETS.get(cfg.name).hooks.get("files")
    if files is not None:
        return [Path(p) for p in files(cfg)]
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    root = values.get("root")
    base = Path(str(root)).expanduser() if isinstance(root, str) else None
    if base is not None and isinstance(values.get("folder"), str):
        base = base / values["folder"]
    named = [
        Path(value).expanduser()
        for key, value in values.items()
        if isinstance(value, str) and value and key != "cache_dir"
        and (key == "path" or key.endswith(("_file", "_path", "_dir")))
    ]
    if named:
        return [path if path.is_absolute() or base is None else base / path for path in named]
    return [base] if base is not None else []


def prepare_user_dataset(cfg: TargetDataConfig, download: bool) -> DataInfo:
    from trainctl.data.user import sizes

    return DataInfo(*sizes(cfg))


@DATASETS.register_target(TargetDataConfig, check=check_target_dataset, prepare=prepare_user_dataset)
def load_user_dataset(cfg: TargetDataConfig) -> DataBundle:
    """`data._target_`: the user's map-style Dataset (trainctl/data/user.py)."""
    from trainctl.data.user import load

    return load(cfg)
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
