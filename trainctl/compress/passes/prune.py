"""Compression pass `prune`: global L1 magnitude pruning, or structured removal of whole channels.

- `global-l1` zeroes the `amount` fraction of smallest-magnitude weights over all Linear and Conv
  layers together (torch.nn.utils.prune.global_unstructured); the masks stay applied while fine-tuning
  and are folded into the weights before saving. The model keeps its shape: the zeros show as sparsity.
- `structured-channels` removes the `amount` fraction of hidden units / channels with the smallest L1
  norm (torch.nn.utils.prune.LnStructured ranks them) from every layer whose outputs feed only the next
  layer, and rebuilds both layers smaller, so the model really gets smaller and faster. It knows Linear ->
  Linear and Conv -> [BatchNorm] -> Conv chains inside nn.Sequential (activations and dropout between),
  and residual basic blocks (conv1 -> bn1 -> conv2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from trainctl.compress import PASSES
from trainctl.compress.base import CompressionPass, PassJob, replace
from trainctl.config.ranges import ranged
from trainctl.config.schema import CompressConfig
from trainctl.errors import TrainctlError

METHODS = ("global-l1", "structured-channels")
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ELEMENTWISE = (  # modules that keep each unit/channel separate: a narrowed width passes through them
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardswish,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
)  # fmt: skip
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class PruneConfig(CompressConfig):
    # fraction of weights (global-l1) or of each layer's channels (structured) removed
    amount: float = ranged(0.5, "(0, 1)")
    method: str = "global-l1"  # global-l1 | structured-channels
    finetune_epochs: int = ranged(0, "[0, inf)")  # epochs of training after pruning, on the run's train split
    finetune_lr: float | None = ranged(None, "(0, inf)")  # null: a tenth of the run's optim.lr


@dataclass
class Narrowable:
    """A hidden width that can shrink: `producer`'s outputs reach only `consumer` (through `norms`)."""

    producer: str
    consumer: str
    norms: list[str] = field(default_factory=list)


