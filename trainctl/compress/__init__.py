"""Compression passes applied to a trained model; the pass registry and protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from trainctl.registry import Registry

if TYPE_CHECKING:
    from torch import nn

PASSES: Registry = Registry("compression pass", "trainctl.compress")


class CompressionPass(Protocol):
    """Turns a trained model into a smaller or faster one."""

    def apply(self, model: nn.Module) -> nn.Module: ...
