"""Compression pass `none`: the trained model is kept as it is."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainctl.compress import PASSES
from trainctl.config.schema import CompressConfig


@dataclass
class NoCompressionConfig(CompressConfig):
    pass


class KeepModel:
    def apply(self, model: nn.Module) -> nn.Module:
        return model


@PASSES.register("none", NoCompressionConfig)
def build_none(cfg: NoCompressionConfig) -> KeepModel:
    return KeepModel()
