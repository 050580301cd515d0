"""`--format safetensors`: the model's weights as one safetensors file, loadable without trainctl.

int8 runs: dynamic int8 weights are stored dequantised (each int8 value times its scale, float32) under
the float model's names, so they load into the float architecture; static int8 graphs are refused.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from trainctl.api import OpenedRun

FILE = "model.safetensors"
EXTRA_STATE = "trainctl_extra_state"  # the metadata entry of the modules' non-tensor extra state


@dataclass
class SafetensorsSettings(ExportSettings):
    pass


class SafetensorsExporter(Exporter):
    name = "safetensors"

    def refuse(self, source: OpenedRun) -> None:
        if int8_kind(source) == "static":
            raise TrainctlError(
                "--format safetensors cannot export a static int8 model: its convolutions are fused with "
                "their batch norms into int8 graph modules whose weights fit no float architecture",
                where=str(source.run.path),
                fix=f"{export_parent_hint(source, 'safetensors')} (or --format onnx, then quantize it "
                "with onnxruntime.quantization)",
            )

    def write(self, source: OpenedRun, folder: Path, example: torch.Tensor) -> Artefact:
        from safetensors.torch import load_file, save_file

        dequantised = int8_kind(source) == "dynamic"
        model = dequantised_copy(source.model) if dequantised else source.model
        metadata = {
            "format": "pt",
            "trainctl_config": json.dumps(source.state["config"]),
            "inputs": json.dumps(describe_inputs(source)),
            "outputs": json.dumps(describe_outputs(source)),
        }
        tensors, extra = split_extra_state(model.state_dict())
        if extra:
            metadata[EXTRA_STATE] = json.dumps(extra)
        save_file(unshared(tensors), str(folder / FILE), metadata=metadata)
        architecture = float_architecture(source)
        architecture.load_state_dict(join_extra_state(load_file(str(folder / FILE)), extra), strict=True)
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
            loading=loading_text(model, dequantised) + (extra_state_text(extra) if extra else ""),
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


def float_architecture(source: OpenedRun) -> nn.Module:
    """The run's architecture built afresh from its config (pruned widths restored, int8 left out)."""
    from trainctl.models import build_model

    kept = [r for r in compression_records(source.state) if r["config"]["name"] != "int8"]
    return plain_model(restore_layout(build_model(source.cfg.model, source.data.spec), {"compression": kept}))


def split_extra_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """The state dict's tensors, and its modules' extra state (`<module>._extra_state`: a dict of ids and
    settings) as plain data: a tensor in it is stored as the tensor `<module>._extra_state.<name>`, and
    named in the plain data by that key."""
    tensors, extra = {}, {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
            continue
        plain = {}
        for name, item in dict(value).items():
            if isinstance(item, torch.Tensor):
                tensors[f"{key}.{name}"] = item
                plain[name] = {"tensor": f"{key}.{name}"}
            else:
                plain[name] = item
        extra[key] = plain
    return tensors, extra


def join_extra_state(tensors: dict[str, torch.Tensor], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The state dict again, from what split_extra_state made of it."""
    state: dict[str, Any] = {
        k: v for k, v in tensors.items() if not any(k.startswith(f"{e}.") for e in extra)
    }
    for key, plain in extra.items():
        state[key] = {
            name: tensors[item["tensor"]] if isinstance(item, dict) and "tensor" in item else item
            for name, item in plain.items()
        }
    return state


def extra_state_text(extra: dict[str, dict[str, Any]]) -> str:
    names = ", ".join(f"`{key}`" for key in extra)
    return (
        f"\n\nThe model also keeps plain data ({names}: the raw user and item ids in row order, settings): "
        f"tensors among it are stored as `<key>.<name>` and the rest as JSON in the metadata entry "
        f"`{EXTRA_STATE}`. A user's or item's row is its position in `_extra_state.user_ids` / "
        "`_extra_state.item_ids`."
    )


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
