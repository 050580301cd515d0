"""Optimizer parameter groups: layer-wise learning-rate decay and no weight decay on biases and norms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from trainctl.errors import TrainctlError

if TYPE_CHECKING:
    from trainctl.config.schema import OptimConfig


def layer_depths(model: nn.Module, why: str) -> dict[int, int]:
    """Depth of each parameter (by id): 0 below the first of `model.blocks()`, i+1 in block i, and
    len(blocks)+1 above the last (a classifier head), judged by registration order."""
    own = getattr(model, "blocks", None)
    if not callable(own):
        raise TrainctlError(
            f"{why} needs a model made of layers, and {type(model).__name__} lists none",
            where=why,
            fix=f"use {why}=1.0 with this model (models with layers: bert, resnet*)",
        )
    in_block = {id(p): i + 1 for i, block in enumerate(own()) for p in block.parameters()}
    top = max(in_block.values(), default=0) + 1
    depths: dict[int, int] = {}
    seen_block = False
    for p in model.parameters():
        if id(p) in in_block:
            seen_block = True
            depths[id(p)] = in_block[id(p)]
        else:
            depths[id(p)] = top if seen_block else 0
    return depths


def param_groups(cfg: OptimConfig, model: nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters of `model` in groups with their own `lr` and `weight_decay`.

    optim.layer_decay < 1 scales the rate by layer_decay^(layers above it), so the head learns at optim.lr
    and each layer below a little slower (as ELECTRA and BEiT fine-tune); optim.head_lr_scale multiplies
    the head's rate (a freshly initialised head on a pretrained encoder); optim.decay_norm_and_bias=false
    exempts biases and normalisation weights (every 0-d or 1-d tensor) from weight decay, as Hugging Face's
    Trainer does. With the defaults this is one group of every parameter.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    scaled = [key for key in ("layer_decay", "head_lr_scale") if getattr(cfg, key) != 1.0]
    depths = layer_depths(model, f"optim.{scaled[0]}") if scaled else {}
    top = max(depths.values(), default=0)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in trainable:
        scale = 1.0
        if depths:
            depth = depths[id(p)]
            scale = cfg.layer_decay ** (top - depth) * (cfg.head_lr_scale if depth == top else 1.0)
        decay = 0.0 if not cfg.decay_norm_and_bias and p.ndim <= 1 else cfg.weight_decay
        groups.setdefault((scale, decay), []).append(p)
    return [
        {"params": params, "lr": cfg.lr * scale, "weight_decay": decay}
        for (scale, decay), params in sorted(groups.items(), key=lambda item: (-item[0][0], -item[0][1]))
    ]
