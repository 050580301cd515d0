"""`trainctl train` and `trainctl plan`: show composition notes, then print the plan or run the job."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainctl.cli.notes import note as show_note


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


def reproduce_run(target: str, overrides: Sequence[str], tolerance: float, other: object = None) -> int:
    """`train --reproduce RUN`: the new run, then the verdict; the exit code (0 reproduced, 1 not).
    `other`: --config, --resume or --dry-run, which do not go with it."""
    from trainctl.errors import TrainctlError
    from trainctl.workflows.reproduce import reproduce

    if other:
        raise TrainctlError(
            "--reproduce trains the run's own config.yaml as a new run",
            fix="drop --config, --resume, --dry-run and --estimate (overrides still apply on top)",
        )

    result = reproduce(target, overrides, tolerance=tolerance, on_note=show_note)
    print("\n".join(result.lines()))
    return 0 if result.ok else 1
