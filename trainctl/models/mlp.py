"""Multi-layer perceptron over flattened inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from torch import nn

from trainctl.config.ranges import ranged
from trainctl.config.schema import ModelConfig
from trainctl.data.types import DataSpec
from trainctl.models import MODELS


class Activation(str, Enum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"
    silu = "silu"


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@dataclass
class MLPConfig(ModelConfig):
    hidden: list[int] = ranged(interval="[1, inf)", factory=lambda: [128])
    dropout: float = ranged(0.0, "[0, 1)")
    activation: Activation = Activation.relu


class MLP(nn.Sequential):
    """Flatten, then Linear -> activation -> dropout per hidden layer, then a Linear head."""

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


@MODELS.register("mlp", MLPConfig)
def build_mlp(cfg: MLPConfig, spec: DataSpec) -> MLP:
    return MLP(
        math.prod(spec.input_shape),
        list(cfg.hidden),
        spec.num_outputs,
        activation=Activation(cfg.activation).value,
        dropout=cfg.dropout,
    )
