"""Threads on a busy box: MNIST epoch time with one other CPU-bound process running, trainctl's default
thread count against trainer.threads=1 and 2 (and 2 threads under libgomp's spinning wait policy)."""

from __future__ import annotations

import statistics
import subprocess
import sys

from bench.common import data_root, median_after_warmup, run_trainctl

EPOCHS = 4
ROUNDS = 3
# (label, trainer.threads, extra environment); GOMP_SPINCOUNT set by the user keeps libgomp's own
# wait (trainctl then leaves the wait policy alone): the behaviour before the PASSIVE default.
CHOICES: list[tuple[str, int | None, dict[str, str]]] = [
    ("default", None, {}),
    ("threads=1", 1, {}),
    ("threads=2", 2, {}),
    ("threads=2, spinning wait", 2, {"GOMP_SPINCOUNT": "300000"}),
]


def main() -> dict[str, float]:
    from trainctl.runtime.threads import thread_budget

    root = data_root()
    args = ["conf=mlp_mnist", f"data.root={root}", f"trainer.epochs={EPOCHS}", "launcher.nproc=1"]
    budget = thread_budget(1)
    print(
        f"MNIST MLP, 1 process, {EPOCHS} epochs, median epoch after the first; one other CPU-bound process "
        f"runs throughout; default here: {budget.threads} thread(s) from {budget.source}"
    )
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in CHOICES}
    try:
        for round_ in range(ROUNDS):
            order = CHOICES if round_ % 2 == 0 else CHOICES[::-1]
            for label, threads, env in order:
                records = run_trainctl(args, threads, env)
                seconds[label].append(
                    median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"])
                )
    finally:
        hog.kill()
        hog.wait()
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    best = min(v for label, v in medians.items() if label in ("threads=1", "threads=2"))
    for label, median in medians.items():
        runs = " ".join(f"{v:.2f}" for v in seconds[label])
        print(f"  {label:<26} {median:7.2f} s/epoch  ({median / best:.2f}x the best of 1 and 2; runs {runs})")
    ratio = medians["default"] / best
    print(f"  default / best = {ratio:.2f} (goal: at most 1.3)")
    return {"default_over_best": ratio, **{f"{k}_s": v for k, v in medians.items()}}


if __name__ == "__main__":
    main()
