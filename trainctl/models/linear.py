"""A single linear layer over flattened inputs (logistic or linear regression)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainctl.config.schema import ModelConfig
from trainctl.data.types import DataSpec
from trainctl.models import MODELS


@dataclass
class LinearConfig(ModelConfig):
    bias: bool = True


class LinearModel(nn.Module):
    """y = W flatten(x) + b."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    def describe(self) -> dict[str, float]:
        """The learned weight and bias when there is one of each (the worked regression example)."""
        if self.linear.weight.numel() != 1:
            return {}
        out = {"weight": self.linear.weight.item()}
        if self.linear.bias is not None:
            out["bias"] = self.linear.bias.item()
        return out


@MODELS.register("linear", LinearConfig)
def build_linear(cfg: LinearConfig, spec: DataSpec) -> LinearModel:
    return LinearModel(math.prod(spec.input_shape), spec.num_outputs, bias=cfg.bias)
