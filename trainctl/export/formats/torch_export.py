"""`--format torch-export`: the model as a torch.export program (.pt2) with a dynamic batch (and sequence)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainctl.export import FORMATS
from trainctl.export.base import (
    Artefact,
    Exporter,
    ExportSettings,
    dynamic_shapes,
    save_tokenizer,
    text_inputs,
)
from trainctl.export.tracing import quiet_tracing

if TYPE_CHECKING:
    from trainctl.api import OpenedRun

FILE = "model.pt2"


@dataclass
class TorchExportSettings(ExportSettings):
    pass


class TorchExportExporter(Exporter):
    name = "torch-export"

    def write(self, source: OpenedRun, folder: Path, example: torch.Tensor) -> Artefact:
        with quiet_tracing(source, self.name):
            program = torch.export.export(source.model, (example,), dynamic_shapes=dynamic_shapes(source))
        torch.export.save(program, str(folder / FILE))
        loaded = torch.export.load(str(folder / FILE)).module()
        dims = "batch size and sequence length are" if text_inputs(source) else "batch size is"
        return Artefact(
            files=[FILE, *save_tokenizer(source, folder)],
            loaded=loaded,
            loading=(
                "```python\nimport torch\n\n"
                f'program = torch.export.load("{FILE}")  # an ExportedProgram; needs torch '
                f"{torch.__version__.split('+')[0]} or newer\n"
                "model = program.module()\n"
                "with torch.no_grad():\n    outputs = model(inputs)\n```\n\n"
                f"The {dims} dynamic. The program can be compiled further (AOTInductor, ExecuTorch)."
            ),
        )


@FORMATS.register("torch-export", TorchExportSettings)
def build_torch_export(settings: TorchExportSettings) -> TorchExportExporter:
    return TorchExportExporter(settings)
