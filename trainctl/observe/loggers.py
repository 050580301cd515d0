"""The `logger` config: which metric sinks rank 0 adds besides metrics.jsonl and train.log."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trainctl.config.schema import Logger
from trainctl.observe.events import Sink
from trainctl.runs.run_dir import RunDir


def tensorboard(run: RunDir) -> Sink:
    from trainctl.observe.tensorboard import TensorBoardSink

    return TensorBoardSink(run)


def mlflow(run: RunDir) -> Sink:
    from trainctl.observe.mlflow_sink import MlflowSink

    return MlflowSink(run)


# metrics.jsonl is always written (reports, sweeps and `runs ls` read it), so `jsonl` adds nothing.
LOGGERS: dict[Logger, Callable[[RunDir], Sink] | None] = {
    Logger.jsonl: None,
    Logger.tensorboard: tensorboard,
    Logger.mlflow: mlflow,
}


def logger_sinks(names: Sequence[Logger | str], run: RunDir) -> list[Sink]:
    """One sink per configured logger (each named once)."""
    sinks = []
    for name in dict.fromkeys(Logger(n) for n in names):
        make = LOGGERS[name]
        if make is not None:
            sinks.append(make(run))
    return sinks
