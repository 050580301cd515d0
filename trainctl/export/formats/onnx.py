"""`--format onnx`: the model as an ONNX graph with a dynamic batch (and sequence), run by onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainctl.data.types import Task
from trainctl.errors import TrainctlError
from trainctl.export import FORMATS
from trainctl.export.base import (
    Artefact,
    Exporter,
    ExportFailed,
    ExportSettings,
    dynamic_shapes,
    export_parent_hint,
    input_name,
    save_tokenizer,
    text_inputs,
)
from trainctl.export.tracing import quiet_tracing

if TYPE_CHECKING:
    from trainctl.compress.job import LoadedRun

FILE = "model.onnx"
SINGLE_FILE_BYTES = 1_800_000_000  # protobuf's 2 GiB limit: larger weights go to model.onnx.data


@dataclass
class OnnxSettings(ExportSettings):
    opset: int | None = None  # ONNX opset version; null: torch.onnx's default


class OnnxExporter(Exporter):
    name = "onnx"
    settings: OnnxSettings

    def refuse(self, source: LoadedRun) -> None:
        super().refuse(source)
        if any(p.dtype is torch.bfloat16 for p in source.model.parameters()):
            raise TrainctlError(
                "--format onnx cannot export this bfloat16 model: onnxruntime's CPU kernels do not run "
                "bfloat16 (Gemm, Conv), so the export could neither be checked nor run on a CPU",
                where=str(source.run.path),
                fix=f"{export_parent_hint(source, self.name)} (float32), or compress that run with "
                "--quantize fp16, which onnxruntime runs; --format torch-export and safetensors keep bf16",
            )

    def write(self, source: LoadedRun, folder: Path, example: torch.Tensor) -> Artefact:
        try:
            import onnxruntime
        except ImportError:
            raise TrainctlError(
                "--format onnx needs the onnx, onnxscript and onnxruntime packages",
                fix="pip install 'trainctl[export]'",
            ) from None
        name = input_name(source)
        output = "logits" if source.data.spec.task is Task.classification else "output"
        weight_bytes = sum(p.numel() * p.element_size() for p in source.model.parameters())
        with quiet_tracing(source, self.name):
            torch.onnx.export(
                source.model,
                (example,),
                str(folder / FILE),
                dynamo=True,
                dynamic_shapes=dynamic_shapes(source),
                input_names=[name],
                output_names=[output],
                opset_version=self.settings.opset,
                external_data=weight_bytes > SINGLE_FILE_BYTES,
                verbose=False,
            )
        files = sorted(p.name for p in folder.iterdir())
        try:
            session = onnxruntime.InferenceSession(str(folder / FILE), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportFailed(
                f"onnxruntime cannot load the exported graph: {str(exc).splitlines()[0]}",
                where=str(source.run.path),
                fix="--format torch-export or safetensors export this model without onnxruntime",
            ) from None

        def run(inputs: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run([output], {name: inputs.numpy()})[0])

        dims = "(batch, sequence)" if text_inputs(source) else "the batch dimension"
        return Artefact(
            files=[*files, *save_tokenizer(source, folder)],
            loaded=run,
            loading=(
                "```python\nimport onnxruntime as ort\n\n"
                f'session = ort.InferenceSession("{FILE}", providers=["CPUExecutionProvider"])\n'
                f'{output} = session.run(["{output}"], {{"{name}": inputs}})[0]  # inputs: a numpy array\n'
                f"```\n\nInput `{name}`, output `{output}`; {dims} dynamic."
            ),
        )


@FORMATS.register("onnx", OnnxSettings)
def build_onnx(settings: OnnxSettings) -> OnnxExporter:
    return OnnxExporter(settings)
