"""A small convolutional network for images: conv-relu-pool stages, then a hidden Linear layer and a head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainctl.config.ranges import ranged
from trainctl.config.schema import ModelConfig
from trainctl.data.types import DataSpec
from trainctl.errors import TrainctlError
from trainctl.models import MODELS


@dataclass
class CNNConfig(ModelConfig):
    # one 3x3 conv + 2x2 max-pool each
    channels: list[int] = ranged(interval="[1, inf)", factory=lambda: [32, 64])
    dense: int = ranged(128, "[1, inf)")  # units of the fully connected layer before the head
    dropout: float = ranged(0.25, "[0, 1)")


class CNN(nn.Sequential):
    """[Conv 3x3 -> ReLU -> MaxPool 2x2] per stage, Flatten, Dropout, Linear -> ReLU, Dropout, Linear."""

    def __init__(
        self, input_shape: tuple[int, ...], channels: list[int], dense: int, outputs: int, dropout: float
    ) -> None:
        width, height, length = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width, height, length = out, height // 2, length // 2
        layers += [
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width * height * length, dense),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense, outputs),
        ]
        super().__init__(*layers)


@MODELS.register("cnn", CNNConfig)
def build_cnn(cfg: CNNConfig, spec: DataSpec) -> CNN:
    shape = tuple(spec.input_shape)
    if len(shape) != 3 or min(shape[1:]) < 2 ** len(cfg.channels):
        raise TrainctlError(
            f"model=cnn needs images (C, H, W) of at least {2 ** len(cfg.channels)} pixels a side, "
            f"this data set gives {shape}",
            where="model",
            fix="use an image data set (mnist), or fewer model.channels",
        )
    return CNN(shape, list(cfg.channels), cfg.dense, spec.num_outputs, cfg.dropout)
