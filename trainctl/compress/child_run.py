"""Compress a run into a new child run: check, apply the passes, save, reload, and write the report card.

The parent run is only read. The child run directory holds config.yaml (the parent's config with the
`compress` section set to every pass its model went through), run.json (with `parent` and
`compression`), checkpoints/last.pt (state dict + pass records), compress.log, report.json and
report.md. `trainctl compress` and the post-step of `trainctl train ... compress=OPTION` both end up here.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import yaml

from trainctl.compress import build_passes
from trainctl.compress.base import CompressionPass, PassJob, Record, check_passes
from trainctl.compress.report import ReportCard, measure
from trainctl.compress.stored import compression_records, rebuild_model
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import RunDir, create_run_dir
from trainctl.training.checkpoint import FORMAT, load_checkpoint, save_atomic

if TYPE_CHECKING:
    from trainctl.api import OpenedRun


def pass_settings(passes: list[CompressionPass], done: list[Record]) -> dict[str, Any]:
    """The `compress` config section that describes all passes a model went through."""
    steps = [r["config"] for r in done] + [p.record()["config"] for p in passes]
    return steps[0] if len(steps) == 1 else {"name": "chain", "passes": steps}


def compress_run(
    parent: OpenedRun,
    compress_cfg: Any,
    *,
    thread_count: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> tuple[RunDir, ReportCard]:
    """Apply the passes of `compress_cfg` (a config section, or a list of them) to a loaded run's model."""
    steps = compress_cfg if isinstance(compress_cfg, list) else [compress_cfg]
    passes = [p for step in steps for p in build_passes(step)]
    if not passes:
        raise TrainctlError("no compression pass given", fix="e.g. --quantize int8 or --prune 0.5")
    if parent.run is None:
        raise TrainctlError(
            f"compression writes a child run beside its parent; {parent.checkpoint} is a bare checkpoint",
            fix="give the run directory that holds it",
        )
    done = compression_records(parent.state)
    check_passes(passes, parent.model, done)  # bad input stops here, before anything is written
    child = start_child_run(parent, passes, done)
    log_file = (child.path / "compress.log").open("a")

    def say(line: str) -> None:
        log(line)
        log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        log_file.flush()

    try:
        records = apply_passes(
            parent, passes, done, child, PassJob(parent.cfg, parent.data, torch.device(device), say)
        )
        card = write_report(parent, child, records, thread_count)
        child.update_meta(status="finished", ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        return child, card
    except BaseException:
        child.update_meta(status="failed", ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        raise
    finally:
        log_file.close()


def child_config(parent: OpenedRun, passes: list[CompressionPass], done: list[Record]) -> dict[str, Any]:
    """The parent's config with the `compress` section set to every pass the model goes through."""
    tree = copy.deepcopy(parent.state["config"])
    tree["compress"] = pass_settings(passes, done)
    return tree


def start_child_run(parent: OpenedRun, passes: list[CompressionPass], done: list[Record]) -> RunDir:
    """A new run directory beside the parent's, with the child's config and run.json naming its parent."""
    assert parent.run is not None
    tree = child_config(parent, passes, done)
    child = create_run_dir(parent.run.path.parent.parent, parent.run.path.parent.name)  # beside its parent
    child.config_file.write_text(yaml.safe_dump(tree, sort_keys=False))
    child.overrides_file.write_text(yaml.safe_dump([]))
    child.update_meta(
        id=f"{child.path.parent.name}/{child.path.name}",
        preset=parent.cfg.preset,
        status="running",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        command=["trainctl", *sys.argv[1:]],
        parent=parent.id,
        parent_path=str(parent.run.path),
        parent_checkpoint=parent.checkpoint.name,
        compression=[p.record()["config"] for p in passes],
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    return child


def apply_passes(
    parent: OpenedRun, passes: list[CompressionPass], done: list[Record], child: RunDir, job: PassJob
) -> list[Record]:
    """Run the passes on a copy of the parent's model and save it as the child's last.pt; every record."""
    model = copy.deepcopy(parent.model)
    records = list(done)
    for compression in passes:
        job.log(f"pass {compression.describe()}")
        model = compression.apply(model, job)
        records.append(compression.record())
    tree = child_config(parent, passes, done)
    state = {"format": FORMAT, "model": model.state_dict(), "config": tree, "compression": records}
    save_atomic(state | {"parent": parent.id}, child.checkpoint("last"))
    return records


def write_report(
    parent: OpenedRun, child: RunDir, records: list[Record], thread_count: int | None
) -> ReportCard:
    """The report card of parent against child (report.json, report.md) and its metrics for `runs ls`.

    It measures the model as `trainctl eval` will see it: rebuilt from the child's file."""
    saved = load_checkpoint(child.checkpoint("last"))
    rebuilt = rebuild_model(parent.cfg.model, parent.data.spec, saved).eval()
    card = measure(
        parent.model,
        rebuilt,
        parent.data,
        parent.objective(),
        thread_count=thread_count or parent.cfg.trainer.threads or torch.get_num_threads(),
        eval_batch_size=parent.cfg.trainer.eval_batch_size,
        names=(parent.id, child.read_meta()["id"]),
        passes=[r["config"]["name"] + describe_settings(r["config"]) for r in records],
    )
    (child.path / "report.json").write_text(json.dumps(card.to_json(), indent=2) + "\n")
    (child.path / "report.md").write_text(card.to_markdown())
    evaluation = {"step": 0, "epoch": 0, "split": "test", "rank": 0, "kind": "eval", **card.after.metrics}
    child.metrics_file.write_text(json.dumps(evaluation | {"time": time.time()}) + "\n")  # for `runs ls`
    return card


def describe_settings(settings: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v}" for k, v in settings.items() if k != "name")
    return f" ({text})" if text else ""


def report_summary(child: RunDir, card: ReportCard, log: Callable[[str], None]) -> dict[str, Any]:
    """Log the report card's rows; the child run and its headline rows, for the training's summary."""
    summary = {"run dir": str(child.path)}
    for name, before, after, change in card.rows():
        log(f"report card: {name}: {before} -> {after} ({change})")
        if name.startswith(("test", "model file", "CPU latency, batch 64")):
            summary[name] = f"{before} -> {after} ({change})"
    log(f"report card saved: {child.path / 'report.md'}")
    return summary
