"""The records a run emits (start, logged steps, evaluations, epochs, end) and the fan-out Reporter."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

BEAT_EVERY_S = 10.0  # a rank that makes progress says so at least this often (see Reporter.beat)


@dataclass
class RunStart:
    run_dir: str
    preset: str
    epochs: int
    steps_per_epoch: int
    start_epoch: int
    start_step: int
    world_size: int
    parameters: int
    train_samples: int
    test_samples: int
    max_steps: int | None = None  # trainer.max_steps: the run ends there, before its planned epochs
    rank: int = 0
    kind: str = "start"


@dataclass
class StepRecord:
    """Training progress averaged over the steps since the previous record."""

    step: int
    epoch: int
    batch: int  # batches done in this epoch
    loss: float
    lr: float
    samples_per_s: float
    rank: int = 0
    kind: str = "train"


@dataclass
class EvalRecord:
    step: int
    epoch: int
    split: str
    metrics: dict[str, float]
    seconds: float
    rank: int = 0
    kind: str = "eval"


@dataclass
class EpochRecord:
    epoch: int
    step: int
    seconds: float  # training time of the epoch: evaluation and checkpointing excluded
    samples: int
    rank: int = 0
    kind: str = "epoch"


@dataclass
class Message:
    text: str
    level: str = "info"
    rank: int = 0
    kind: str = "message"


@dataclass
class RunEnd:
    status: str  # finished | failed | interrupted
    summary: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    kind: str = "end"


@dataclass
class Beat:
    """A rank is alive and making progress (between the records above; for the parent's stall watch)."""

    rank: int = 0
    kind: str = "beat"


Event = RunStart | StepRecord | EvalRecord | EpochRecord | Message | RunEnd | Beat


KINDS: dict[str, type] = {
    "start": RunStart,
    "train": StepRecord,
    "eval": EvalRecord,
    "epoch": EpochRecord,
    "message": Message,
    "end": RunEnd,
    "beat": Beat,
}


def to_record(event: Event) -> dict[str, Any]:
    """An event as a flat JSON-ready dict (evaluation metrics are lifted to the top level)."""
    record = dict(vars(event))  # the fields are flat: a copy of the instance dict (asdict is ~8x slower)
    metrics = record.pop("metrics", None)
    if metrics:
        record.update(metrics)
    return record


def from_record(record: dict[str, Any]) -> Event:
    """The event that `to_record` flattened."""
    cls = KINDS[record["kind"]]
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in record.items() if k in names}
    if cls is EvalRecord:
        known["metrics"] = {k: v for k, v in record.items() if k not in names and k != "time"}
    return cls(**known)


class Sink(Protocol):
    """Anything that consumes events: the console, metrics.jsonl, train.log, a logger service."""

    def emit(self, event: Event) -> None: ...

    def flush(self) -> None:
        """Put what was emitted so far where it is kept (before a checkpoint); most sinks hold nothing."""

    def close(self) -> None: ...


class Reporter:
    """Fans every event out to its sinks, one event at a time (a progress ticker reports from a thread)."""

    def __init__(self, sinks: list[Sink] | None = None, beat_every_s: float = BEAT_EVERY_S) -> None:
        self.sinks: list[Sink] = list(sinks or [])
        self.lock = threading.Lock()
        self.beat_every_s = beat_every_s
        self.last_emit = time.monotonic()

    def emit(self, event: Event) -> None:
        with self.lock:
            self.last_emit = time.monotonic()
            for sink in self.sinks:
                sink.emit(event)

    def beat(self, rank: int) -> None:
        """Emit a Beat when nothing was emitted for beat_every_s: cheap enough to call every step."""
        if time.monotonic() - self.last_emit >= self.beat_every_s:
            self.emit(Beat(rank))

    def flush(self) -> None:
        """Every sink's records so far, kept: called before a checkpoint, so a run that dies after it keeps
        every step line up to it."""
        with self.lock:
            for sink in self.sinks:
                sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
