"""`trainctl runs ls`: the runs under the runs root with status, main metric, duration and parent."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainctl.errors import TrainctlError
from trainctl.runs.summaries import find_runs, format_duration, format_metric

STATUS_STYLE = {
    "finished": "green",
    "failed": "red",
    "interrupted": "yellow",
    "lost": "red",
    "running": "cyan",
}


def list_runs(root: Path, preset: str | None, console: Console) -> None:
    runs = find_runs(root, preset)
    if not runs:
        where = f" of preset '{preset}'" if preset else ""
        raise TrainctlError(
            f"no runs{where} under {root}", fix="train one first, or set --root / $TRAINCTL_RUNS_DIR"
        )
    table = Table(show_header=True, header_style="bold")
    for column in ("run", "status", "main metric", "duration", "parent", "created"):
        table.add_column(column)
    for run in runs:
        style = STATUS_STYLE.get(run.status, "")
        status = f"[{style}]{run.status}[/]" if style else run.status
        if run.note:
            status += f" ({run.note})"
        table.add_row(
            str(run.id),
            status,
            format_metric(run.metric, run.value),
            format_duration(run.seconds),
            run.parent or "",
            run.created.replace("T", " "),
        )
    console.print(table)
