"""The console view of a run: live epoch and step bars on a terminal, one line per epoch elsewhere."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from trainctl.observe.events import EpochRecord, EvalRecord, Event, Message, RunEnd, RunStart, StepRecord
from trainctl.observe.files import format_metrics
from trainctl.runs.metrics import metric_value


class ConsoleView:
    """Renders events for a person watching the run."""

    def __init__(self, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console()
        self.live = self.console.is_terminal if live is None else live
        self.progress: Progress | None = None
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
        (self.progress.console if self.progress else self.console).print(text)

    def start(self, event: RunStart) -> None:
        self.epochs = event.epochs
        self.console.print(
            f"[bold]{event.preset}[/]: {event.epochs} epochs x {event.steps_per_epoch} steps, "
            f"{event.parameters:,} parameters, {event.train_samples:,} train / {event.test_samples:,} test "
            f"samples -> {event.run_dir}"
        )
        if not self.live:
            return
        self.progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=self.console,
            refresh_per_second=4,
        )
        self.progress.start()
        self.epoch_task = self.progress.add_task(
            "epoch", total=event.epochs, completed=event.start_epoch, info=""
        )
        self.step_task = self.progress.add_task("step", total=event.steps_per_epoch, info="")

    def step(self, event: StepRecord) -> None:
        self.last_step = event
        if self.progress is not None:
            info = f"loss {event.loss:.4f}  lr {event.lr:.2e}  {event.samples_per_s:,.0f} samples/s"
            self.progress.update(self.step_task, completed=event.batch, info=info)

    def epoch_done(self, event: EpochRecord) -> None:
        if self.progress is not None:
            self.progress.update(self.epoch_task, completed=event.epoch + 1)
            self.progress.reset(self.step_task, info=self.progress.tasks[self.step_task].fields["info"])
            return
        line = f"epoch {event.epoch + 1}/{self.epochs} {event.seconds:.2f}s"
        if self.last_step is not None:
            line += f"  loss {self.last_step.loss:.4f}  {self.last_step.samples_per_s:,.0f} samples/s"
        self.console.print(line)

    def end(self, event: RunEnd) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.console.print(summary_table(event.status, event.summary))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(status: str, summary: dict[str, Any]) -> Table:
    """The end-of-run table: status, losses, test metrics, wall time and where the run lives."""
    color = {"finished": "green", "failed": "red", "interrupted": "yellow"}.get(status, "")
    table = Table(title=f"run {status}", title_style=f"bold {color}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
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
