"""Orchestrator overhead: seconds per epoch of `trainctl train conf=mlp_mnist` against a plain loop."""

from __future__ import annotations

import os
import statistics

from bench.common import data_root, paired_epochs, print_paired
from bench.load import ForeignLoad

EPOCHS = 8
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))


def main() -> dict[str, float]:
    root = data_root()
    threads = os.cpu_count() or 1
    with ForeignLoad() as load:
        plain, ours, again = paired_epochs(
            "plain_mlp.py",
            ["--data-root", str(root), "--epochs", str(EPOCHS)],
            ["conf=mlp_mnist", f"data.root={root}", f"trainer.epochs={EPOCHS}", "launcher.nproc=1"],
            ROUNDS,
            threads,
            control=True,
        )
    print(
        f"MNIST MLP 784-512-256-10, batch 64, {threads} threads; {ROUNDS} rounds of alternating runs, "
        f"median of {EPOCHS - 1} epochs each (first epoch is warm-up):"
    )
    overhead = print_paired(plain, ours, 8000, load, again)
    p, o = statistics.median(plain), statistics.median(ours)
    return {"plain_s_per_epoch": p, "trainctl_s_per_epoch": o, "overhead": overhead}


if __name__ == "__main__":
    main()
