"""Compress a run into a new child run: check, apply the passes, save, reload, and write the report card.

The parent run is only read. The child run directory holds config.yaml (the parent's config with the
`compress` section set to every pass its model went through), run.json (with `parent` and
`compression`), checkpoints/last.pt (state dict + pass records), compress.log, report.json and
report.md. `trainctl compress` and `trainctl train ... compress=OPTION` both end up here.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from trainctl.compress import build_passes
from trainctl.compress.base import CompressionPass, PassJob, Record, check_passes
from trainctl.compress.report import ReportCard, measure
from trainctl.compress.stored import compression_records, rebuild_model
from trainctl.config.schema import Config
from trainctl.data.types import DataBundle
from trainctl.errors import TrainctlError
from trainctl.runs.run_dir import RunDir, create_run_dir, default_runs_root, resolve_run
from trainctl.training.checkpoint import FORMAT, load_checkpoint, save_atomic
from trainctl.training.objective import Objective, build_objective


@dataclass
class LoadedRun:
    """A run's checkpoint, config, data and rebuilt model."""

    run: RunDir
    checkpoint: Path
    state: dict[str, Any]
    cfg: Config
    data: DataBundle
    model: nn.Module

    @property
    def id(self) -> str:
        return str(self.run.read_meta().get("id") or f"{self.run.path.parent.name}/{self.run.path.name}")

    def objective(self) -> Objective:
        return build_objective(self.cfg.trainer, self.data, torch.device("cpu"))


def load_run(target: str | RunDir, tag: str = "last") -> LoadedRun:
    """Resolve a run (path or `latest`) and rebuild its model from its checkpoint; errors exit 2."""
    from trainctl.config.compose import compose
    from trainctl.data import load_dataset

    run = target if isinstance(target, RunDir) else resolve_run(target, default_runs_root())
    checkpoint = run.checkpoint(tag)
    if not checkpoint.is_file():
        raise TrainctlError(
            f"the run has no {tag} checkpoint: {checkpoint}",
            where=str(run.path),
            fix="train it first (or wait for it to finish), or give another run",
        )
    state = load_checkpoint(checkpoint)
    cfg = compose([], base=OmegaConf.create(state["config"])).config
    data = load_dataset(cfg.data)
    model = rebuild_model(cfg.model, data.spec, state).eval()
    return LoadedRun(run, checkpoint, state, cfg, data, model)


def pass_settings(passes: list[CompressionPass], done: list[Record]) -> dict[str, Any]:
    """The `compress` config section that describes all passes a model went through."""
    steps = [r["config"] for r in done] + [p.record()["config"] for p in passes]
    return steps[0] if len(steps) == 1 else {"name": "chain", "passes": steps}


def compress_run(
    parent: LoadedRun,
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
    done = compression_records(parent.state)
    check_passes(passes, parent.model, done)  # bad input stops here, before anything is written

    tree = copy.deepcopy(parent.state["config"])
    tree["compress"] = pass_settings(passes, done)
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
    log_file = (child.path / "compress.log").open("a")

    def say(line: str) -> None:
        log(line)
        log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        log_file.flush()

    try:
        job = PassJob(parent.cfg, parent.data, torch.device(device), say)
        model = copy.deepcopy(parent.model)
        records = list(done)
        for compression in passes:
            say(f"pass {compression.describe()}")
            model = compression.apply(model, job)
            records.append(compression.record())
        state = {
            "format": FORMAT,
            "model": model.state_dict(),
            "config": tree,
            "compression": records,
            "parent": parent.id,
        }
        save_atomic(state, child.checkpoint("last"))
        # The report card measures the model as `trainctl eval` will see it: rebuilt from the file.
        result = load_run(child, "last")
        threads = thread_count or parent.cfg.trainer.threads or torch.get_num_threads()
        card = measure(
            parent.model,
            result.model,
            parent.data,
            parent.objective(),
            thread_count=threads,
            eval_batch_size=parent.cfg.trainer.eval_batch_size,
            names=(parent.id, result.id),
            passes=[r["config"]["name"] + describe_settings(r["config"]) for r in records],
        )
        (child.path / "report.json").write_text(json.dumps(card.to_json(), indent=2) + "\n")
        (child.path / "report.md").write_text(card.to_markdown())
        evaluation = {"step": 0, "epoch": 0, "split": "test", "rank": 0, "kind": "eval", **card.after.metrics}
        child.metrics_file.write_text(json.dumps(evaluation | {"time": time.time()}) + "\n")  # for `runs ls`
        child.update_meta(status="finished", ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        return child, card
    except BaseException:
        child.update_meta(status="failed", ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        raise
    finally:
        log_file.close()


def describe_settings(settings: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v}" for k, v in settings.items() if k != "name")
    return f" ({text})" if text else ""


def compress_after_training(cfg: Config, ctx: Any) -> dict[str, Any]:
    """`trainctl train ... compress=OPTION`: on rank 0, compress the run's last.pt into a child run.

    Runs after the last checkpoint is written, on one process whatever the parallel mode (last.pt
    always holds the whole model); the other ranks return at once. Returns the summary's entries.
    """
    if not ctx.is_main or not build_passes(cfg.compress):
        return {}
    child, card = compress_run(
        load_run(ctx.run, "last"), cfg.compress, device=str(ctx.device), log=ctx.message
    )
    summary = {"run dir": str(child.path)}
    for name, before, after, change in card.rows():
        ctx.message(f"report card: {name}: {before} -> {after} ({change})")
        if name.startswith(("test", "model file", "CPU latency, batch 64")):
            summary[name] = f"{before} -> {after} ({change})"
    ctx.message(f"report card saved: {child.path / 'report.md'}")
    return {"compressed": summary}
