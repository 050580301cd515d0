"""`--format safetensors`: the model's weights as one safetensors file, loadable without trainctl.

int8 runs: dynamic int8 weights are stored dequantised (each int8 value times its scale, float32) under
the float model's names, so they load into the float architecture; static int8 graphs are refused.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainctl.compress.base import replace
from trainctl.compress.stored import compression_records, restore_layout
from trainctl.errors import TrainctlError
from trainctl.export import FORMATS
from trainctl.export.base import (
    Artefact,
    Exporter,
    ExportSettings,
    export_parent_hint,
    int8_kind,
    plain_model,
    save_tokenizer,
)
from trainctl.export.inputs import describe_inputs, describe_outputs

if TYPE_CHECKING:
    from trainctl.compress.job import LoadedRun

FILE = "model.safetensors"


@dataclass
class SafetensorsSettings(ExportSettings):
    pass


class SafetensorsExporter(Exporter):
    name = "safetensors"

    def refuse(self, source: LoadedRun) -> None:
        if int8_kind(source) == "static":
            raise TrainctlError(
                "--format safetensors cannot export a static int8 model: its convolutions are fused with "
                "their batch norms into int8 graph modules whose weights fit no float architecture",
                where=str(source.run.path),
                fix=f"{export_parent_hint(source, 'safetensors')} (or --format onnx, then quantize it "
                "with onnxruntime.quantization)",
            )

    def write(self, source: LoadedRun, folder: Path, example: torch.Tensor) -> Artefact:
        from safetensors.torch import load_file, save_file

        dequantised = int8_kind(source) == "dynamic"
        model = dequantised_copy(source.model) if dequantised else source.model
        metadata = {
            "format": "pt",
            "trainctl_config": json.dumps(source.state["config"]),
            "inputs": json.dumps(describe_inputs(source)),
            "outputs": json.dumps(describe_outputs(source)),
        }
        save_file(unshared(model.state_dict()), str(folder / FILE), metadata=metadata)
        architecture = float_architecture(source)
        architecture.load_state_dict(load_file(str(folder / FILE)), strict=True)
        notes = []
        if dequantised:
            notes.append(
                "The run's model is dynamic int8; this file holds its int8 weights dequantised (each int8 "
                "value times its per-channel scale, float32) under the float model's names, so they load "
                "into the float architecture. The int8 model also quantizes activations per batch; the "
                "check `vs the run's int8 model` shows how far the float computation is from it. To run "
                "int8 elsewhere, quantize this float model for the target runtime."
            )
        return Artefact(
            files=[FILE, *save_tokenizer(source, folder)],
            loaded=architecture,
            loading=loading_text(model, dequantised),
            reference=model if dequantised else None,
            notes=notes,
        )


def loading_text(model: nn.Module, dequantised: bool) -> str:
    names = list(model.state_dict())
    shown = ", ".join(f"`{n}`" for n in names[:6]) + (", ..." if len(names) > 6 else "")
    return (
        "```python\nfrom safetensors.torch import load_file\n\n"
        f'weights = load_file("{FILE}")  # {{name: tensor}}; no trainctl needed\n'
        "model.load_state_dict(weights)  # a module tree like the one below\n```\n\n"
        f"The {len(names)} names ({shown}) are PyTorch state_dict keys of this module tree "
        f"({'float layers in place of the int8 ones; ' if dequantised else ''}its printout by torch):\n\n"
        f"```\n{model}\n```\n\n"
        "The file's metadata (`safe_open(...).metadata()`) holds the resolved config (`trainctl_config`), "
        "the inputs with their normalisation (`inputs`) and the outputs (`outputs`) as JSON."
    )


def dequantised_copy(model: nn.Module) -> nn.Module:
    """A float copy of a dynamically quantized model: each int8 Linear or Embedding replaced by a float
    layer holding its dequantised weights."""
    from torch.ao.nn.quantized import Embedding as Int8Embedding
    from torch.ao.nn.quantized import Linear as Int8Linear

    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, Int8Linear):
            bias = module.bias()
            layer = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
            layer.weight = nn.Parameter(module.weight().dequantize(), requires_grad=False)
            if bias is not None:
                layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        elif isinstance(module, Int8Embedding):
            layer = nn.Embedding.from_pretrained(module.weight().dequantize(), freeze=True)
        else:
            continue
        twin = replace(twin, name, layer)
    return plain_model(twin)


def float_architecture(source: LoadedRun) -> nn.Module:
    """The run's architecture built afresh from its config (pruned widths restored, int8 left out)."""
    from trainctl.models import build_model

    kept = [r for r in compression_records(source.state) if r["config"]["name"] != "int8"]
    return plain_model(restore_layout(build_model(source.cfg.model, source.data.spec), {"compression": kept}))


def unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each with its own storage (safetensors stores no aliases)."""
    seen: set[int] = set()
    found = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        found[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return found


@FORMATS.register("safetensors", SafetensorsSettings)
def build_safetensors(settings: SafetensorsSettings) -> SafetensorsExporter:
    return SafetensorsExporter(settings)
