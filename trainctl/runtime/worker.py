"""One worker process: device, threads, event sinks, the parallel strategy and the stop flag; then
the recipe runs."""

from __future__ import annotations

import importlib
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from trainctl.config.schema import Logger
from trainctl.errors import RunInterrupted
from trainctl.interrupts import Interrupted
from trainctl.observe.events import Message, Reporter, RunEnd, Sink
from trainctl.plan import Plan
from trainctl.runs.run_dir import RunDir, record_run
from trainctl.runtime.allocator import tune_allocator
from trainctl.runtime.parallel import build_strategy
from trainctl.runtime.parallel.base import Strategy

REPEAT_WINDOW_S = 2.0  # a second signal this soon after the first is the same request (terminal + agent)


class StopFlag:
    """Set by Ctrl-C or SIGTERM: the recipe checkpoints after the current step and stops cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.first_at = 0.0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.requested and now - self.first_at > REPEAT_WINDOW_S:  # asked twice: abort at once
            raise Interrupted
        if not self.requested:
            self.requested, self.first_at = True, now

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


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

    def alive(self) -> None:
        """Tell the parent's stall watch that this rank still makes progress (throttled; call each step)."""
        self.reporter.beat(self.rank)


def default_sinks(
    run: RunDir, plan: Plan, rank: int, restart: int, console: bool, loggers: Sequence[Logger | str] = ()
) -> list[Sink]:
    """Rank 0 writes metrics.jsonl, train.log, the run's heartbeat and the configured loggers, opened
    when the run starts (RunFiles), and prints in a one-process run and under torchrun; every rank of a
    job of several also keeps logs/rank<N>.events.jsonl, which the parent's live view reads, and
    logs/rank<N>.log."""
    from trainctl.data import data_paths
    from trainctl.observe.console import ConsoleView
    from trainctl.observe.files import EventFile, JsonlMetrics, TextLog
    from trainctl.observe.heartbeat import Heartbeat
    from trainctl.observe.loggers import logger_sinks
    from trainctl.observe.run_files import RunFiles
    from trainctl.runs.record import keep_record

    def run_files() -> list[Sink]:
        keep_record(run, plan, data_paths(plan.config.data))  # once: code, environment, hardware, data
        return [
            JsonlMetrics(run.metrics_file),
            TextLog(run.log_file),
            Heartbeat(run),
            *logger_sinks(loggers, run),
        ]

    sinks: list[Sink] = []
    if rank == 0:
        sinks.append(RunFiles(run, plan, restart, run_files))
        if console:
            sinks.insert(0, ConsoleView())
    if not console or plan.world_size > 1:  # a rank of a launched job (torchrun's rank 0 prints too)
        sinks += [EventFile(run.logs / f"rank{rank}.events.jsonl"), TextLog(run.logs / f"rank{rank}.log")]
    return sinks


def run_worker(
    plan: Plan,
    *,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
    restart: int = 0,
    console: bool = True,
    sinks: list[Sink] | None = None,
) -> dict[str, Any]:
    """Run the plan's recipe as `rank`; rank 0 holds the run's lock and records how the run ends."""
    from trainctl.runs.lifecycle import hold_in_worker

    assert plan.run_dir is not None, "the run directory is decided before launch"
    run = RunDir(plan.run_dir)
    if rank != 0:
        return run_recipe(plan, run, rank, world_size, local_rank, restart, console, sinks)
    with hold_in_worker(run, note=lambda text: print(f"note: {text}", flush=True)):  # before any write
        record_run(run, plan.tree, plan.overrides, plan.config.preset)  # once: a no-op when the parent did it
        return run_recipe(plan, run, rank, world_size, local_rank, restart, console, sinks)


def run_recipe(
    plan: Plan,
    run: RunDir,
    rank: int,
    world_size: int,
    local_rank: int,
    restart: int,
    console: bool,
    sinks: list[Sink] | None,
) -> dict[str, Any]:
    from trainctl.runs.disk import disk_error
    from trainctl.runs.lifecycle import ending_status, record_end

    cfg = plan.config
    torch.set_num_threads(plan.threads_per_worker)
    tune_allocator()  # before the first step's buffers
    device = torch.device("cuda", local_rank) if plan.device == "cuda" else torch.device("cpu")
    strategy = build_strategy(cfg.parallel)
    strategy.setup(rank, world_size, device)
    resume_from = plan.resume_from
    if restart > 0 and run.checkpoint("last").exists():  # the elastic agent restarted us after a failure
        resume_from = run.checkpoint("last")
    reporter = Reporter(
        default_sinks(run, plan, rank, restart, console, cfg.logger) if sinks is None else sinks
    )
    recipe = importlib.import_module(f"trainctl.recipes.{cfg.recipe}")
    ending: BaseException | None = None
    summary: dict[str, Any] = {}
    with StopFlag() as stop:
        ctx = WorkerContext(
            run=run,
            plan=plan,
            device=device,
            reporter=reporter,
            strategy=strategy,
            stop=stop,
            rank=rank,
            world_size=world_size,
            resume_from=resume_from,
        )
        if restart:
            ctx.message(f"restart {restart}: resuming from {resume_from or 'the start'}", "warning")
        try:
            summary = recipe.main(cfg, ctx)
            return summary
        except RunInterrupted as exc:
            ending, summary = exc, {"stopped": exc.what, "run dir": str(run.path)}
            raise
        except OSError as exc:  # a full or read-only disk is the user's to fix: one screen, exit 2
            ending, summary = exc, {"error": str(exc).splitlines()[0], "run dir": str(run.path)}
            error = disk_error(exc)
            if error is None:
                raise
            raise error from None
        except BaseException as exc:
            ending, summary = (
                exc,
                {"error": (str(exc).splitlines() or [type(exc).__name__])[0], "run dir": str(run.path)},
            )
            raise
        finally:
            status = ending_status(ending)
            reporter.emit(RunEnd(status, summary, rank=rank))
            reporter.close()
            if rank == 0:
                record_end(run, plan, status)
