"""`trainctl runs ls`: the runs under the runs root with status, main metric, duration and parent
(a table whose ids wrap whole, or JSON for scripts)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trainctl.errors import TrainctlError
from trainctl.runs.summaries import RunSummary, find_runs, format_duration, format_metric

STATUS_MIN, METRIC_MIN, DATE_MIN = 11, 14, 10  # "interrupted", "accuracy 99.9%", "2026-01-01"
OTHER_COLUMNS_MIN = 32  # status, metric and date wrapped at their spaces, and the padding
STATUS_STYLE = {
    "finished": "green",
    "failed": "red",
    "interrupted": "yellow",
    "stale": "red",
    "killed": "red",
    "disk full": "red",
    "stalled": "red",
    "running": "cyan",
}


def list_runs(root: Path, preset: str | None, console: Console, as_json: bool = False) -> None:
    runs = find_runs(root, preset)
    if as_json:  # an empty list is an answer for a script, not an error
        console.print_json(json.dumps([run_record(run) for run in runs]))
        return
    if not runs:
        where = f" of preset '{preset}'" if preset else ""
        raise TrainctlError(
            f"no runs{where} under {root}", fix="train one first, or set --root / $TRAINCTL_RUNS_DIR"
        )
    console.print(runs_table(runs, console.width))


def run_record(run: RunSummary) -> dict[str, Any]:
    """One run for `runs ls --json`: every field of the listing, the path absolute."""
    return asdict(run) | {"path": str(run.path.resolve())}


def runs_table(runs: list[RunSummary], width: int = 80) -> Table:
    """Newest first, narrow enough for 80 columns. Status, main metric and date keep a readable width
    (they wrap at their spaces); run and parent ids fold onto more lines when they cannot have a line to
    themselves. Nothing is cut, and no column is squeezed to a letter a line."""
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2, 0, 0), pad_edge=False)
    with_parent = any(run.parent for run in runs)
    ids = max(len(run.id) for run in runs) + (
        max(len(run.parent or "") for run in runs) + 2 if with_parent else 0
    )
    keep_whole = ids + OTHER_COLUMNS_MIN <= width
    table.add_column("run", overflow="fold", no_wrap=keep_whole)  # no_wrap: the others give way first
    table.add_column("status", overflow="fold", min_width=STATUS_MIN)
    table.add_column("main metric", overflow="fold", min_width=METRIC_MIN)
    if with_parent:
        table.add_column("parent", overflow="fold", no_wrap=keep_whole)
    table.add_column("created", overflow="fold", min_width=DATE_MIN)
    for run in runs:
        style = STATUS_STYLE.get(run.status, "")
        status = f"[{style}]{run.status}[/]" if style else run.status
        status += f" {format_duration(run.seconds)}" if run.seconds is not None else ""
        if run.note:
            status += f" ({run.note})"
        row = [str(run.id), status, format_metric(run.metric, run.value)]
        row += [run.parent or ""] if with_parent else []
        table.add_row(*row, run.created.replace("T", " ")[:16])
    return table
