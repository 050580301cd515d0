"""The 8x8 handwritten digits that scikit-learn ships: the embedded default, no download needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS
from trainctl.data.types import DataBundle, DataSpec, Normalisation, Split, Task


@dataclass
class DigitsConfig(DataConfig):
    test_fraction: float = 0.2
    split_seed: int = 0  # the train/test split is fixed by this seed, not by trainer.seed


@DATASETS.register("digits", DigitsConfig)
def load_digits(cfg: DigitsConfig) -> DataBundle:
    from sklearn.datasets import load_digits as sklearn_digits

    pixels, labels = sklearn_digits(return_X_y=True)  # 1,797 images, values 0..16
    images = torch.from_numpy(pixels).float().div_(16.0).view(-1, 1, 8, 8)
    targets = torch.from_numpy(labels).long()
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(cfg.split_seed))
    n_test = round(len(targets) * cfg.test_fraction)
    test, train = order[:n_test], order[n_test:]
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return DataBundle(
        train=Split(images[train], targets[train]),
        test=Split(images[test], targets[test]),
        spec=DataSpec(input_shape=(1, 8, 8), num_outputs=10, task=Task.classification),
        class_names=[str(d) for d in range(10)],
        normalisation=Normalisation(
            "pixel values 0..16, shape (N, 1, 8, 8) (sklearn.datasets.load_digits)",
            16.0,
            (float(mean),),
            (float(std),),
        ),
    )
