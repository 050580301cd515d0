"""`trainctl train` and `trainctl plan`: show composition notes, then print the plan or run the job."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape


def show_note(note: str) -> None:
    Console(stderr=True).print(f"[yellow]note:[/] {escape(note)}")


def train(
    overrides: Sequence[str],
    *,
    config_file: Path | None = None,
    resume: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run the job (rank 0's summary back), or with `dry_run` print its plan and write nothing."""
    from trainctl import api

    if not dry_run:
        return api.run_job(overrides, config_file=config_file, resume=resume, on_note=show_note)
    from trainctl.cli.show_plan import print_plan

    job = api.plan_job(overrides, config_file=config_file, resume=resume, download=False)
    for note in job.plan.notes:
        show_note(note)
    print_plan(job.plan, job.launcher.describe(job.plan))
    return {}
