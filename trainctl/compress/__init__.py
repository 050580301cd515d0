"""Compression passes turn a trained model into a smaller or faster one; their registry and the chain.

One module per pass in trainctl/compress/passes/ registers itself with its config dataclass, and one
YAML file per ready-made setting lives in conf/compress/. The `chain` option lists passes to apply
in order; `build_passes` flattens any config into that list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.compress.base import CompressionPass
    from trainctl.config.schema import CompressConfig

PASSES: Registry = Registry("compression pass", "trainctl.compress.passes")


def build_passes(cfg: CompressConfig | dict[str, Any]) -> list[CompressionPass]:
    """The passes a `compress` config asks for, in order (`none` asks for none, `chain` for several)."""
    from trainctl.compress.base import typed_pass_config

    cfg = typed_pass_config(cfg)
    entry = PASSES.get(cfg.name)
    if cfg.name == "none":
        return []
    if cfg.name == "chain":
        return [p for step in cfg.passes for p in build_passes(step)]
    return [entry.build(cfg)]
