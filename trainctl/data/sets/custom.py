"""The user's own map-style torch Dataset (data.train._target_, data.test._target_), read by DataLoader.

Each of `data.train` and `data.test` is a component section (`_target_` and its arguments, Hydra's
instantiate semantics, checked by the same rule as every `_target_`). Without `data.test`, a seeded
`data.test_fraction` of the train Dataset is the test split. A sample is `(input, target)`: the
input shape comes from the first train sample; the classes from `data.num_classes`, else the
Dataset's `classes` (names) or `num_classes` attribute; a floating-point target is regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS, DataInfo
from trainctl.data.streamed import DatasetSplit
from trainctl.data.types import DataBundle, DataSpec, Task
from trainctl.errors import TrainctlError


@dataclass
class CustomDataConfig(DataConfig):
    train: dict[str, Any] = field(default_factory=dict)  # `_target_: module.Class` and its arguments
    test: dict[str, Any] | None = None  # the same for the test Dataset; null: data.test_fraction of train
    test_fraction: float = ranged(0.2, "(0, 1)")
    split_seed: int = 0
    num_classes: int | None = ranged(None, "[1, inf)")  # null: the Dataset's `classes` / `num_classes`
    workers: int | None = ranged(None, "[0, inf)")  # reading processes per rank; null: its thread budget


def build(section: dict[str, Any], key: str) -> Dataset:
    from trainctl.config.targets import instantiate

    if "_target_" not in section:
        raise TrainctlError(
            f"{key} names no Dataset class",
            where=key,
            fix=f"{key}._target_=mymodule.MyDataset (a map-style torch Dataset), plus its arguments",
        )
    built = instantiate(section, where=key, kind=Dataset)
    if not (hasattr(built, "__getitem__") and hasattr(built, "__len__")):
        raise TrainctlError(
            f"{key}._target_={section['_target_']} built a {type(built).__name__}, not a map-style Dataset",
            where=key,
            fix="give a class with __len__ and __getitem__ (torch.utils.data.Dataset)",
        )
    return built


def first_sample(dataset: Dataset, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise TrainctlError(f"the Dataset of {key} is empty", where=key)
    sample = dataset[0]
    if not isinstance(sample, tuple | list) or len(sample) != 2:
        raise TrainctlError(
            f"a sample of {key} is a {type(sample).__name__}, not an (input, target) pair",
            where=f"{key}._target_",
            fix="return (input tensor, target) from __getitem__",
        )
    return torch.as_tensor(sample[0]), torch.as_tensor(sample[1])


def describe(cfg: CustomDataConfig, train: Dataset) -> tuple[DataSpec, list[str] | None]:
    inputs, target = first_sample(train, "data.train")
    if target.is_floating_point():
        return DataSpec(tuple(inputs.shape), max(1, target.numel()), Task.regression), None
    names = getattr(train, "classes", None)
    names = [str(n) for n in names] if isinstance(names, list | tuple) and names else None
    count = cfg.num_classes or (len(names) if names else getattr(train, "num_classes", None))
    if not isinstance(count, int) or count < 1:
        raise TrainctlError(
            "the number of classes of data.train is unknown",
            where=f"data.train._target_={cfg.train.get('_target_')}",
            fix="set data.num_classes=N, or give the Dataset a `classes` list or a `num_classes` attribute",
        )
    return DataSpec(tuple(inputs.shape), count, Task.classification), names


def labels_of(dataset: Dataset, regression: bool) -> torch.Tensor:
    """Every target: the Dataset's `targets` attribute when it has one, else each sample's."""
    known = getattr(dataset, "targets", None)
    if isinstance(dataset, Subset):
        base = getattr(dataset.dataset, "targets", None)
        known = torch.as_tensor(base)[list(dataset.indices)] if base is not None else None
    values = (
        torch.as_tensor(known)
        if known is not None
        else torch.stack(
            [torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]
        )
    )
    return values.float().view(len(values), -1) if regression else values.long()


def splits(cfg: CustomDataConfig) -> tuple[Dataset, Dataset]:
    train = build(cfg.train, "data.train")
    if cfg.test:
        return train, build(cfg.test, "data.test")
    n = len(train)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).tolist()
    cut = max(1, round(n * cfg.test_fraction))
    return Subset(train, sorted(order[cut:])), Subset(train, sorted(order[:cut]))


def prepare(cfg: CustomDataConfig, download: bool) -> DataInfo:
    train, test = splits(cfg)
    spec, _ = describe(cfg, train)
    return DataInfo(spec, len(train), len(test))  # type: ignore[arg-type]


@DATASETS.register("custom", CustomDataConfig, prepare=prepare)
def load_custom(cfg: CustomDataConfig) -> DataBundle:
    train, test = splits(cfg)
    spec, names = describe(cfg, train)
    regression = spec.task is Task.regression

    def split(dataset: Dataset, persistent: bool) -> DatasetSplit:
        return DatasetSplit(
            dataset, labels=lambda: labels_of(dataset, regression), workers=cfg.workers, persistent=persistent
        )

    return DataBundle(train=split(train, True), test=split(test, False), spec=spec, class_names=names)
