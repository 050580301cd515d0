"""Orchestrator overhead: seconds per epoch of `trainctl train conf=mlp_mnist` against a plain loop."""

from __future__ import annotations

import os
import statistics

from bench.common import REPO, data_root, median_after_warmup, run_script, run_trainctl

EPOCHS = 8
ROUNDS = 6


def main() -> dict[str, float]:
    root = data_root()
    threads = os.cpu_count() or 1
    plain, ours = [], []
    for round_ in range(ROUNDS):  # pairs in alternating order, so machine drift hits both sides alike
        sides = ["plain", "ours"] if round_ % 2 == 0 else ["ours", "plain"]
        for side in sides:
            if side == "plain":
                records = run_script(
                    REPO / "bench" / "plain_mlp.py",
                    ["--data-root", str(root), "--epochs", str(EPOCHS)],
                    threads,
                )
                plain.append(median_after_warmup([r["seconds"] for r in records]))
            else:  # trainctl in a pseudo-terminal: its live progress view is part of what is measured
                records = run_trainctl(
                    ["conf=mlp_mnist", f"data.root={root}", f"trainer.epochs={EPOCHS}"], threads
                )
                ours.append(median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"]))
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    overhead = statistics.median(ratios) - 1
    p, o = statistics.median(plain), statistics.median(ours)
    print(
        f"MNIST MLP 784-512-256-10, batch 64, {threads} threads; {ROUNDS} paired runs, "
        f"median of {EPOCHS - 1} epochs each (first epoch is warm-up):"
    )
    print(
        f"  plain PyTorch loop  {p:.3f} s/epoch ({8000 / p:,.0f} samples/s); runs "
        + " ".join(f"{v:.3f}" for v in plain)
    )
    print(
        f"  trainctl train      {o:.3f} s/epoch ({8000 / o:,.0f} samples/s); runs "
        + " ".join(f"{v:.3f}" for v in ours)
    )
    print(
        f"  overhead            {overhead:+.1%} median of paired ratios (range {min(ratios) - 1:+.1%} .. "
        f"{max(ratios) - 1:+.1%}); goal: at most +5%"
    )
    return {"plain_s_per_epoch": p, "trainctl_s_per_epoch": o, "overhead": overhead}


if __name__ == "__main__":
    main()
