"""Compression pass `cast`: weights stored and run in bfloat16 or float16, for inference.

Inputs are cast to the model's type on the way in and the outputs back to float32 on the way out
(forward hooks on the model), so evaluation and prediction code stays the same. Half the file size;
the speed depends on the CPU's support for the type (the report card measures it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainctl.compress import PASSES
from trainctl.compress.base import CompressionPass, PassJob
from trainctl.config.schema import CompressConfig
from trainctl.errors import TrainctlError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class CastConfig(CompressConfig):
    dtype: str = "bf16"  # bf16 | fp16


class Cast(CompressionPass):
    final = True
    cfg: CastConfig

    def check(self, model: nn.Module) -> None:
        if self.cfg.dtype not in DTYPES:
            raise TrainctlError(
                f"unknown cast type '{self.cfg.dtype}'", fix=f"use one of: {', '.join(DTYPES)}"
            )
        if not any(p.is_floating_point() for p in model.parameters()):
            raise TrainctlError(f"{type(model).__name__} has no float weights to cast")

    def apply(self, model: nn.Module, job: PassJob | None = None) -> nn.Module:
        dtype = DTYPES[self.cfg.dtype]
        model = model.to(dtype).eval()
        model.register_forward_pre_hook(lambda module, args: cast_floats(args, dtype))
        model.register_forward_hook(lambda module, args, output: cast_floats(output, torch.float32))
        return model

    def restore(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        return self.apply(model)


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """`value` with its floating-point tensors (also inside tuples and lists) cast to `dtype`."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        return type(value)(cast_floats(v, dtype) for v in value)
    return value


@PASSES.register("cast", CastConfig)
def build_cast(cfg: CastConfig) -> Cast:
    return Cast(cfg)
