"""The 8x8 handwritten digits that scikit-learn ships: the embedded default, no download needed."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS, DataInfo
from trainctl.data.types import DataBundle, DataSpec, Normalisation, Split, Task


@dataclass
class DigitsConfig(DataConfig):
    test_fraction: float = ranged(0.2, "(0, 1)")
    split_seed: int = ranged(0, "[0, inf)")  # the train/test split is fixed by this seed, not by trainer.seed


IMAGES = 1_797  # what sklearn's load_digits returns: a fixed set
SPEC = DataSpec(input_shape=(1, 8, 8), num_outputs=10, task=Task.classification)


def held_out(cfg: DigitsConfig) -> int:
    """How many images the test split holds."""
    return round(IMAGES * cfg.test_fraction)


def digits_info(cfg: DigitsConfig, download: bool) -> DataInfo:
    """The sizes, known without loading (the planner's process then never imports scikit-learn)."""
    return DataInfo(SPEC, IMAGES - held_out(cfg), held_out(cfg))


def digits_files(cfg: DigitsConfig) -> list[Path]:
    """The file scikit-learn reads them from (found without importing scikit-learn)."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return [Path(folder) / "datasets" / "data" / "digits.csv.gz" for folder in folders[:1]]


@DATASETS.register("digits", DigitsConfig, prepare=digits_info, files=digits_files)
def load_digits(cfg: DigitsConfig) -> DataBundle:
    from sklearn.datasets import load_digits as sklearn_digits

    pixels, labels = sklearn_digits(return_X_y=True)  # 1,797 images, values 0..16
    images = torch.from_numpy(pixels).float().div_(16.0).view(-1, 1, 8, 8)
    targets = torch.from_numpy(labels).long()
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(cfg.split_seed))
    test, train = order[: held_out(cfg)], order[held_out(cfg) :]
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return DataBundle(
        train=Split(images[train], targets[train]),
        test=Split(images[test], targets[test]),
        spec=SPEC,
        class_names=[str(d) for d in range(10)],
        normalisation=Normalisation(
            "pixel values 0..16, shape (N, 1, 8, 8) (sklearn.datasets.load_digits)",
            16.0,
            (float(mean),),
            (float(std),),
        ),
    )
