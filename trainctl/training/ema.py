"""Weight averaging: an exponential moving average of a model's weights, evaluated in its place."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightEMA:
    """A copy of the model whose weights follow the trained ones: ema = d * ema + (1 - d) * weights.

    The n-th update uses min(decay, (n - 1) / n): the plain mean of all weights seen so far until
    that exceeds `decay`, so the average never carries the random initialisation. Floating-point
    buffers (batch-norm statistics) are averaged the same way; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError("the EMA decay must be in (0, 1)")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for module in self.module.modules():  # module.compile() hooks point at the original: drop them
            if getattr(module, "_compiled_call_impl", None) is not None:
                module._compiled_call_impl = None
        self.module.requires_grad_(False)
        self._float = [t for t in self._tensors(self.module) if t.dtype.is_floating_point]
        self._other = [t for t in self._tensors(self.module) if not t.dtype.is_floating_point]

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (self.updates - 1) / self.updates)
        tensors = self._tensors(model)
        live_float = [t.detach() for t in tensors if t.dtype.is_floating_point]
        torch._foreach_lerp_(self._float, live_float, 1.0 - decay)
        for mine, live in zip(
            self._other, [t for t in tensors if not t.dtype.is_floating_point], strict=True
        ):
            mine.copy_(live)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's run evaluated: the moving average when there is one, else the model."""
    ema = state.get("ema")
    return ema["module"] if ema else state["model"]
