"""The console view of a run: a live progress bar on a terminal, progress and epoch lines elsewhere."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainctl.observe.events import EpochRecord, EvalRecord, Event, Message, RunEnd, RunStart, StepRecord
from trainctl.observe.files import format_metrics
from trainctl.observe.progress import TrainingProgress
from trainctl.runs.metrics import metric_value


class ConsoleView:
    """Renders events for a person watching the run: the start, one progress bar for the whole run (or
    progress lines in a pipe), epochs, evaluations, messages and the summary.

    `progress=False` leaves the progress to a caller that shows it elsewhere (the multi-rank view)."""

    def __init__(
        self, console: Console | None = None, live: bool | None = None, progress: bool = True
    ) -> None:
        self.console = console or Console()
        self.live = self.console.is_terminal if live is None else live
        self.progress = TrainingProgress(self.console, live=self.live, own_live=True) if progress else None
        self.epochs = 0
        self.last_step: StepRecord | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, RunStart):
            self.start(event)
        elif isinstance(event, StepRecord):
            self.step(event)
        elif isinstance(event, EpochRecord):
            self.epoch_done(event)
        elif isinstance(event, EvalRecord):
            self.print(f"[bold]epoch {event.epoch + 1}[/] {event.split}: {format_metrics(event.metrics)}")
        elif isinstance(event, Message):
            style = {"warning": "yellow", "error": "red"}.get(event.level, "")
            self.print(f"[{style}]{escape(event.text)}[/]" if style else escape(event.text))
        elif isinstance(event, RunEnd):
            self.end(event)

    def print(self, text: str) -> None:
        self.console.print(text)

    def start(self, event: RunStart) -> None:
        self.epochs = event.epochs
        planned = event.epochs * event.steps_per_epoch
        capped = event.max_steps is not None and event.max_steps < planned
        cap = f" (capped at {event.max_steps} steps by trainer.max_steps)" if capped else ""
        self.print(
            f"[bold]{event.preset}[/]: {event.epochs} epochs x {event.steps_per_epoch} steps{cap}, "
            f"{event.parameters:,} parameters, {event.train_samples:,} train / {event.test_samples:,} test "
            f"samples -> {escape(event.run_dir)}"
        )
        if self.progress is not None:
            self.progress.start(event)

    def step(self, event: StepRecord) -> None:
        self.last_step = event
        if self.progress is not None:
            self.progress.step(event)

    def epoch_done(self, event: EpochRecord) -> None:
        if self.live and self.progress is not None:
            return  # the bar shows the epoch
        line = f"epoch {event.epoch + 1}/{self.epochs} {event.seconds:.2f}s"
        if self.last_step is not None:
            line += f"  loss {self.last_step.loss:.4f}  {self.last_step.samples_per_s:,.0f} samples/s"
        self.console.print(line)

    def end(self, event: RunEnd) -> None:
        if self.progress is not None:
            self.progress.end(event)
        self.console.print(summary_table(event.status, event.summary))

    def flush(self) -> None:
        pass  # the console shows each event as it comes

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


def summary_table(status: str, summary: dict[str, Any]) -> Table:
    """The end-of-run table: status, losses, test metrics, wall time and where the run lives."""
    color = {"finished": "green", "failed": "red", "interrupted": "yellow"}.get(status, "")
    table = Table(title=f"run {status}", title_style=f"bold {color}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths and run ids wrap whole, never cut
    for key, value in summary.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                table.add_row(f"{key} {sub}", render(sub, sub_value))
        else:
            table.add_row(key, render(key, value))
    return table


def render(key: str, value: Any) -> str:
    if isinstance(value, float):
        if key.endswith("seconds"):
            return f"{value:.1f} s"
        return metric_value(key, value, ".6g")
    return escape(str(value))
