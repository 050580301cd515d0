"""Run identity under a cluster id: the same job continues its unfinished run; nothing else reuses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainctl.errors import TrainctlError
from trainctl.runs.lock import refuse_if_in_use
from trainctl.runs.run_dir import RunDir, named_run_dir

# How the job was started may change between a run and its requeue (another head node, another
# launcher writing the same run dir: slurm at submission, multinode inside the job); what it trains
# may not.
IGNORED_SECTIONS = ("launcher",)


@dataclass(frozen=True)
class ClaimedRun:
    """The run dir a cluster id maps to, and the checkpoint to continue from (None: from the start)."""

    run: RunDir
    resume_from: Path | None


def differing_keys(saved: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config trees (sections in IGNORED_SECTIONS skipped)."""
    if isinstance(saved, dict) and isinstance(new, dict):
        keys = [k for k in {**saved, **new} if not (not prefix and k in IGNORED_SECTIONS)]
        return [d for k in keys for d in differing_keys(saved.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if saved == new else [prefix.rstrip(".")]


def claim_run(path: Path, tree: dict[str, Any], cluster_id: str) -> ClaimedRun:
    """The run at `path` for a job known by `cluster_id` (e.g. "torchrun --rdzv-id exp1").

    A new id makes the dir. The same id with the same config and an unfinished run is the same job
    (a requeue, a restarted node): it continues from the last checkpoint. A finished run, or another
    config, is refused with exit 2 before anything is written, so that the old run stays byte for byte
    as it was: every node and rank decides this alone, and refusing is the one answer they can all
    reach without talking to each other (a fresh dir would need them to agree on its name).
    """
    run = RunDir(path)
    if not run.config_file.is_file():  # new, or made a moment ago by another node of this job
        return ClaimedRun(named_run_dir(path), None)
    refuse_if_in_use(run, f"use it for {cluster_id}")  # a live job holds it: name that job first
    try:
        saved = yaml.safe_load(run.config_file.read_text()) or {}
    except yaml.YAMLError:
        saved = {}
    status = run.read_meta().get("status", "unknown")
    if status == "finished":
        raise TrainctlError(
            f"{cluster_id} names a run that has finished; it is left as it was",
            where=str(path),
            fix=f"use a new id for a new run, or continue this one with: trainctl train --resume {path} "
            "trainer.epochs=N",
        )
    changed = differing_keys(saved, tree)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise TrainctlError(
            f"{cluster_id} names a run ({status}) with another config: {shown} differ; it is left as it was",
            where=str(path),
            fix="use a new id for a new run, or the run's own config to continue it: "
            f"--config {run.config_file}",
        )
    last = run.checkpoint("last")
    return ClaimedRun(named_run_dir(path), last if last.is_file() else None)
