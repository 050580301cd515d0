"""Compression passes turn a trained model into a smaller or faster one; their registry and the chain.

One module per pass in trainctl/compress/passes/ registers itself with its config dataclass, and one
YAML file per ready-made setting lives in conf/compress/. The `chain` option lists passes to apply
in order; `build_passes` flattens any config into that list.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trainctl.errors import TrainctlError
from trainctl.registry import Registry

if TYPE_CHECKING:
    from trainctl.compress.base import CompressionPass
    from trainctl.config.schema import CompressConfig

PASSES: Registry = Registry("compression pass", "trainctl.compress.passes")


def build_passes(cfg: CompressConfig | dict[str, Any]) -> list[CompressionPass]:
    """The passes a `compress` config asks for, in order (`none` asks for none, `chain` for several)."""
    cfg = typed_pass_config(cfg)
    entry = PASSES.get(cfg.name)
    if cfg.name == "none":
        return []
    if cfg.name == "chain":
        return [p for step in cfg.passes for p in build_passes(step)]
    return [entry.build(cfg)]


def typed_pass_config(cfg: Any) -> Any:
    """A pass config dataclass from a dataclass, a dict or a DictConfig (chain steps, saved records)."""
    if dataclasses.is_dataclass(cfg):
        return cfg
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    name = node.get("name")
    if not name:
        raise TrainctlError(
            "a compression pass has no 'name'", where=str(dict(node)), fix="e.g. {name: int8}"
        )
    schema = PASSES.get(str(name)).schema
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        raise TrainctlError(
            f"bad settings for compression pass '{name}': {str(exc).splitlines()[0]}",
            where=str(OmegaConf.to_container(node)),
            fix=f"its keys: {fields}",
        ) from None
