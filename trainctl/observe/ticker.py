"""A progress ticker for long silent phases (compiling, tokenising, folds, downloads): it says what is
happening at least every 10 s, on a terminal (a live bar) and in a pipe or a log (a line each time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape

from trainctl.observe.progress import format_clock

TICK_EVERY_S = 10.0


class Ticker:
    """`with Ticker("tokenising 67,349 texts", total=67349) as tick: ... tick.advance(n)`.

    Without `say`, it writes to stderr: a transient live bar on a terminal, else a line when it starts,
    every `every` seconds, and when it ends. With `say` (e.g. a worker's message to the run's event
    sinks), every report is a line passed to it. A phase that fails says so in its last line.
    """

    def __init__(
        self,
        what: str,
        *,
        total: float | None = None,
        unit: str = "",
        say: Callable[[str], None] | None = None,
        every: float | None = None,
        console: Console | None = None,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0.0
        self.every = TICK_EVERY_S if every is None else every
        self.console = console or Console(stderr=True)
        self.say = say
        self.live = say is None and self.console.is_terminal
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.bar = None
        self.task = None

    # ------------------------------------------------------------------ what the phase reports
    def advance(self, amount: float = 1.0) -> None:
        self.update(self.done + amount)

    def update(self, done: float, total: float | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=self.total)

    # ------------------------------------------------------------------ the reports
    def amount(self, value: float) -> str:
        if self.unit == "bytes":
            return decimal(int(value))
        text = f"{value:,.0f}"
        return f"{text} {self.unit}" if self.unit else text

    def line(self, now: float | None = None) -> str:
        """One report: what, how far (when countable), time spent and time left."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        parts = [f"{format_clock(elapsed)} elapsed"]
        if self.total:
            parts.insert(0, f"{self.amount(self.done)} of {self.amount(self.total)}")
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
            if 0 < self.done < self.total:
                parts.append(f"ETA {format_clock(elapsed * (self.total - self.done) / self.done)}")
        elif self.done:
            parts.insert(0, self.amount(self.done))
        return f"{self.what}: {', '.join(parts)}"

    def emit(self, text: str) -> None:
        if self.say is not None:
            self.say(text)
        else:
            self.console.print(escape(text), soft_wrap=True)

    def tick(self) -> None:
        while not self.stop.wait(self.every):
            self.emit(self.line())

    # ------------------------------------------------------------------ the phase
    def __enter__(self) -> Ticker:
        self.started = time.monotonic()
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.percentage:>3.0f}%" if self.total else ""),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(escape(self.what), total=self.total, completed=self.done)
        else:
            self.emit(f"{self.what} ...")
            self.thread = threading.Thread(target=self.tick, daemon=True, name="trainctl-ticker")
            self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.bar is not None:
            self.bar.stop()
        elapsed = format_clock(time.monotonic() - self.started)
        self.emit(f"{self.what}: {'failed after' if kind is not None else 'done in'} {elapsed}")
