"""A user's own model: a small CNN that trainctl builds from `_target_: mynet.Net`."""

from __future__ import annotations

from torch import nn


class Net(nn.Module):
    """Two conv stages, global average pooling, a linear head.

    trainctl passes `num_classes` and `in_channels` from the data set (they match parameter names);
    `width` and `dropout` come from the config (conf/model/mynet.yaml, or model.width=64).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
