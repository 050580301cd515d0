"""Devices and threads: which device `trainer.device` means here, and the threads each worker gets."""

from __future__ import annotations

from trainctl.config.schema import Device
from trainctl.errors import TrainctlError


def resolve_device(device: Device | str) -> str:
    """`auto` means cuda when a GPU is visible, else cpu; asking for a missing GPU is an error."""
    import torch

    name = Device(device).value
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainctlError("trainer.device=cuda but no GPU is visible", fix="use trainer.device=auto or cpu")
    return name
