"""What every export format provides (an Exporter) and what it gets: the run, sample inputs, shared facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainctl.compress.stored import compression_records
from trainctl.errors import TrainctlError

if TYPE_CHECKING:
    from torch import nn

    from trainctl.api import OpenedRun

SAMPLE_SIZES = (8, 3)  # two batches of different sizes (and, for text, different lengths) check an export


class ExportFailed(TrainctlError):
    """An export was written but does not reproduce the run's model: exit code 1, nothing is kept."""

    exit_code = 1


@dataclass
class ExportSettings:
    """What every format checks against: the largest difference its outputs may have from the run's."""

    tolerance: float = 1e-4  # max |difference| of outputs (logits) and class probabilities; > 0


@dataclass
class Artefact:
    """What a format wrote, loaded back through its own client, and how a user loads it."""

    files: list[str]  # written into the export folder, relative to it
    loaded: Callable[[torch.Tensor], torch.Tensor]  # the files as their client runs them: inputs -> outputs
    loading: str  # the README's "How to load" section (markdown)
    reference: nn.Module | None = None  # the float model the files hold when it is not the run's own
    notes: list[str] = field(default_factory=list)  # for the README and the command's output


class Exporter:
    """One export format: refuse what it cannot export before anything is written, then write."""

    name: str = ""

    def __init__(self, settings: ExportSettings) -> None:
        self.settings = settings

    def refuse(self, source: OpenedRun) -> None:
        """Raise a TrainctlError (exit 2, with what to do instead) when this run cannot be exported."""
        quantized = int8_kind(source)
        if quantized is not None:
            raise TrainctlError(
                f"--format {self.name} cannot export this {quantized} int8 model: torch.export, which every "
                "exporter but safetensors goes through, cannot trace torch.ao's packed int8 layers",
                where=str(source.run.path),
                fix=f"{export_parent_hint(source, self.name)}, then quantize it for the runtime that "
                "loads it (ONNX: onnxruntime.quantization.quantize_dynamic); or use --format safetensors"
                + (" for the dequantised int8 weights" if quantized == "dynamic" else " on the parent run"),
            )

    def write(self, source: OpenedRun, folder: Path, example: torch.Tensor) -> Artefact:
        raise NotImplementedError


def refuse_closed_form(source: OpenedRun, fmt: str) -> None:
    """Refuse (exit 2) a run fitted in closed form (EASE, item-kNN): an item-item matrix applied to a user's
    whole row of ratings, with no forward pass that a format could hold or an export check could run."""
    if source.cfg.recipe != "closed_form":
        return
    model = source.cfg.model.name
    arrays = (
        "'weights' (items x items)" if model == "ease" else "'ptr', 'neighbours', 'similarities' (CSR rows)"
    )
    raise TrainctlError(
        f"--format {fmt} cannot export this {model} run: {model} is fitted in closed form (an item-item "
        "matrix applied to a user's whole row of ratings), with no forward pass to export or check",
        where=str(source.run.path),
        fix=f"recommend from the run itself: trainctl recommend --run {source.run.path} --user ID; its "
        f"fitted arrays are in the checkpoint: torch.load('{source.checkpoint}', weights_only=True)"
        f"['model'], keys {arrays} and '_extra_state' (the raw ids in row order)",
    )


def int8_kind(source: OpenedRun) -> str | None:
    """'dynamic' or 'static' when the run's model went through an int8 pass, else None."""
    names = [record["config"]["name"] for record in compression_records(source.state)]
    if "int8_static" in names:
        return "static"
    return "dynamic" if "int8" in names else None


def export_parent_hint(source: OpenedRun, fmt: str) -> str:
    """'export the run it was compressed from: trainctl export PARENT --format FMT' (parent when known)."""
    parent = source.run.read_meta().get("parent")
    where = source.run.path.parent.parent / parent if parent else Path("PARENT_RUN")
    return f"export the float run it was compressed from: trainctl export {where} --format {fmt}"


def text_inputs(source: OpenedRun) -> bool:
    """The model reads token ids (a text run)."""
    return source.data.spec.pad_token_id is not None


def sample_batches(source: OpenedRun) -> list[torch.Tensor]:
    """Inputs of the test split (the train split when the test split is empty) in batches of
    SAMPLE_SIZES samples; token batches are trimmed to their longest sequence, as evaluation does."""
    split = source.data.test if len(source.data.test) else source.data.train
    batches = []
    for i, size in enumerate(SAMPLE_SIZES):
        start = 0 if i == 0 else max(0, len(split) - size)  # the last rows: other lengths for text
        index = torch.arange(start, min(start + size, len(split)))
        if len(index) < 2:  # exporters specialise a batch of one; two rows keep the batch size dynamic
            index = index.repeat(2)[:2]
        batches.append(split.batch(index)[0])
    return batches


def dynamic_shapes(source: OpenedRun) -> tuple[dict[int, Any]]:
    """torch.export's dynamic dimensions of the one input: the batch; the sequence too for token ids."""
    batch = torch.export.Dim("batch", min=1)
    if not text_inputs(source):
        return ({0: batch},)
    max_length = int(getattr(source.cfg.model, "max_length", 0) or source.data.spec.input_shape[0])
    return ({0: batch, 1: torch.export.Dim("sequence", min=2, max=max_length)},)


def input_name(source: OpenedRun) -> str:
    return "input_ids" if text_inputs(source) else "input"


def save_tokenizer(source: OpenedRun, folder: Path) -> list[str]:
    """The run's tokenizer files in `folder`, truncating to the run's max_length (text runs; else none)."""
    if not text_inputs(source):
        return []
    from trainctl.data.tokens import load_tokenizer, pretrained_folder

    key = "data.tokenizer (model.pretrained)"
    tokenizer = load_tokenizer(pretrained_folder(source.cfg.data.tokenizer, key), key)
    tokenizer.model_max_length = int(source.cfg.data.max_length)  # as `trainctl predict` truncates
    before = set(folder.iterdir())
    tokenizer.save_pretrained(str(folder))
    return sorted(p.name for p in set(folder.iterdir()) - before)


def plain_model(model: nn.Module) -> nn.Module:
    """`model` on the CPU in eval mode, with no gradients recorded by its parameters."""
    return model.cpu().eval().requires_grad_(False)
