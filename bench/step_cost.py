"""Per-step orchestration cost: trainctl's loop against a plain one on a model too small to hide it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

from bench.plain_mlp import plain_epochs

BATCH = 16
EPOCHS = 5
ROUNDS = 5


def trainctl_epochs(epochs: int) -> list[float]:
    from trainctl.cli.train import train

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        summary = train(
            [
                "model=linear",
                "launcher.nproc=1",
                "parallel=none",
                f"trainer.batch_size={BATCH}",
                f"trainer.epochs={epochs}",
                "optim.weight_decay=0.01",
            ]
        )
    lines = (Path(summary["run dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r["seconds"] for r in map(json.loads, lines) if r["kind"] == "epoch"]


def main() -> dict[str, float]:
    from trainctl.config.compose import compose
    from trainctl.data import load_dataset

    os.environ["TRAINCTL_RUNS_DIR"] = tempfile.mkdtemp(prefix="trainctl-bench-")
    data = load_dataset(compose([]).config.data)
    x, y = data.train.inputs, data.train.targets
    steps = -(-len(y) // BATCH)
    plain, ours = [], []
    for _ in range(ROUNDS):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10))
        plain += plain_epochs(model, x, y, batch=BATCH, epochs=EPOCHS)[1:]
        ours += trainctl_epochs(EPOCHS)[1:]
    p, o = statistics.median(plain) / steps, statistics.median(ours) / steps
    print(f"linear model on digits, batch {BATCH}, {steps} steps/epoch, in one process, {ROUNDS} rounds:")
    print(
        f"  plain loop {p * 1e6:.0f} us/step, trainctl {o * 1e6:.0f} us/step: "
        f"orchestration costs {(o - p) * 1e6:+.1f} us per step"
    )
    return {"plain_us_per_step": p * 1e6, "trainctl_us_per_step": o * 1e6}


if __name__ == "__main__":
    main()
