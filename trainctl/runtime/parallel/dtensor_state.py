"""Full (unsharded) model and optimizer state of DTensor-based modes, via torch.distributed.checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
FULL_LOAD = StateDictOptions(full_state_dict=True)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Unsharded model and optimizer state dicts, gathered on rank 0 (collective)."""
    return {
        "model": get_model_state_dict(model, options=FULL),
        "optimizer": get_optimizer_state_dict(model, optimizer, options=FULL),
    }


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Scatter unsharded state dicts back into a sharded model and its optimizer (collective)."""
    set_model_state_dict(model, state["model"], options=FULL_LOAD)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=FULL_LOAD)
