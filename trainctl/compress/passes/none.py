"""Compression pass `none`: the trained model is kept as it is."""

from __future__ import annotations

from dataclasses import dataclass

from trainctl.compress import PASSES
from trainctl.compress.base import CompressionPass
from trainctl.config.schema import CompressConfig


@dataclass
class NoCompressionConfig(CompressConfig):
    pass


@PASSES.register("none", NoCompressionConfig)
def build_none(cfg: NoCompressionConfig) -> CompressionPass:
    return CompressionPass(cfg)  # never applied: build_passes returns no pass for `none`
