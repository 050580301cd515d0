"""Helpers of the long accuracy benchmarks: one trainctl run's accuracy, epoch times and wall time."""

from __future__ import annotations

import os
import time

from bench.common import run_trainctl


def trainctl_accuracy(args: list[str]) -> dict[str, float]:
    """Train once (live view on, all cores); test accuracy of the last evaluation, seconds per epoch, wall."""
    threads = os.cpu_count() or 1
    started = time.perf_counter()
    records = run_trainctl(args, threads)
    wall = time.perf_counter() - started
    evals = [r for r in records if r["kind"] == "eval"]
    epochs = [r["seconds"] for r in records if r["kind"] == "epoch"]
    return {"accuracy": evals[-1]["accuracy"], "epoch_seconds": epochs, "wall_seconds": wall}
