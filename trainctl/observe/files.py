"""Sinks that keep a run's records on disk: metrics.jsonl (structured) and train.log (readable)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO

from trainctl.observe.events import (
    EpochRecord,
    EvalRecord,
    Event,
    Message,
    RunEnd,
    RunStart,
    StepRecord,
    to_record,
)
from trainctl.runs.metrics import metric_value

# Step lines wait in the file's buffer until one comes this long after the last write to disk (the
# multi-rank view redraws every 0.5 s), until any other line, or until a checkpoint (Reporter.flush).
# A write per line cost ~110 us per report on a 2-core box, against ~55 us through the buffer.
FLUSH_EVERY_S = 0.5


class RecordFile:
    """An append-only text file that holds back progress lines (see FLUSH_EVERY_S) and writes any other
    line through."""

    def __init__(self, path: Path) -> None:
        self.file: IO[str] = path.open("a")
        self.flushed = time.monotonic()

    def write(self, line: str, progress: bool = False) -> None:
        self.file.write(line)
        if not progress or time.monotonic() - self.flushed >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.file.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        self.file.close()


def json_line(event: Event) -> str:
    """The event as one line of JSON, stamped with the wall-clock time."""
    record = to_record(event)
    record["time"] = round(time.time(), 3)
    return json.dumps(record) + "\n"


class JsonlMetrics:
    """One JSON object per logged step, evaluation and epoch, appended to metrics.jsonl."""

    def __init__(self, path: Path) -> None:
        self.out = RecordFile(path)

    def emit(self, event: Event) -> None:
        if isinstance(event, StepRecord | EvalRecord | EpochRecord):
            self.out.write(json_line(event), progress=isinstance(event, StepRecord))

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.close()


def format_metrics(metrics: dict[str, float]) -> str:
    """`accuracy 97.50% loss 0.0812`: each metric by name, as people read it."""
    return " ".join(f"{key} {metric_value(key, value)}" for key, value in metrics.items())


class EventFile:
    """Every event of one rank, one JSON object per line: what the parent's live view reads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.out = RecordFile(path)

    def emit(self, event: Event) -> None:
        self.out.write(json_line(event), progress=isinstance(event, StepRecord))

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.close()


class TextLog:
    """A human-readable log of the run: start, epochs, evaluations, messages and the end."""

    def __init__(self, path: Path) -> None:
        self.out = RecordFile(path)

    def write(self, text: str, progress: bool = False) -> None:
        self.out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n", progress)

    def emit(self, event: Event) -> None:
        if isinstance(event, RunStart):
            self.write(
                f"start {event.preset}: {event.epochs} epochs x {event.steps_per_epoch} steps, "
                f"from epoch {event.start_epoch} step {event.start_step}, "
                f"{event.parameters:,} parameters, {event.train_samples} train / "
                f"{event.test_samples} test samples, world size {event.world_size}"
            )
        elif isinstance(event, StepRecord):
            self.write(
                f"step {event.step} epoch {event.epoch} loss {event.loss:.4f} lr {event.lr:.3g} "
                f"{event.samples_per_s:.0f} samples/s",
                progress=True,
            )
        elif isinstance(event, EpochRecord):
            self.write(f"epoch {event.epoch} done in {event.seconds:.2f}s ({event.samples} samples)")
        elif isinstance(event, EvalRecord):
            self.write(
                f"eval {event.split} epoch {event.epoch} step {event.step}: {format_metrics(event.metrics)}"
            )
        elif isinstance(event, Message):
            self.write(f"{event.level}: {event.text}")
        elif isinstance(event, RunEnd):
            self.write(f"end: {event.status} {event.summary}")

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.close()
