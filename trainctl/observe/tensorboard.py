"""Sink `tensorboard`: training steps, evaluations and epochs as TensorBoard scalars, and the run's config
in the HParams tab, in <runs root>/tensorboard/<preset>/<run>/ (outside the run directories, so that
`tensorboard --logdir runs/` does not show a run a second time through the `latest` link)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainctl.observe.events import EpochRecord, EvalRecord, Event, RunStart, StepRecord
from trainctl.runs.run_dir import RunDir

HIDDEN_HPARAMS = ("run.",)  # where files go, not how the model was trained


def tensorboard_dir(run: RunDir) -> Path:
    """Where a run's event files go: beside the folder that holds the `latest` link, never under it."""
    return run.path.parent.parent / "tensorboard" / run.path.parent.name / run.path.name


def flat_hparams(tree: Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """The config as HParams values: dotted keys, numbers and text; lists as an override spells them."""
    if isinstance(tree, dict):
        out: dict[str, bool | int | float | str] = {}
        for key, value in tree.items():
            out.update(flat_hparams(value, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if tree is None or any(key.startswith(hidden) for hidden in HIDDEN_HPARAMS):
        return {}
    if isinstance(tree, bool):
        return {key: str(tree).lower()}
    if isinstance(tree, int | float | str):
        return {key: tree}
    if isinstance(tree, list | tuple):
        return {key: "[" + ",".join(str(v) for v in tree) + "]"}
    return {key: str(tree)}


class TensorBoardSink:
    """Writes event files that `tensorboard --logdir runs/` shows once per run: scalars under train/,
    test/ and epoch/, and the run's hyperparameters (its config.yaml) in the HParams tab."""

    def __init__(self, run: RunDir) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        self.writer = SummaryWriter(log_dir=str(tensorboard_dir(run)))

    def emit(self, event: Event) -> None:
        if isinstance(event, RunStart):
            self.hparams()
        elif isinstance(event, StepRecord):
            self.writer.add_scalar("train/loss", event.loss, event.step)
            self.writer.add_scalar("train/lr", event.lr, event.step)
            self.writer.add_scalar("train/samples_per_s", event.samples_per_s, event.step)
        elif isinstance(event, EvalRecord):
            for name, value in event.metrics.items():
                self.writer.add_scalar(f"{event.split}/{name}", value, event.step)
        elif isinstance(event, EpochRecord):
            self.writer.add_scalar("epoch/seconds", event.seconds, event.step)

    def hparams(self) -> None:
        """The session's hyperparameters, in this run's own event files (not a run of their own, as
        SummaryWriter.add_hparams would make): TensorBoard lists the run's test/ scalars beside them."""
        from torch.utils.tensorboard.summary import hparams

        if not self.run.config_file.is_file():
            return
        tree = yaml.safe_load(self.run.config_file.read_text()) or {}
        _, session_start, _ = hparams(flat_hparams(tree), {})
        self.writer.file_writer.add_summary(session_start)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
