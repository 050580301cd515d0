"""One worker process: device, threads, event sinks and the stop flag; then the recipe runs."""

from __future__ import annotations

import importlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from trainctl.errors import RunInterrupted
from trainctl.observe.events import Message, Reporter, RunEnd, Sink
from trainctl.parallel import STRATEGIES, Strategy
from trainctl.plan import Plan
from trainctl.runs import RunDir


class StopFlag:
    """Set by the first Ctrl-C: the recipe checkpoints after the current step and stops cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class WorkerContext:
    """What a recipe gets besides the config: where to write, who it is, how to report."""

    run: RunDir
    plan: Plan
    device: torch.device
    reporter: Reporter
    strategy: Strategy
    stop: StopFlag
    rank: int = 0
    world_size: int = 1
    resume_from: Path | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def message(self, text: str, level: str = "info") -> None:
        self.reporter.emit(Message(text, level, rank=self.rank))


def default_sinks(run: RunDir, rank: int, console: bool) -> list[Sink]:
    """Rank 0 prints and writes metrics.jsonl and train.log."""
    from trainctl.observe.console import ConsoleView
    from trainctl.observe.files import JsonlMetrics, TextLog

    if rank != 0:
        return []
    sinks: list[Sink] = [JsonlMetrics(run.metrics_file), TextLog(run.log_file)]
    if console:
        sinks.insert(0, ConsoleView())
    return sinks


def run_worker(
    plan: Plan, *, rank: int = 0, world_size: int = 1, console: bool = True, sinks: list[Sink] | None = None
) -> dict[str, Any]:
    """Run the plan's recipe as `rank`; rank 0 records the run's status in run.json."""
    cfg = plan.config
    assert plan.run_dir is not None, "the run directory is decided before launch"
    run = RunDir(plan.run_dir)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    reporter = Reporter(default_sinks(run, rank, console) if sinks is None else sinks)
    strategy = STRATEGIES.get(cfg.parallel.name).build(cfg.parallel)
    recipe = importlib.import_module(f"recipes.{cfg.recipe}")
    status, summary = "failed", {}
    with StopFlag() as stop:
        ctx = WorkerContext(
            run=run,
            plan=plan,
            device=torch.device(plan.device),
            reporter=reporter,
            strategy=strategy,
            stop=stop,
            rank=rank,
            world_size=world_size,
            resume_from=plan.resume_from,
        )
        if rank == 0:
            run.update_meta(status="running")
        try:
            summary = recipe.main(cfg, ctx)
            status = "finished"
            return summary
        except RunInterrupted as exc:
            status, summary = "interrupted", {"stopped": exc.what, "run_dir": str(run.path)}
            raise
        except Exception as exc:
            summary = {"error": str(exc).splitlines()[0], "run_dir": str(run.path)}
            raise
        finally:
            reporter.emit(RunEnd(status, summary, rank=rank))
            reporter.close()
            if rank == 0:
                run.update_meta(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
