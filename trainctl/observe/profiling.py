"""`trainer.profile=true`: a torch.profiler trace of a few training steps and the top operators by time."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WAIT, WARMUP, ACTIVE = 1, 1, 5  # steps skipped, warmed up, then recorded
TOP_OPERATORS = 10


class StepProfiler:
    """Profiles steps WAIT+WARMUP+1 .. WAIT+WARMUP+ACTIVE; writes <folder>/trace.json (Chrome trace
    format: open it in chrome://tracing or Perfetto) and <folder>/operators.txt, then reports the table."""

    def __init__(self, folder: Path, report: Callable[[str], None]) -> None:
        import torch.profiler as tp

        self.folder = folder
        self.report = report
        self.done = False
        folder.mkdir(parents=True, exist_ok=True)
        self.profiler = tp.profile(
            activities=[tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if _cuda_available() else []),
            schedule=tp.schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE, repeat=1),
            on_trace_ready=self._ready,
            record_shapes=True,
        )
        self.pending: str | None = None  # the report, shown once the profiler's own call has returned
        with kineto_lines_to(folder / "kineto.log"):
            self.profiler.start()

    def _ready(self, prof: Any) -> None:
        trace = self.folder / "trace.json"
        prof.export_chrome_trace(str(trace))
        averages = prof.key_averages()
        table = averages.table(sort_by="self_cpu_time_total", row_limit=3 * TOP_OPERATORS)
        (self.folder / "operators.txt").write_text(table + "\n")
        self.pending = f"profile of {ACTIVE} steps -> {trace}\n{top_operators(averages)}"

    def step(self) -> None:
        if not self.done:
            with kineto_lines_to(self.folder / "kineto.log"):
                self.profiler.step()
            self._report()

    def close(self) -> None:
        if not self.done:
            self.done = True
            with kineto_lines_to(self.folder / "kineto.log"):
                self.profiler.stop()
            self._report()

    def _report(self) -> None:
        if self.pending is not None:
            self.report(self.pending)
            self.pending = None


@contextlib.contextmanager
def kineto_lines_to(log: Path) -> Iterator[None]:
    """Send this process's C-level stderr to `log` for the block: the profiler's library (Kineto) writes
    lines such as `USDT: ... profiler_start` there, which no setting turns off."""
    sys.stderr.flush()
    console = os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)
        os.close(console)


def top_operators(averages: Any, limit: int = TOP_OPERATORS) -> str:
    """A compact table of the operators with the most self CPU time (full table: operators.txt)."""
    events = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:limit]
    total = sum(e.self_cpu_time_total for e in averages) or 1.0
    lines = [f"{'operator':<36} {'self CPU ms':>11} {'share':>6} {'calls':>6}"]
    for e in events:
        lines.append(
            f"{e.key[:36]:<36} {e.self_cpu_time_total / 1e3:>11.3f} "
            f"{e.self_cpu_time_total / total:>6.1%} {e.count:>6}"
        )
    return "\n".join(lines)


class NoProfiler:
    """What the recipe holds when profiling is off."""

    def step(self) -> None:
        pass

    def close(self) -> None:
        pass


def step_profiler(enabled: bool, folder: Path, report: Callable[[str], None]) -> StepProfiler | NoProfiler:
    return StepProfiler(folder, report) if enabled else NoProfiler()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
