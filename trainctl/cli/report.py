"""`trainctl report`: PNG plots of one or more runs on shared axes and a markdown summary beside them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainctl.errors import TrainctlError
from trainctl.observe.plots import Figure, Series, draw
from trainctl.runs.run_dir import RunDir, default_runs_root, resolve_run
from trainctl.runs.summaries import RunSummary, format_duration, format_metric, read_metrics, summarize

NOT_LABELS = {"run.root", "data.root"}  # differ between machines, not between experiments
TRAIN_FIELDS = {"loss": "train loss", "lr": "learning rate", "samples_per_s": "samples/s"}
EVAL_SKIP = {"kind", "step", "epoch", "split", "seconds", "rank", "time"}


@dataclass
class ReportedRun:
    """A run's files as the report needs them."""

    run: RunDir
    summary: RunSummary
    records: list[dict[str, Any]]
    config: dict[str, Any]
    label: str = ""

    def train(self, key: str) -> tuple[list[float], list[float]]:
        rows = [r for r in self.records if r.get("kind") == "train" and key in r]
        return [r["step"] for r in rows], [r[key] for r in rows]

    def evals(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "eval"]


def expand_targets(targets: Sequence[str], root: Path) -> list[RunDir]:
    """Run directories from paths or 'latest'; a sweep directory stands for its jobs."""
    runs: list[RunDir] = []
    for target in targets:
        path = Path(target)
        if (path / "sweep.json").is_file():
            jobs = sorted(p.parent for p in path.glob("*/run.json"))
            runs += [RunDir(job.resolve()) for job in jobs if (job / "config.yaml").is_file()]
            continue
        runs.append(resolve_run(target, root))
    if not runs:
        raise TrainctlError("no runs to report on", fix="give run directories, 'latest' or a sweep directory")
    return list(dict.fromkeys(runs))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def label_runs(runs: list[ReportedRun]) -> None:
    """Label each run by the config values that differ between the runs (else by its id)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f} - NOT_LABELS)
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    for run, values in zip(runs, flat, strict=True):
        parts = [f"{k}={values.get(k)}" for k in differing]
        run.label = " ".join(parts)[:80] if parts else run.summary.id
    seen: dict[str, int] = {}
    for run in runs:  # identical configs: tell them apart by id
        seen[run.label] = seen.get(run.label, 0) + 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = f"{run.label} ({run.summary.id})" if run.label != run.summary.id else run.label


def load(run: RunDir) -> ReportedRun:
    config = yaml.safe_load(run.config_file.read_text()) if run.config_file.is_file() else {}
    return ReportedRun(run, summarize(run.path), read_metrics(run.metrics_file), config or {})


def figures(runs: list[ReportedRun]) -> list[Figure]:
    """Loss (train lines, test markers), every evaluation metric, learning rate and samples/s."""
    loss = Figure("loss", "loss", "loss", log_y=True)
    for index, run in enumerate(runs):
        loss.series.append(Series(f"{run.label} train", *run.train("loss"), color=index))
        evals = run.evals()
        if evals and "loss" in evals[0]:
            steps, values = [e["step"] for e in evals], [e["loss"] for e in evals]
            loss.series.append(Series(f"{run.label} test", steps, values, markers=True, color=index))
    metric_names = list(dict.fromkeys(k for r in runs for e in r.evals() for k in e if k not in EVAL_SKIP))
    shown = [loss]
    for name in [m for m in metric_names if m != "loss"]:
        figure = Figure(name, f"test {name}", name)
        for run in runs:
            points = [e for e in run.evals() if name in e]
            if points:
                figure.series.append(
                    Series(run.label, [e["step"] for e in points], [e[name] for e in points], True)
                )
        shown.append(figure)
    for key in ("lr", "samples_per_s"):
        figure = Figure(key, TRAIN_FIELDS[key], TRAIN_FIELDS[key])
        figure.series = [Series(run.label, *run.train(key)) for run in runs]
        shown.append(figure)
    return shown


def markdown(runs: list[ReportedRun], images: list[Path], out: Path) -> str:
    lines = [f"# trainctl report ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    lines += [
        "| label | run | status | steps | duration | final train loss | last test metrics |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        steps, losses = run.train("loss")
        evals = run.evals()
        last = {k: v for k, v in evals[-1].items() if k not in EVAL_SKIP} if evals else {}
        tested = ", ".join(format_metric(k, v) for k, v in last.items()) or "-"
        lines.append(
            f"| {run.label} | `{run.run.path}` | {run.summary.status} | {int(steps[-1]) if steps else 0} | "
            f"{format_duration(run.summary.seconds)} | {f'{losses[-1]:.4g}' if losses else '-'} | {tested} |"
        )
    lines.append("")
    for image in images:
        lines += [f"## {image.stem}", "", f"![{image.stem}]({image.relative_to(out)})", ""]
    return "\n".join(lines)


def report(targets: Sequence[str], out: Path | None = None) -> Path:
    """Draw the plots and write report.md; returns the report file."""
    root = default_runs_root()
    runs = [load(run) for run in expand_targets(targets, root)]
    if out is None:
        out = (
            runs[0].run.path / "report"
            if len(runs) == 1
            else root / "reports" / time.strftime("%Y%m%d-%H%M%S")
        )
    label_runs(runs)
    images = [draw(figure, out / f"{figure.name}.png") for figure in figures(runs) if figure.series]
    path = out / "report.md"
    path.write_text(markdown(runs, images, out))
    return path
