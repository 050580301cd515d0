"""Export a run: open it, let a format write and load back its files, check them against the run's model,
then describe the folder (README.md, the resolved config, export.json). The run itself is only read.

The folder is assembled beside its destination and moved into place only once every check passed, so a
refused or failed export leaves nothing behind. An earlier export in the same place is replaced, file by
file when the user keeps files of their own there: those are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

import trainctl
from trainctl.data.types import Task
from trainctl.errors import TrainctlError
from trainctl.export import build_exporter
from trainctl.export.base import Artefact, ExportFailed, plain_model, refuse_closed_form, sample_batches
from trainctl.export.inputs import describe_inputs, describe_outputs, inputs_section, test_views
from trainctl.runs.run_dir import RunDir

if TYPE_CHECKING:
    from trainctl.api import OpenedRun

MANIFEST = "export.json"
INT8_GAP = "vs the run's int8 model"  # a dequantised export's distance from the int8 model (unchecked)
CONFIG = "trainctl_config.yaml"  # not config.yaml: an export folder is no run, and hf owns config.json


@dataclass
class ExportResult:
    folder: Path
    format: str
    files: list[str]  # every file of the folder
    agreement: dict[str, float]  # check -> max |difference| to the run's model
    notes: list[str]


def default_folder(run: RunDir, fmt: str, tag: str) -> Path:
    """<runs root>/exports/<preset>/<run>/<format>[-best]: beside the runs, never inside one."""
    name = fmt if tag == "last" else f"{fmt}-{tag}"
    return run.path.parent.parent / "exports" / run.path.parent.name / run.path.name / name


def export_run(source: OpenedRun, fmt: str, *, out: Path | None = None, tag: str = "last") -> ExportResult:
    """Write the opened run's model in format `fmt` to `out` (default: default_folder), checked and
    described."""
    exporter = build_exporter(fmt)
    run = source.run or run_holding(source.checkpoint)
    if run is None:
        raise TrainctlError(
            f"export takes a run, and {source.checkpoint} is a bare checkpoint file",
            fix="give the run directory that holds it, or 'latest'",
        )
    source.run = run
    folder = (out or default_folder(run, fmt, tag)).expanduser().absolute()
    check_destination(folder, run)
    source.model = plain_model(source.model)
    refuse_closed_form(source, fmt)
    exporter.refuse(source)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    missing = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]  # deepest first
    try:
        staging.mkdir(parents=True)
        batches = sample_batches(source)
        try:
            artefact = exporter.write(source, staging, batches[0])
        except (RuntimeError, ValueError) as exc:  # a library that cannot write or load this model back
            raise ExportFailed(
                f"the {fmt} export failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                where=str(source.run.path),
                fix="--format safetensors exports the weights of any model",
            ) from exc
        agreement = check_agreement(source, artefact, batches, exporter.settings.tolerance, fmt)
        notes = artefact.notes + precision_notes(source)
        describe(source, staging, fmt, tag, artefact, agreement, notes)
        publish(staging, folder)
    except OSError as exc:
        raise TrainctlError(
            f"cannot write the export: {exc}", where=str(folder), fix="give a writable folder with --out DIR"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not folder.exists():  # a failed export leaves no empty folders behind either
            for parent in missing:
                with contextlib.suppress(OSError):
                    parent.rmdir()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return ExportResult(folder, fmt, files, agreement, notes)


def run_holding(checkpoint: Path) -> RunDir | None:
    """The run whose checkpoints/ folder holds `checkpoint` (a file of a run named directly), else None."""
    folder = checkpoint.absolute().parent
    run = RunDir(folder.parent)
    return run if folder.name == "checkpoints" and run.config_file.is_file() else None


def check_destination(folder: Path, run: RunDir) -> None:
    """Refuse a destination inside the run (export never changes a run) or a folder of other files."""
    if folder == run.path or run.path in folder.parents:
        raise TrainctlError(
            "the export folder is inside the run, and export never changes a run",
            where=str(folder),
            fix="give --out a folder outside the run directory (or leave it out for the default)",
        )
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not export_files(folder))):
        raise TrainctlError(
            "the export folder exists and is not an earlier export (no export.json): it is left alone",
            where=str(folder),
            fix="give --out a new or empty folder",
        )


def publish(staging: Path, folder: Path) -> None:
    """Move the finished folder into place. Over an earlier export, only that export's own files (named in
    its export.json) are replaced or removed: any other file there is the user's and stays as it is."""
    if not folder.exists():
        os.replace(staging, folder)
        return
    new = files_under(staging)
    earlier = export_files(folder)
    foreign = files_under(folder) - earlier
    if not foreign:
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
        return
    clash = sorted(foreign & new)
    if clash:
        raise TrainctlError(
            f"the export would overwrite {', '.join(clash)}, which the earlier export there did not write; "
            "nothing was changed",
            where=str(folder),
            fix="move those files elsewhere, or give --out a new folder",
        )
    for name in sorted(earlier - new):
        (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a folder the earlier export made, now empty
            for parent in (folder / name).parents:
                if parent == folder:
                    break
                parent.rmdir()
    for name in sorted(new):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, folder / name)


