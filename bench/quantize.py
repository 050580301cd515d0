"""torch.ao against torchao int8 on the same models, side by side: the measurements behind the choice of
library in trainctl/compress/passes/quantize.py. Random weights (latency does not depend on them)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

from trainctl.compress.passes.quantize import DynamicInt8, DynamicInt8Config, torch_ao
from trainctl.compress.report import file_bytes, threads, time_alternately

THREADS = 1


def torchao_variants() -> dict[str, Callable[[nn.Module], nn.Module]]:
    """torchao 0.18's int8 configs for Linear layers (eager mode, as trainctl would run them)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    def apply(config: object) -> Callable[[nn.Module], nn.Module]:
        def run(model: nn.Module) -> nn.Module:
            quantize_(model, config)
            return model

        return run

    return {
        "torchao int8 dynamic act + int8 weight": apply(Int8DynamicActivationInt8WeightConfig()),
        "torchao int8 weight only": apply(Int8WeightOnlyConfig()),
    }


def static_variants(example: torch.Tensor) -> dict[str, Callable[[nn.Module], nn.Module]]:
    """Static int8 of a conv net: torch.ao FX (trainctl int8_static) against torchao's PT2E flow, both
    calibrated on the same random batches and run in eager mode."""
    from trainctl.compress.passes.quantize import convert, prepare

    calibration = [torch.rand_like(example.expand(64, *example.shape[1:])) for _ in range(4)]

    def fx(model: nn.Module) -> nn.Module:
        parts = [("", example)]
        model = prepare(model, parts, torch.backends.quantized.engine)
        for batch in calibration:
            model(batch)
        return convert(model, parts)

    variants = {"torch.ao FX static (trainctl int8_static)": fx}
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        def pt2e(model: nn.Module) -> nn.Module:
            batch = torch.export.Dim("batch", min=1, max=1024)
            exported = torch.export.export(model, (calibration[0],), dynamic_shapes=({0: batch},)).module()
            quantizer = xiq.X86InductorQuantizer().set_global(
                xiq.get_default_x86_inductor_quantization_config()
            )
            prepared = prepare_pt2e(exported, quantizer)
            for sample in calibration:
                prepared(sample)
            return convert_pt2e(prepared)

        variants["torchao PT2E x86 static, eager"] = pt2e
    except ImportError:
        print("torchao is not installed: pip install torchao (only this benchmark uses it)")
    return variants


def compare(
    label: str, model: nn.Module, variants: dict[str, Callable[[nn.Module], nn.Module]], batch: torch.Tensor
) -> None:
    built = {"fp32": model.eval()}
    for name, make in variants.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built[name] = make(copy.deepcopy(model).eval())
    for size in (1, 64):
        with threads(THREADS):
            seconds, repeats = time_alternately(list(built.values()), batch[:size])
        base = seconds[0]
        for (name, quantized), s in zip(built.items(), seconds, strict=True):
            print(
                f"{label} batch {size:>2}: {name:<40} {s * 1e3:8.3f} ms  {base / s:5.2f}x vs fp32  "
                f"file {file_bytes(quantized) / 1e6:.3f} MB  ({repeats} runs, {THREADS} thread)",
                flush=True,
            )


def main() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    ours = DynamicInt8(DynamicInt8Config(embeddings=False))
    variants = {"torch.ao quantize_dynamic (trainctl int8)": lambda m: ours.apply(m)}
    try:
        variants |= torchao_variants()
    except ImportError:
        print("torchao is not installed: pip install torchao (only this benchmark uses it)")
    with torch_ao():
        compare("MLP 784-512-256-10", mlp, variants, torch.rand(64, 1, 28, 28))
        from trainctl.models.cnn import CNN

        cnn = CNN((1, 28, 28), [32, 64], 128, 10, 0.25).eval()
        compare(
            "CNN 32-64 conv, 128 dense",
            cnn,
            static_variants(torch.rand(1, 1, 28, 28)),
            torch.rand(64, 1, 28, 28),
        )
