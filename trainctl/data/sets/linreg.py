"""Synthetic linear regression y = weight * x + bias + noise: the worked example of gradient descent."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS
from trainctl.data.types import DataBundle, DataSpec, Split, Task


@dataclass
class LinRegConfig(DataConfig):
    samples: int = 10_000
    test_samples: int = 1_000
    weight: float = 2.0
    bias: float = 0.0
    noise: float = 0.01  # std of the Gaussian noise added to y
    seed: int = 1234  # the data are fixed by this seed, not by trainer.seed


@DATASETS.register("linreg", LinRegConfig)
def load_linreg(cfg: LinRegConfig) -> DataBundle:
    generator = torch.Generator().manual_seed(cfg.seed)

    def sample(n: int) -> Split:
        x = torch.randn(n, 1, generator=generator)
        y = cfg.weight * x + cfg.bias + cfg.noise * torch.randn(n, 1, generator=generator)
        return Split(x, y)

    return DataBundle(
        train=sample(cfg.samples),
        test=sample(cfg.test_samples),
        spec=DataSpec(input_shape=(1,), num_outputs=1, task=Task.regression),
    )
