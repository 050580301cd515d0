"""How a compressed model is stored and rebuilt: its pass records re-applied to a fresh model, then weights.

A quantized or narrowed model cannot take its state dict back on a model built from the config alone.
A compressed checkpoint therefore keeps, besides `model` (the state dict), `compression`: one record per
pass ({"config": the pass's settings, "structure": what its `restore` needs, e.g. kept widths}).
Rebuilding = build the model from the config, let each pass restore its layout, load the state dict.
Checkpoints stay tensors and plain data, loaded with weights_only=True: no pickled code runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainctl.compress.base import Record
from trainctl.training.ema import inference_weights

if TYPE_CHECKING:
    from trainctl.config.schema import Config, ModelConfig
    from trainctl.data.types import DataBundle, DataSpec


def compression_records(state: dict[str, Any]) -> list[Record]:
    """The passes a checkpoint's model went through, in order (none for a trained run)."""
    return list(state.get("compression") or [])


def restore_layout(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """`model`, freshly built from the config, given the layout of the checkpoint's compressed model."""
    from trainctl.compress import build_passes
    from trainctl.compress.passes.quantize import torch_ao

    with torch_ao():
        for record in compression_records(state):
            for compression in build_passes(record["config"]):
                model = compression.restore(model, record.get("structure") or {})
    return model


def rebuild_model(model_cfg: ModelConfig, spec: DataSpec, state: dict[str, Any]) -> nn.Module:
    """The checkpoint's model, compressed or not, with its weights loaded."""
    from trainctl.compress.passes.quantize import torch_ao
    from trainctl.models import build_model

    model = restore_layout(build_model(model_cfg, spec), state)
    with torch_ao():
        model.load_state_dict(inference_weights(state))  # a run's moving average when it keeps one
    return model


def runs_on_cpu_only(state: dict[str, Any]) -> bool:
    """Quantized kernels exist for the CPU only."""
    return any(r["config"]["name"].startswith("int8") for r in compression_records(state))


def inference_device(state: dict[str, Any], device: torch.device) -> torch.device:
    return torch.device("cpu") if runs_on_cpu_only(state) else device


def inference_model(
    cfg: Config, data: DataBundle, state: dict[str, Any], device: torch.device
) -> tuple[nn.Module, torch.device]:
    """The checkpoint's model as its run evaluated it (compression passes redone, averaged weights
    loaded, wrapped for test-time views) and its device: the CPU when its kernels exist only there."""
    from trainctl.training.evaluation import evaluated_model

    device = inference_device(state, device)
    return evaluated_model(rebuild_model(cfg.model, data.spec, state), data).to(device).eval(), device


def inference_precision(cfg: Config, state: dict[str, Any]) -> str:
    """The autocast a checkpoint's model runs under: the run's, except for compressed models, which
    run in the dtypes their passes chose (int8 kernels take float32 activations)."""
    return "fp32" if compression_records(state) else cfg.trainer.precision
