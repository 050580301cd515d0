"""The user's own map-style torch Dataset from `data._target_`, read by DataLoader workers.

`data._target_: mymodule.MyDataset` and its arguments (Hydra's instantiate semantics, under the rule of
every `_target_`). A Dataset class with a `split` parameter is built twice, `split="train"` and
`split="test"`; one without is split by `data.test_fraction` (seeded by `data.split_seed`). A sample is
`(input, target)`: the input shape comes from the first train sample; the classes from
`data.num_classes`, else the Dataset's `classes` (names) or `num_classes` attribute; a floating-point
target makes it a regression. `data.workers`, `data.sampler` and those keys are trainctl's; the rest go
to the Dataset.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

from trainctl.config import targets
from trainctl.data.streamed import DatasetSplit
from trainctl.data.target_schema import TargetDataConfig
from trainctl.data.types import DataBundle, DataSpec, Task
from trainctl.errors import TrainctlError


def build(cfg: TargetDataConfig, **split: str) -> Dataset:
    built = targets.instantiate(targets.target_section(cfg), targets.DATASET, "data", **split)
    if not (hasattr(built, "__getitem__") and hasattr(built, "__len__")):
        raise TrainctlError(
            f"data._target_={cfg.target} built a {type(built).__name__}, not a map-style Dataset",
            where="data._target_",
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


def describe(cfg: TargetDataConfig, train: Dataset) -> tuple[DataSpec, list[str] | None]:
    inputs, target = first_sample(train, "data._target_")
    if target.is_floating_point():
        return DataSpec(tuple(inputs.shape), max(1, target.numel()), Task.regression), None
    names = getattr(train, "classes", None)
    names = [str(n) for n in names] if isinstance(names, list | tuple) and names else None
    count = cfg.num_classes or (len(names) if names else getattr(train, "num_classes", None))
    if not isinstance(count, int) or count < 1:
        raise TrainctlError(
            "the number of classes of the data set is unknown",
            where=f"data._target_={cfg.target}",
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


def splits(cfg: TargetDataConfig) -> tuple[Dataset, Dataset]:
    _, accepted = targets.check_call(
        targets.target_section(cfg), targets.DATASET, "data", provided=("split",)
    )
    if "split" in accepted:
        return build(cfg, split="train"), build(cfg, split="test")
    whole = build(cfg)
    n = len(whole)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).tolist()
    cut = max(1, round(n * cfg.test_fraction))
    return Subset(whole, sorted(order[cut:])), Subset(whole, sorted(order[:cut]))


def sizes(cfg: TargetDataConfig) -> tuple[DataSpec, int, int]:
    """The spec and the train and test sizes (what a plan shows), from the built Datasets."""
    train, test = splits(cfg)
    spec, _ = describe(cfg, train)
    return spec, len(train), len(test)  # type: ignore[arg-type]


def load(cfg: TargetDataConfig) -> DataBundle:
    train, test = splits(cfg)
    spec, names = describe(cfg, train)
    regression = spec.task is Task.regression

    def split(dataset: Dataset, persistent: bool) -> DatasetSplit:
        return DatasetSplit(
            dataset, labels=lambda: labels_of(dataset, regression), workers=cfg.workers, persistent=persistent
        )

    return DataBundle(train=split(train, True), test=split(test, False), spec=spec, class_names=names)
