"""`trainctl eval`: a run's model measured on its test split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def evaluate_checkpoint(target: str, overrides: Sequence[str], *, tag: str = "last") -> dict[str, Any]:
    """Loss and metrics of a checkpoint on its data set's test split."""
    from trainctl.api import open_run

    run = open_run(target, tag=tag, overrides=overrides)
    return {"checkpoint": str(run.checkpoint), "samples": len(run.data.test), **run.evaluate()}
