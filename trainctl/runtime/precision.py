"""Mixed precision: autocast to bf16 or fp16 and, for fp16, the gradient scaler around backward and step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from trainctl.config.schema import Precision
from trainctl.errors import TrainctlError

DTYPES = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}


def check_precision(precision: Precision | str, device: str) -> str:
    """A one-line plan check; fp16 on a CPU is refused (no gradient scaling there, bf16 is the fast path)."""
    precision = Precision(precision)
    if precision is Precision.fp16 and device != "cuda":
        raise TrainctlError(
            "trainer.precision=fp16 needs a GPU: fp16 training relies on a CUDA gradient scaler",
            where=f"trainer.precision on device {device}",
            fix="use trainer.precision=bf16 on a CPU (fast with AVX-512 BF16 or AMX), or fp32",
        )
    return f"precision {precision.value} on {device}"


class MixedPrecision:
    """Autocast context for forward passes, and the loss scaling that fp16 needs around the update.

    Weights, gradients and optimizer state stay fp32; only the operations autocast picks run in
    the lower precision.
    """

    def __init__(self, precision: Precision | str, device: torch.device) -> None:
        self.precision = Precision(precision)
        self.device_type = device.type
        self.dtype = DTYPES.get(self.precision)
        self.scaler = torch.amp.GradScaler(self.device_type) if self.precision is Precision.fp16 else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; with fp16, skipped when the scaled gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
