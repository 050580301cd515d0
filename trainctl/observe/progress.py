"""Training progress for a person: step of total, a bar, the ETA and the reduced loss, live or as lines."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from trainctl.observe.events import RunEnd, RunStart, StepRecord

LINE_EVERY_S = 10.0  # without a live display, a progress line at least this often while steps arrive
BAR_WIDTH = 24  # fits the bar, the counts, epoch, loss and ETA in 80 columns
REDRAWS_PER_S = 4  # a bar that runs its own live display; updating its task more often shows nothing new


def format_clock(seconds: float) -> str:
    """0:00:07, 1:02:03: the clock format rich and tqdm use for times."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class StepCount:
    """Where a run stands against its plan, and the time left at the rate since it (re)started."""

    total: int  # optimizer steps this run will take: the planned epochs, capped by trainer.max_steps
    epochs: int
    steps_per_epoch: int
    start_step: int
    started: float  # time.monotonic() at the run's start
    step: int = 0
    epoch: int = 0
    loss: float = float("nan")
    ended: str | None = None  # finished, failed, interrupted, or "stopped" (early, before the total)
    elapsed: float = 0.0

    @classmethod
    def of(cls, event: RunStart, now: float) -> StepCount:
        planned = event.epochs * event.steps_per_epoch
        total = planned if event.max_steps is None else min(planned, event.max_steps)
        return cls(
            total=total,
            epochs=event.epochs,
            steps_per_epoch=event.steps_per_epoch,
            start_step=event.start_step,
            started=now,
            step=event.start_step,
            epoch=event.start_epoch,
        )

    def eta(self, now: float) -> float | None:
        """Seconds left at the mean rate of this process's steps so far (evaluations included)."""
        done = self.step - self.start_step
        if done <= 0:
            return None
        return (self.total - self.step) * (now - self.started) / done

    def info(self) -> str:
        loss = f"  loss {self.loss:.4f}" if self.loss == self.loss else ""
        return f"epoch {min(self.epoch + 1, self.epochs)}/{self.epochs}{loss}"

    def clock(self, now: float) -> str:
        if self.ended is not None:
            word = "done in" if self.ended == "finished" and self.step >= self.total else f"{self.ended},"
            return f"{word} {format_clock(self.elapsed)}"
        eta = self.eta(now)
        return "ETA -:--:--" if eta is None else f"ETA {format_clock(eta)}"

    def line(self, now: float) -> str:
        """The progress as one line of text, for a log or a pipe."""
        percent = 100 * self.step / self.total if self.total else 100.0
        return f"step {self.step}/{self.total} ({percent:.0f}%)  {self.info()}  {self.clock(now)}"


class TrainingProgress:
    """One bar for the whole run (not per epoch), fed by rank 0's start, step and end records.

    Live (a terminal): a rich Progress whose renderable a Live display shows (`renderable()`), or that
    runs its own Live (`own_live=True`). Otherwise: a text line at least every LINE_EVERY_S seconds
    while steps arrive, and one when the run ends. A finished bar keeps its final count.
    """

    def __init__(self, console: Console, *, live: bool, own_live: bool = False) -> None:
        self.console = console
        self.live = live
        self.own_live = own_live and live
        self.count: StepCount | None = None
        self.last_line = 0.0
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(bar_width=BAR_WIDTH),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("{task.fields[clock]}"),
            console=console,
            auto_refresh=self.own_live,
            refresh_per_second=REDRAWS_PER_S,
        )
        self.task: TaskID | None = None
        self.refreshed = -float("inf")

    def start(self, event: RunStart) -> None:
        now = time.monotonic()
        self.count = StepCount.of(event, now)
        self.last_line = now
        if self.task is not None:  # restarted workers start again from their checkpoint
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=self.count.total, completed=self.count.step)
        self.refresh(now)
        if self.own_live and not self.progress.live.is_started:
            self.progress.start()

    def step(self, event: StepRecord) -> None:
        if self.count is None:
            return
        now = time.monotonic()
        self.count.step, self.count.epoch, self.count.loss = event.step, event.epoch, event.loss
        # Only its own display reads the task between records (renderable() refreshes for another):
        # at most one update per redraw, and the epoch's last step at once.
        epoch_done = event.batch == self.count.steps_per_epoch or event.step >= self.count.total
        if self.own_live and (epoch_done or now - self.refreshed >= 1 / REDRAWS_PER_S):
            self.refresh(now)
        if not self.live and now - self.last_line >= LINE_EVERY_S:
            self.last_line = now
            self.console.print(self.count.line(now), soft_wrap=True)

    def end(self, event: RunEnd) -> None:
        """Freeze the bar at the run's final step, with its elapsed time; print it once without a display."""
        if self.count is None:
            return
        now = time.monotonic()
        steps = event.summary.get("steps")
        if isinstance(steps, int):
            self.count.step = steps
        stopped_early = event.status == "finished" and self.count.step < self.count.total
        self.count.ended = "stopped" if stopped_early else event.status
        self.count.elapsed = now - self.count.started
        self.refresh(now)
        if self.own_live:
            self.progress.stop()
        elif not self.live:
            self.console.print(self.count.line(now), soft_wrap=True)

    def refresh(self, now: float) -> None:
        if self.task is None or self.count is None:
            return
        self.refreshed = now
        self.progress.update(
            self.task,
            completed=self.count.step,
            info=self.count.info(),
            clock=self.count.clock(now),
        )

    def renderable(self) -> RenderableType | None:
        """The bar, for a Live display that shows it beside other things; None before the run starts."""
        if self.count is None:
            return None
        self.refresh(time.monotonic())
        return self.progress.get_renderable()

    def close(self) -> None:
        if self.own_live:
            self.progress.stop()