class Prune(CompressionPass):
    cfg: PruneConfig

    def check(self, model: nn.Module) -> None:
        if self.cfg.method not in METHODS:
            raise TrainctlError(
                f"unknown pruning method '{self.cfg.method}'", fix=f"use one of: {', '.join(METHODS)}"
            )
        if self.cfg.method == "global-l1" and not pruned_weights(model):
            raise TrainctlError(
                f"global-l1 pruning found no float Linear or Conv layer in {type(model).__name__}",
                fix="this model has no weights it can prune",
            )
        if self.cfg.method == "structured-channels":
            if not narrowables(model):
                unknown = sorted({type(m).__name__ for m in model.modules() if is_unknown_container(m)})
                raise TrainctlError(
                    f"structured channel pruning found no layer pair it knows how to narrow in "
                    f"{type(model).__name__}"
                    + (f"; layer types it does not know: {', '.join(unknown)}" if unknown else ""),
                    fix="it narrows Linear->Linear and Conv->[BatchNorm]->Conv chains in nn.Sequential and "
                    "residual basic blocks; use --prune-method global-l1 for other models",
                )
            for spot in narrowables(model):
                width = output_width(model.get_submodule(spot.producer))
                if width - round(self.cfg.amount * width) < 1:
                    raise TrainctlError(
                        f"pruning {self.cfg.amount:.0%} of the {width} channels of '{spot.producer}' "
                        "leaves none",
                        fix="use a smaller amount",
                    )

    def apply(self, model: nn.Module, job: PassJob) -> nn.Module:
        if self.cfg.method == "global-l1":
            targets = pruned_weights(model)
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.cfg.amount)
            job.log(f"pruned {self.cfg.amount:.0%} of the weights of {len(targets)} layers (global L1)")
        else:
            widths = {}
            for spot in narrowables(model):
                producer = model.get_submodule(spot.producer)
                mask = prune.LnStructured(self.cfg.amount, n=1, dim=0).compute_mask(
                    producer.weight.detach(), torch.ones_like(producer.weight)
                )
                keep = mask.flatten(1).any(dim=1).nonzero().squeeze(1)
                model = narrow(model, spot, keep)
                widths[spot.producer] = len(keep)
            self.structure = {"widths": widths}
            job.log("narrowed " + ", ".join(f"{k} to {v}" for k, v in widths.items()))
        if self.cfg.finetune_epochs:
            job.finetune(model, self.cfg.finetune_epochs, self.cfg.finetune_lr)
        if self.cfg.method == "global-l1":
            for module, name in pruned_weights(model, masked=True):
                prune.remove(module, name)  # fold the masks: plain weights with zeros, plain state dict
        return model.eval()

    def restore(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        widths = structure.get("widths", {})
        for spot in narrowables(model):
            if spot.producer in widths:
                model = narrow(model, spot, torch.arange(widths[spot.producer]))
        return model


def pruned_weights(model: nn.Module, masked: bool = False) -> list[tuple[nn.Module, str]]:
    """(layer, "weight") of every float Linear and Conv layer (`masked`: those pruning reparametrized)."""
    return [
        (m, "weight")
        for m in model.modules()
        if isinstance(m, WEIGHTED) and (not masked or prune.is_pruned(m) and hasattr(m, "weight_orig"))
    ]


def narrowables(model: nn.Module) -> list[Narrowable]:
    """Every hidden width structured pruning knows how to shrink, in model order."""
    found = []
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(module, nn.Sequential):
            found += sequential_narrowables(module, prefix)
        elif is_basic_block(module):
            found.append(Narrowable(f"{prefix}conv1", f"{prefix}conv2", [f"{prefix}bn1"]))
    return found


def sequential_narrowables(sequence: nn.Sequential, prefix: str) -> list[Narrowable]:
    """Layer -> [elementwise | batch norm]* -> layer of the same kind, inside one nn.Sequential."""
    children = list(sequence.named_children())
    found = []
    for i, (name, layer) in enumerate(children):
        if type(layer) not in (nn.Linear, nn.Conv2d) or getattr(layer, "groups", 1) != 1:
            continue
        norms, j = [], i + 1
        while j < len(children) and isinstance(children[j][1], ELEMENTWISE + BATCH_NORMS):
            if isinstance(children[j][1], BATCH_NORMS):
                norms.append(prefix + children[j][0])
            j += 1
        if (
            j < len(children)
            and type(children[j][1]) is type(layer)
            and getattr(children[j][1], "groups", 1) == 1
        ):
            found.append(Narrowable(prefix + name, prefix + children[j][0], norms))
    return found


def is_basic_block(module: nn.Module) -> bool:
    """A residual basic block (He et al.): conv1 -> bn1 -> relu -> conv2 -> bn2, plus a shortcut."""
    conv1, bn1, conv2 = (getattr(module, k, None) for k in ("conv1", "bn1", "conv2"))
    return (
        type(conv1) is nn.Conv2d
        and type(bn1) is nn.BatchNorm2d
        and type(conv2) is nn.Conv2d
        and conv1.groups == conv2.groups == 1
    )


def is_unknown_container(module: nn.Module) -> bool:
    """A module with its own forward wiring of weighted layers: structured pruning cannot see inside it."""
    has_layers = any(isinstance(m, WEIGHTED) for m in module.modules() if m is not module)
    return has_layers and not isinstance(module, nn.Sequential) and not is_basic_block(module)


def output_width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def narrow(model: nn.Module, spot: Narrowable, keep: torch.Tensor) -> nn.Module:
    """Rebuild the producer with only the `keep` outputs, and its norms and consumer to match."""
    producer, consumer = model.get_submodule(spot.producer), model.get_submodule(spot.consumer)
    model = replace(model, spot.producer, sliced(producer, keep, dim=0))
    for path in spot.norms:
        model = replace(model, path, sliced_norm(model.get_submodule(path), keep))
    return replace(model, spot.consumer, sliced(consumer, keep, dim=1))


def sliced(layer: nn.Module, keep: torch.Tensor, dim: int) -> nn.Module:
    """A copy of a Linear or Conv2d layer keeping only the `keep` outputs (dim 0) or inputs (dim 1)."""
    weight = layer.weight.detach().index_select(dim, keep.to(layer.weight.device))
    bias = None if layer.bias is None else layer.bias.detach()
    if bias is not None and dim == 0:
        bias = bias.index_select(0, keep.to(bias.device))
    factory = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, nn.Linear):
        new: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, **factory)
    else:
        new = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
            **factory,
        )
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def sliced_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of a batch norm over the `keep` channels only (affine parameters and running statistics)."""
    state = norm.state_dict()
    device = next(iter(state.values())).device
    new = type(norm)(
        len(keep),
        eps=norm.eps,
        momentum=norm.momentum,
        affine=norm.affine,
        track_running_stats=norm.track_running_stats,
    )
    new.load_state_dict(
        {k: v.index_select(0, keep.to(device)) if v.dim() == 1 else v for k, v in state.items()}
    )
    return new.to(device)


@PASSES.register("prune", PruneConfig)
def build_prune(cfg: PruneConfig) -> Prune:
    return Prune(cfg)