def files_under(folder: Path) -> set[str]:
    """Every file below `folder`, relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def export_files(folder: Path) -> set[str]:
    """The files an earlier export wrote in `folder` (as its export.json names them); empty when the folder
    holds no readable export.json."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        named = {str(name) for name in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return named | {MANIFEST, CONFIG, "README.md"}


def max_difference(expected: list[torch.Tensor], actual: list[torch.Tensor]) -> float:
    """The largest |expected - actual| over the batches; a shape that differs fails the export."""
    for e, a in zip(expected, actual, strict=True):
        if e.shape != a.shape:
            raise ExportFailed(
                f"the export returns shape {tuple(a.shape)} where the run's model {tuple(e.shape)}"
            )
    return max(float((e - a).abs().max()) for e, a in zip(expected, actual, strict=True))


def check_agreement(
    source: OpenedRun, artefact: Artefact, batches: list[torch.Tensor], tolerance: float, fmt: str
) -> dict[str, float]:
    """Max |difference| between the loaded export and the run's model on test batches of two sizes:
    outputs, class probabilities and, when the run evaluates test-time views, their mean probabilities.
    Outputs may differ by `tolerance` times their largest magnitude (at least 1), probabilities by
    `tolerance`; a half-precision model computes with less: 4 epsilons of its type when that is more.
    A dequantised int8 export also reports (unchecked) how far it is from the int8 model."""
    reference = artefact.reference or source.model
    tolerance = max(tolerance, 4 * compute_epsilon(reference))

    def run_export(inputs: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(artefact.loaded(inputs)).float()

    with torch.no_grad():
        expected = [reference(b).float() for b in batches]
        actual = [run_export(b) for b in batches]
        largest = max(float(e.abs().max()) for e in expected)
        checked = {"outputs": (max_difference(expected, actual), tolerance * max(1.0, largest))}
        if source.data.spec.task is Task.classification:
            probabilities = max_difference([e.softmax(-1) for e in expected], [a.softmax(-1) for a in actual])
            checked["probabilities"] = (probabilities, tolerance)
        views = test_views(source) if artefact.reference is None else None
        if views is not None:
            evaluated = [views(b).float().exp() for b in batches]
            averaged = [
                torch.stack([run_export(v).softmax(-1) for v in views.views(b)]).mean(0) for b in batches
            ]
            checked["test-time views"] = (max_difference(evaluated, averaged), tolerance)
        figures = {name: value for name, (value, _) in checked.items()}
        if artefact.reference is not None:
            figures[INT8_GAP] = max_difference([source.model(b).float() for b in batches], actual)
    for name, (value, limit) in checked.items():
        if not value <= limit:  # NaN fails too
            raise ExportFailed(
                f"the {fmt} export does not reproduce the run's model: {name} differ by up to {value:.3g} "
                f"(allowed {limit:.3g}); nothing was written",
                where=str(source.run.path),
                fix="report this with the run's config; --format safetensors keeps the plain weights",
            )
    return figures


def compute_epsilon(model: torch.nn.Module) -> float:
    """The machine epsilon of the model's lowest-precision float weights (0 for float32 and wider)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    half = [torch.finfo(d).eps for d in dtypes if torch.finfo(d).bits < 32]
    return max(half, default=0.0)


def precision_notes(source: OpenedRun) -> list[str]:
    epsilon = compute_epsilon(source.model)
    if epsilon:
        return [
            f"The model's weights are half precision: the checks allow differences of {4 * epsilon:.1e} "
            "(4 epsilons of its type), as two runtimes round such sums differently."
        ]
    precision = str(getattr(source.cfg.trainer.precision, "value", source.cfg.trainer.precision))
    if precision == "fp32" or source.state.get("compression"):
        return []
    return [
        f"The run trained and evaluates under {precision} autocast; the export holds its float32 weights "
        f"and computes in float32, so `trainctl eval`/`predict` differ from it by {precision} rounding "
        "(the checks above compare float32 with float32)."
    ]


def describe(
    source: OpenedRun,
    folder: Path,
    fmt: str,
    tag: str,
    artefact: Artefact,
    agreement: dict[str, float],
    notes: list[str],
) -> None:
    """README.md, the resolved config and export.json beside the artefact."""
    (folder / CONFIG).write_text(yaml.safe_dump(source.state["config"], sort_keys=False))
    parameters = sum(p.numel() for p in source.model.parameters())
    manifest: dict[str, Any] = {
        "format": fmt,
        "run": source.id,
        "run_dir": str(source.run.path),
        "checkpoint": str(source.checkpoint),
        "tag": tag,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "trainctl": trainctl.__version__,
        "torch": torch.__version__,
        "model": source.cfg.model.name,
        "parameters": parameters,
        "compression": [r["config"] for r in source.state.get("compression") or []],
        "files": sorted(artefact.files),
        "inputs": describe_inputs(source),
        "outputs": describe_outputs(source),
        "max_abs_difference": agreement,
        "notes": notes,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "README.md").write_text(readme(source, manifest, artefact))


def readme(source: OpenedRun, manifest: dict[str, Any], artefact: Artefact) -> str:
    files = "\n".join(f"- `{name}`" for name in manifest["files"])
    checks = "\n".join(f"| {name} | {value:.2e} |" for name, value in manifest["max_abs_difference"].items())
    notes = "".join(f"- {note}\n" for note in manifest["notes"])
    return (
        f"# {manifest['run']}: {manifest['format']} export\n\n"
        f"The `{manifest['tag']}` checkpoint of run `{manifest['run']}` ({manifest['model']}, "
        f"{manifest['parameters']:,} parameters, data set `{source.cfg.data.name}`), exported by trainctl "
        f"{manifest['trainctl']} with torch {manifest['torch']} on {manifest['exported']}.\n\n"
        f"## Files\n\n{files}\n- `{CONFIG}`: the run's resolved config\n"
        f"- `{MANIFEST}`: these facts for scripts (inputs, outputs, checks)\n\n"
        f"## How to load\n\n{artefact.loading.strip()}\n\n"
        f"## Inputs and outputs\n\n{inputs_section(source)}\n\n"
        "## Checked at export\n\n"
        "The files above, loaded back by their own library, against the run's model on two batches of "
        "its test split (max |difference|):\n\n"
        f"| check | max abs difference |\n|---|---|\n{checks}\n" + (f"\n## Notes\n\n{notes}" if notes else "")
    )
