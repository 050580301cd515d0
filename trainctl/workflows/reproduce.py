"""`train --reproduce RUN`: train RUN's saved config again (its recorded world shape included) through the
one job path, then compare the two runs' metrics and records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from trainctl.runs.compare import RunsDiff, compare, explaining
from trainctl.runs.run_dir import RunDir, default_runs_root, resolve_run

SHOWN = 20  # record differences listed under a failed reproduction


@dataclass
class Reproduction:
    """The original run, its rerun and what differs; `ok`: identical, or within the tolerance."""

    diff: RunsDiff
    tolerance: float

    @property
    def identical(self) -> bool:
        return self.diff.parting is None

    @property
    def ok(self) -> bool:
        return self.identical  # `compare` already allowed the tolerance

    def lines(self) -> list[str]:
        """The verdict for people: bit-identical, within the tolerance, or where and by how much it
        parts, with the record's differences that may explain it."""
        diff, count = self.diff, self.diff.compared_records
        head = [f"original:   {diff.a.path}", f"reproduced: {diff.b.path}"]
        if self.identical and self.tolerance == 0:
            return [
                *head,
                f"reproduced: bit-identical metrics ({count} records: train loss and lr at every "
                "logged step, every evaluation)",
            ]
        if self.identical:
            return [
                *head,
                f"reproduced within --tolerance {self.tolerance:g} (relative) over {count} records",
            ]
        part = diff.parting
        assert part is not None
        if part.field in ("records", "step"):
            what = (
                f"the runs logged different records from step {part.step} ({part.kind}: {part.a} vs {part.b})"
            )
        else:
            what = (
                f"first difference at step {part.step}: {part.kind} {part.field} {part.a!r} vs {part.b!r}, "
                f"|difference| {part.size:.3g}"
                + (f" ({part.relative:.2e} relative)" if part.relative is not None else "")
            )
        lines = [*head, f"NOT reproduced (tolerance {self.tolerance:g}): {what}"]
        causes = explaining(diff)
        if causes:
            lines += ["record differences that may explain it:", *(f"  {cause}" for cause in causes[:SHOWN])]
            if len(causes) > SHOWN:
                lines.append(
                    f"  ... and {len(causes) - SHOWN} more (trainctl runs diff {diff.a.path} {diff.b.path})"
                )
        elif diff.missing_record:
            lines.append(
                "the original run has no record to compare code, environment, hardware and data with"
            )
        else:
            lines.append(
                "config, code, environment, hardware and data are the same: the job itself is not "
                "deterministic (unseeded randomness, non-deterministic kernels, thread timing)"
            )
        return lines


def reproduce(
    target: str,
    overrides: Sequence[str] = (),
    *,
    tolerance: float = 0.0,
    on_note: Callable[[str], None] = lambda note: None,
) -> Reproduction:
    """Train `target`'s config.yaml again as a new run (with `overrides` on top), then compare the two."""
    from trainctl.api import run_job

    original = resolve_run(target, default_runs_root())
    saved = OmegaConf.load(original.config_file)
    summary = run_job(overrides, base=saved, on_note=on_note)
    rerun = RunDir(Path(summary["run dir"]))
    return Reproduction(compare(original, rerun, tolerance), tolerance)
