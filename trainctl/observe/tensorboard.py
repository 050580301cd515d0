"""Sink `tensorboard`: training steps, evaluations and epochs as TensorBoard scalars in <run>/tensorboard/."""

from __future__ import annotations

from pathlib import Path

from trainctl.observe.events import EpochRecord, EvalRecord, Event, StepRecord


class TensorBoardSink:
    """Writes event files that `tensorboard --logdir runs/` shows, one run per folder."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def emit(self, event: Event) -> None:
        if isinstance(event, StepRecord):
            self.writer.add_scalar("train/loss", event.loss, event.step)
            self.writer.add_scalar("train/lr", event.lr, event.step)
            self.writer.add_scalar("train/samples_per_s", event.samples_per_s, event.step)
        elif isinstance(event, EvalRecord):
            for name, value in event.metrics.items():
                self.writer.add_scalar(f"{event.split}/{name}", value, event.step)
        elif isinstance(event, EpochRecord):
            self.writer.add_scalar("epoch/seconds", event.seconds, event.step)

    def close(self) -> None:
        self.writer.close()
