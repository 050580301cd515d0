"""Parallel modes: how ranks share the model and the work; the strategy registry and protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from trainctl.registry import Registry

if TYPE_CHECKING:
    from torch import nn

STRATEGIES: Registry = Registry("parallel mode", "trainctl.parallel")


class Strategy(Protocol):
    """Wraps a model for one parallel mode and moves its state in and out of checkpoints."""

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def unwrap(self, model: nn.Module) -> nn.Module: ...

    def state_dict(self, model: nn.Module) -> dict[str, Any]: ...

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None: ...
