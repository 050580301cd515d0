"""The parent's view of a multi-process run: the run's progress bar and one row per rank, fed by the
ranks' event files."""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from trainctl.observe.console import ConsoleView
from trainctl.observe.events import Event, RunEnd, RunStart, StepRecord, from_record
from trainctl.observe.progress import TrainingProgress

SILENT_AFTER_S = 10.0  # a rank with no report for this long (and 3x its usual interval) is flagged
# The live display reads the event files and redraws this often, never in between. A redraw of the bar
# and the table costs a few ms of the CPUs the ranks train on: with rich's own 4 Hz refresh beside a
# redraw per poll, the parent took 3.8% of a core in a terminal (0.7% in a pipe) during a 2-rank MNIST
# DDP run on a 2-core box, where any CPU it takes stalls both ranks at their next all-reduce.
REDRAW_S = 0.5


@dataclass
class RankState:
    """The last report of one rank, and when it came."""

    rank: int
    step: int = 0
    epoch: int = 0
    loss: float = float("nan")
    samples_per_s: float = 0.0
    last_seen: float = field(default_factory=time.time)
    intervals: list[float] = field(default_factory=list)
    status: str = "starting"


class EventTail:
    """Reads the lines appended to one rank's events file since the previous read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self) -> list[Event]:
        try:
            with self.path.open() as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return []
        text = self.partial + text
        lines = text.split("\n")
        self.partial = lines.pop()
        return [from_record(json.loads(line)) for line in lines if line.strip()]


class RankView:
    """Polls logs/rank<N>.events.jsonl: rank 0's events print as in a one-process run; on a terminal a
    live display shows the run's progress (step of total, bar, reduced loss, ETA) above a table of
    every rank's step, loss, samples/s and time since its last report. In a pipe the progress comes
    as lines (at least every 10 s while steps arrive) and the table once, at the end."""

    def __init__(self, logs: Path, ranks: list[int], console: Console | None = None) -> None:
        self.console = console or Console()
        self.tails = {r: EventTail(logs / f"rank{r}.events.jsonl") for r in ranks}
        self.states = {r: RankState(r) for r in ranks}
        self.rank0 = ConsoleView(self.console, live=False, progress=False) if 0 in ranks else None
        self.progress = TrainingProgress(self.console, live=self.console.is_terminal)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True, name="trainctl-rank-view")
        self.live: Live | None = None
        self.end: RunEnd | None = None

    def __enter__(self) -> RankView:
        if self.console.is_terminal:
            self.live = Live(
                console=self.console, auto_refresh=False, transient=True, get_renderable=self.display
            )
            self.live.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self.poll()  # whatever arrived last
        if self.end is not None:
            self.progress.end(self.end)  # the bar keeps its final count
        if self.live is not None:
            self.live.stop()
            self.live = None
            if self.end is not None:
                self.console.print(self.progress.renderable())
        if any(state.status != "starting" for state in self.states.values()):
            self.console.print(self.table())
        if self.end is not None and self.rank0 is not None:
            self.rank0.emit(self.end)

    def display(self) -> RenderableType:
        """What the live display shows: the progress bar (once rank 0 started) over the rank table."""
        bar = self.progress.renderable()
        return self.table() if bar is None else Group(bar, self.table())

    def loop(self) -> None:
        while not self.stop_event.wait(REDRAW_S):
            self.poll()
            if self.live is not None:
                self.live.refresh()  # the bar and the table agree with the lines just printed

    def poll(self) -> None:
        now = time.time()
        for rank, tail in self.tails.items():
            for event in tail.read():
                self.update(self.states[rank], event, now)
                if rank != 0:
                    continue
                if isinstance(event, RunEnd):
                    self.end = event  # its summary prints after the rank table
                    continue
                if isinstance(event, RunStart):
                    self.progress.start(event)
                elif isinstance(event, StepRecord):
                    self.progress.step(event)
                if self.rank0 is not None:
                    self.rank0.emit(event)

    def update(self, state: RankState, event: Event, now: float) -> None:
        if isinstance(event, StepRecord):
            state.intervals = [*state.intervals[-9:], now - state.last_seen]
            state.step, state.epoch, state.loss = event.step, event.epoch, event.loss
            state.samples_per_s = event.samples_per_s
            state.status = "training"
        elif isinstance(event, RunEnd):
            state.status = event.status
        state.last_seen = now

    def table(self) -> Table:
        now = time.time()
        lead = max((s.step for s in self.states.values()), default=0)
        table = Table(title="ranks", title_style="bold")
        for column in ("rank", "epoch", "step", "loss", "samples/s", "last report", "state"):
            table.add_column(column, justify="right" if column != "state" else "left", overflow="fold")
        for s in self.states.values():
            quiet = now - s.last_seen
            usual = statistics.median(s.intervals) if s.intervals else 0.0
            style, state = "", s.status
            if s.status in ("starting", "training") and quiet > max(SILENT_AFTER_S, 3 * usual):
                style, state = "bold red", f"silent {quiet:.0f}s"
            elif s.status == "training" and lead > s.step and quiet > 2 * usual + 1.0:
                style, state = "yellow", f"behind by {lead - s.step} steps"
            elif s.status == "failed":
                style = "bold red"
            table.add_row(
                str(s.rank),
                str(s.epoch + 1),
                str(s.step),
                f"{s.loss:.4f}",
                f"{s.samples_per_s:,.0f}",
                f"{quiet:.1f}s ago",
                state,
                style=style,
            )
        return table
