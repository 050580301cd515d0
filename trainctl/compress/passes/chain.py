"""Compression option `chain`: several passes applied in order (e.g. prune, fine-tune, then int8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainctl.compress import PASSES
from trainctl.config.schema import CompressConfig


@dataclass
class ChainConfig(CompressConfig):
    # Each step is a pass's settings with its name, e.g. [{name: prune, amount: 0.5}, {name: int8}].
    passes: list[Any] = field(default_factory=list)


@PASSES.register("chain", ChainConfig)
def build_chain(cfg: ChainConfig) -> ChainConfig:
    return cfg  # trainctl.compress.build_passes expands the steps; a chain is never applied itself
