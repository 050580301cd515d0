"""Synthetic linear regression y = weight * x + bias + noise: the worked example of gradient descent."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainctl.config.ranges import ranged
from trainctl.config.schema import DataConfig
from trainctl.data import DATASETS
from trainctl.data.types import DataBundle, DataSpec, Split, Task


@dataclass
class LinRegConfig(DataConfig):
    samples: int = ranged(10_000, "[1, inf)")
    test_samples: int = ranged(1_000, "[1, inf)")
    weight: float = ranged(2.0, "(-inf, inf)")
    bias: float = ranged(0.0, "(-inf, inf)")
    noise: float = ranged(0.01, "[0, inf)")  # std of the Gaussian noise added to y
    seed: int = ranged(1234, "[0, inf)")  # the data are fixed by this seed, not by trainer.seed


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
