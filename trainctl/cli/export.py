"""`trainctl export`: write a run's model for other tools; print where, and how well it agrees."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from trainctl.api import open_run
from trainctl.cli.notes import note as show_note
from trainctl.export.job import export_run
from trainctl.runs.manifest import CheckpointCorrupted


def export_command(target: str, fmt: str, out: Path | None, tag: str) -> None:
    try:
        source = open_run(target, tag=tag, note=show_note)
    except CheckpointCorrupted as exc:
        if exc.intact is not None:  # the commands that apply here: export that checkpoint
            exc.fix = f"export the newest intact checkpoint instead: trainctl export {exc.intact} -f {fmt}"
        raise
    result = export_run(source, fmt, out=out, tag=tag if source.run else source.checkpoint.stem)
    console = Console(soft_wrap=True)
    console.print(f"exported {fmt} to {escape(str(result.folder))}")
    for name in result.files:
        console.print(f"  {escape(name)}")
    figures = ", ".join(f"{name} {value:.1e}" for name, value in result.agreement.items())
    console.print(f"checked against the run's model (max |difference|): {figures}")
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"how to load it: {escape(str(result.folder / 'README.md'))}")
