"""Rank 0's sink in front of the run's files: opened when the run starts, so a run that fails before its
first step leaves an existing run's files exactly as they were."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from trainctl.observe.events import Event, RunEnd, RunStart, Sink
from trainctl.runs.lifecycle import record_start
from trainctl.runs.run_dir import RunDir

if TYPE_CHECKING:
    from trainctl.plan import Plan


class RunFiles:
    """Rank 0's sink in front of the run's files (metrics.jsonl, train.log, heartbeat, loggers): they are
    opened when the run starts; events before that wait. A run that ends before it starts leaves an
    existing run's files as they were (a new run still gets its log)."""

    def __init__(self, run: RunDir, plan: Plan, restart: int, open_sinks: Callable[[], list[Sink]]) -> None:
        self.run = run
        self.plan = plan
        self.restart = restart
        self.open_sinks = open_sinks
        self.started = False
        self.waiting: list[Event] = []
        self.sinks: list[Sink] = []

    def emit(self, event: Event) -> None:
        if self.started:
            self.forward(event)
        elif isinstance(event, RunStart):
            record_start(self.run, self.plan, event.start_step, self.restart)
            self.open(event)
        elif isinstance(event, RunEnd):
            if self.plan.resume_from is None and self.restart == 0:  # a new run: keep what it said
                with contextlib.suppress(OSError):
                    self.open(event)
        else:
            self.waiting.append(event)

    def open(self, event: Event) -> None:
        self.started = True
        self.sinks = self.open_sinks()
        for waiting in [*self.waiting, event]:
            self.forward(waiting)
        self.waiting = []

    def forward(self, event: Event) -> None:
        for sink in self.sinks:
            if isinstance(event, RunEnd):  # the end of a run that may have failed on a full disk
                with contextlib.suppress(OSError):
                    sink.emit(event)
            else:
                sink.emit(event)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            with contextlib.suppress(OSError):
                sink.close()
