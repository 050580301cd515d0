"""What `runs ls`, sweeps and reports know about a finished or running run, read from its files only."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from trainctl.runs.lock import LockOwner, read_owner
from trainctl.runs.metrics import metric_value
from trainctl.runs.run_dir import RunDir

SWEEPS = "sweeps"


@dataclass
class RunSummary:
    """One run as listed: identity, effective status, main metric and timing."""

    path: Path
    id: str
    preset: str
    status: str  # created, running, finished, failed, interrupted, killed, disk full, stalled, or stale
    metric: str | None
    value: float | None
    seconds: float | None
    parent: str | None
    created: str
    note: str = ""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file; a torn last line (a run writing right now) is skipped."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def main_metric(records: list[dict[str, Any]], monitor: str | None) -> tuple[str | None, float | None]:
    """The run's main metric (trainer.monitor, else a ranker's precision@10, accuracy, rmse or loss) in its
    last evaluation."""
    evals = [r for r in records if r.get("kind") == "eval"]
    if not evals:
        return None, None
    last = evals[-1]
    for name in (monitor, "precision@10", "accuracy", "rmse", "loss"):
        if name and isinstance(last.get(name), int | float):
            return name, float(last[name])
    return None, None


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def effective_status(run: RunDir, meta: dict[str, Any], now: float) -> tuple[str, str]:
    """run.json's status, unless it says running (or created, under a lock) and no live process holds the
    run: then `stale`, with why (its lock's process is gone or silent; without a lock: its recorded pid
    or heartbeat)."""
    status = str(meta.get("status", "unknown"))
    if status not in ("running", "created") or (status == "created" and read_owner(run) is None):
        return status, ""
    owner = read_owner(run)
    if owner is None:  # the lock is gone, yet run.json was never told how the run ended
        owner = LockOwner(
            pid=int(meta.get("pid") or -1),
            host=str(meta.get("host", "")),
            command="",
            started=str(meta.get("created", "")),
            heartbeat=parse_time(meta.get("heartbeat")) or parse_time(meta.get("created")) or 0.0,
        )
    why = owner.stale_because(now)
    return ("stale", why) if why else (status, "")


def summarize(path: Path, now: float | None = None) -> RunSummary:
    """A RunSummary from run.json, config.yaml and metrics.jsonl."""
    now = time.time() if now is None else now
    run = RunDir(path)
    meta = run.read_meta()
    status, note = effective_status(run, meta, now)
    monitor = None
    if run.config_file.is_file():
        config = yaml.safe_load(run.config_file.read_text()) or {}
        monitor = (config.get("trainer") or {}).get("monitor")
    metric, value = main_metric(read_metrics(run.metrics_file), monitor)
    started = parse_time(meta.get("created"))
    if status == "running":
        ended: float | None = now
    elif status == "stale":
        ended = parse_time(meta.get("heartbeat"))
    else:
        ended = parse_time(meta.get("ended"))
    seconds = ended - started if started is not None and ended is not None else None
    return RunSummary(
        path=path,
        id=str(meta.get("id", path.name)),
        preset=str(meta.get("preset", "?")),
        status=status,
        metric=metric,
        value=value,
        seconds=seconds,
        parent=meta.get("parent"),
        created=str(meta.get("created", "")),
        note=note,
    )


def find_runs(root: Path, preset: str | None = None) -> list[RunSummary]:
    """Every run under `root` (<preset>/<stamp>/ and sweeps/<sweep>/<job>/), newest first."""
    paths = [*root.glob("*/*/run.json"), *root.glob(f"{SWEEPS}/*/*/run.json")]
    now = time.time()
    runs = [summarize(p.parent, now) for p in sorted(set(paths)) if p.parent.name != "latest"]
    if preset is not None:
        runs = [r for r in runs if r.preset == preset]
    return sorted(runs, key=lambda r: (r.created, recorded_ns(r.path)), reverse=True)


def recorded_ns(path: Path) -> int:
    """When the run's overrides.yaml was written (once, at its start): orders runs of the same second."""
    try:
        return RunDir(path).overrides_file.stat().st_mtime_ns
    except OSError:
        return 0


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def format_metric(metric: str | None, value: float | None) -> str:
    if metric is None or value is None:
        return "-"
    return f"{metric} {metric_value(metric, value)}"
