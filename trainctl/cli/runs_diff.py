"""`trainctl runs diff A B`: what differs between two runs, section by section, as text, JSON or a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainctl.runs.compare import SECTIONS, Change, Parting, RunsDiff, compare
from trainctl.runs.metrics import metric_value
from trainctl.runs.run_dir import RunDir, default_runs_root, resolve_run

SHOWN_CHANGES = 40  # per section; the rest are counted (--json has them all)


def shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k} {shown(v)}" for k, v in value.items())
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def change_lines(changes: list[Change]) -> list[str]:
    lines = [f"  {c.key}: {shown(c.a)} -> {shown(c.b)}" for c in changes[:SHOWN_CHANGES]]
    if len(changes) > SHOWN_CHANGES:
        lines.append(f"  ... and {len(changes) - SHOWN_CHANGES} more (--json lists them all)")
    return lines


def parting_text(parting: Parting) -> str:
    if parting.field in ("records", "step"):
        return f"step {parting.step}: {parting.kind} records {shown(parting.a)} vs {shown(parting.b)}"
    size = f", |difference| {parting.size:.3g}" if parting.size is not None else ""
    rel = f" ({parting.relative:.2e} relative)" if parting.relative is not None else ""
    values = f"{shown(parting.a)} vs {shown(parting.b)}"
    return f"step {parting.step}: {parting.kind} {parting.field} {values}{size}{rel}"


def parting_lines(diff: RunsDiff) -> list[str]:
    """Where the loss curves part, and the first difference of any metric when it comes earlier."""
    if diff.parting is None:
        return [f"  curves: identical (bit for bit) over {diff.compared_records} metric records"]
    loss = diff.loss_parting
    lines = [f"  loss curves part at {parting_text(loss)}" if loss else "  loss curves: identical"]
    if loss is None or (diff.parting.step, diff.parting.field) != (loss.step, loss.field):
        lines.append(f"  first difference of any metric at {parting_text(diff.parting)}")
    return lines


def result_lines(diff: RunsDiff) -> list[str]:
    a, b = diff.results.get("a", {}), diff.results.get("b", {})
    lines = []
    for name in list(dict.fromkeys([*a, *b])):
        for which in ("final", "best"):
            va, vb = a.get(name, {}).get(which), b.get(name, {}).get(which)
            text_a = metric_value(name, va, ".6g") if va is not None else "-"
            text_b = metric_value(name, vb, ".6g") if vb is not None else "-"
            mark = "" if va == vb else "  *"
            lines.append(f"  {which} test {name}: {text_a} -> {text_b}{mark}")
    return [*lines, *parting_lines(diff)]


def text_report(diff: RunsDiff) -> str:
    """The diff for people: each section with its changes (A's value -> B's), then the results."""
    lines = [f"A: {diff.a.path}", f"B: {diff.b.path}"]
    for path in diff.missing_record:
        lines.append(
            f"note: no record in {path} (trained before records were kept): code, environment, "
            "hardware and data cannot be compared"
        )
    for section in SECTIONS:
        found = diff.sections.get(section, [])
        lines.append(f"{section}: {len(found)} difference(s)" if found else f"{section}: no difference")
        lines += change_lines(found)
    lines.append("results:")
    lines += result_lines(diff)
    return "\n".join(lines)


def plot(diff: RunsDiff, path: Path) -> Path:
    """Both runs' loss curves on shared axes (as `trainctl report` draws them), the parting step marked."""
    from trainctl.cli.report import figures, label_runs, load
    from trainctl.observe.plots import draw

    runs = [load(diff.a), load(diff.b)]
    label_runs(runs)
    for run, name in zip(runs, ("A", "B"), strict=True):
        run.label = f"{name}: {run.label}"
    loss = figures(runs)[0]
    if diff.loss_parting is not None:
        loss.marks.append((diff.loss_parting.step, f"loss curves part (step {diff.loss_parting.step})"))
    return draw(loss, path)


def runs_diff(first: str, second: str, *, as_json: bool = False, plot_file: Path | None = None) -> str:
    """The report of `trainctl runs diff` (text or JSON); with `plot_file`, the curves are drawn there."""
    root = default_runs_root()
    a, b = resolve_run(first, root), resolve_run(second, root)
    diff = compare(RunDir(a.path), RunDir(b.path))
    if plot_file is not None:
        plot(diff, plot_file)
    if as_json:
        return json.dumps(diff.as_dict(), indent=2, default=str)
    return text_report(diff) + (f"\nwrote {plot_file}" if plot_file is not None else "")
