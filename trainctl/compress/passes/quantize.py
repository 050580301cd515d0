"""Compression passes `int8` (dynamic: Linear layers and embedding tables) and `int8_static` (calibrated).

Which library, measured on this machine (1 thread, batch 64; `python -m bench quantize` repeats it):
- Dynamic int8, MNIST MLP 784-512-256-10: torch.ao.quantization.quantize_dynamic runs 2.2x faster than
  fp32 (fbgemm/onednn int8 kernels). torchao 0.18's successors run SLOWER than fp32 in eager mode:
  Int8DynamicActivationInt8WeightConfig 0.53x, Int8WeightOnlyConfig 0.93x; their speed needs
  torch.compile or a GPU. So this pass uses torch.ao.
- Static int8, conv nets: torch.ao FX graph mode (prepare_fx / convert_fx) runs the `cnn` model 8.2x
  and ResNet-20 5.2x faster than fp32; torchao's PT2E flow (torch.export + X86InductorQuantizer) runs
  them at 0.55x and 0.77x of fp32 unless compiled with inductor. So this pass uses torch.ao FX too.
torch.ao.quantization warns that it is deprecated in favour of torchao; the warnings are silenced here
(and only here) because the choice above is deliberate. Quantized kernels run on the CPU only.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainctl.compress import PASSES
from trainctl.compress.base import CompressionPass, PassJob, replace
from trainctl.config.ranges import ranged
from trainctl.config.schema import CompressConfig
from trainctl.errors import TrainctlError


@contextlib.contextmanager
def torch_ao() -> Iterator[None]:
    """Run torch.ao.quantization code without its deprecation warnings (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=r".*deprecated.*", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        yield


def float_layers(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[str]:
    """Names of the float layers of the given kinds (quantized layers are other classes)."""
    return [name for name, m in model.named_modules() if type(m) in kinds]


# ---------------------------------------------------------------------------------------------- dynamic
@dataclass
class DynamicInt8Config(CompressConfig):
    embeddings: bool = True  # also store nn.Embedding tables as int8 rows (weight-only, per-row scales)
    per_channel: bool = True  # one weight scale per output unit (more accurate than one per tensor)


class DynamicInt8(CompressionPass):
    """int8 weights; activations quantized on the fly per batch. Linear layers and embedding tables."""

    final = True
    cfg: DynamicInt8Config

    def kinds(self) -> tuple[type[nn.Module], ...]:
        return (nn.Linear, nn.Embedding) if self.cfg.embeddings else (nn.Linear,)

    def check(self, model: nn.Module) -> None:
        if not float_layers(model, self.kinds()):
            raise TrainctlError(
                f"int8 dynamic quantization found no float Linear{' or Embedding' * self.cfg.embeddings} "
                f"layer in {type(model).__name__}",
                fix="this model has nothing it can quantize; for conv nets use --quantize int8-static",
            )

    def qconfig_spec(self) -> dict[type[nn.Module], Any]:
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            float_qparams_weight_only_qconfig,
            per_channel_dynamic_qconfig,
        )

        spec: dict[type[nn.Module], Any] = {
            nn.Linear: per_channel_dynamic_qconfig if self.cfg.per_channel else default_dynamic_qconfig
        }
        if self.cfg.embeddings:
            spec[nn.Embedding] = float_qparams_weight_only_qconfig
        return spec

    def apply(self, model: nn.Module, job: PassJob | None = None) -> nn.Module:
        from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
        from torch.ao.quantization import quantize_dynamic

        with torch_ao():
            model = quantize_dynamic(model.cpu().eval(), self.qconfig_spec(), dtype=torch.qint8)
        for module in model.modules():
            if isinstance(module, QuantizedEmbedding):  # its kernel needs contiguous indices; transformers
                module.register_forward_pre_hook(contiguous_inputs)  # passes expanded token-type ids
        return model

    def restore(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        return self.apply(model)


@PASSES.register("int8", DynamicInt8Config)
def build_int8(cfg: DynamicInt8Config) -> DynamicInt8:
    return DynamicInt8(cfg)


def contiguous_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


# ----------------------------------------------------------------------------------------------- static
@dataclass
class StaticInt8Config(CompressConfig):
    # training batches the observers see to choose activation ranges
    calib_batches: int = ranged(32, "[1, inf)")


class StaticInt8(CompressionPass):
    """int8 weights and activations, activation ranges calibrated on training batches (FX graph mode).

    Conv + BatchNorm + ReLU are fused. A model whose forward cannot be traced as a whole (Python
    control flow on its input, e.g. a shape check) is quantized child by child, recursively.
    """

    final = True
    cfg: StaticInt8Config

    def check(self, model: nn.Module) -> None:
        if not float_layers(model, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or not list(
            model.children()
        ):
            raise TrainctlError(
                f"static int8 found no float Conv or Linear layers to trace in {type(model).__name__}",
                fix="this model has nothing it can quantize statically; try --quantize int8-dynamic",
            )

    def apply(self, model: nn.Module, job: PassJob) -> nn.Module:
        model = model.cpu().eval()
        batches = list(job.calibration_batches(self.cfg.calib_batches))
        if not batches:
            raise TrainctlError(
                "static int8 needs calibration data, but the run's training split is empty",
                fix="quantize with --quantize int8-dynamic instead",
            )
        example = job.example_input()
        parts = traceable_parts(model, example)
        if not parts:
            raise TrainctlError(
                f"static int8 cannot trace any part of {type(model).__name__} into a graph",
                fix="use --quantize int8-dynamic",
            )
        self.structure = {
            "engine": torch.backends.quantized.engine,
            "parts": [{"path": path, "shape": list(x.shape), "dtype": str(x.dtype)[6:]} for path, x in parts],
        }
        model = prepare(model, parts, self.structure["engine"])
        with torch.no_grad():
            for inputs in batches:
                model(inputs)
        job.log(f"int8 static: calibrated on {len(batches)} batch(es), {len(parts)} traced part(s)")
        return convert(model, parts)

    def restore(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        parts = [
            (p["path"], torch.zeros(p["shape"], dtype=getattr(torch, p["dtype"]))) for p in structure["parts"]
        ]
        return convert(prepare(model.cpu().eval(), parts, structure["engine"]), parts)


def traceable_parts(
    model: nn.Module, example: torch.Tensor, path: str = ""
) -> list[tuple[str, torch.Tensor]]:
    """(submodule path, example input) of the largest submodules torch.fx can trace; "" is the model.

    A single layer on its own (e.g. a classifier head) is left in float: traced alone it would become an
    anonymous graph op, and it is a negligible share of a conv net's work.
    """
    if next(model.children(), None) is None:
        return []
    try:
        torch.fx.symbolic_trace(model)
        return [(path, example)]
    except Exception:  # noqa: BLE001 - fx raises TraceError, TypeError, AttributeError...
        pass
    inputs: dict[str, torch.Tensor] = {}

    def remember(name: str):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if len(args) == 1 and isinstance(args[0], torch.Tensor) and name not in inputs:
                inputs[name] = args[0].detach()[:1]

        return hook

    handles = [child.register_forward_pre_hook(remember(name)) for name, child in model.named_children()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    parts = []
    for name, child in model.named_children():
        if name in inputs and any(True for _ in child.parameters()):
            parts += traceable_parts(child, inputs[name], f"{path}.{name}" if path else name)
    return parts


def prepare(model: nn.Module, parts: list[tuple[str, torch.Tensor]], engine: str) -> nn.Module:
    """Insert observers into each part (fusing conv, batch norm and relu)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    mapping = get_default_qconfig_mapping(engine)
    with torch_ao():
        for path, example in parts:
            prepared = prepare_fx(model.get_submodule(path), mapping, (example,))
            model = replace(model, path, prepared)
    return model


def convert(model: nn.Module, parts: list[tuple[str, torch.Tensor]]) -> nn.Module:
    """Replace each observed part by its int8 graph."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with torch_ao():
        for path, _ in parts:
            model = replace(model, path, convert_fx(model.get_submodule(path)))
    return model


@PASSES.register("int8_static", StaticInt8Config)
def build_int8_static(cfg: StaticInt8Config) -> StaticInt8:
    return StaticInt8(cfg)
