"""The OpenMP wait policy on a quiet machine: trainctl's default against the user setting
OMP_WAIT_POLICY=ACTIVE or PASSIVE, on the MNIST MLP (1 process x 2 threads, and 2 DDP ranks x 1 thread)
and ResNet-20 (1 process x 2 threads), in alternating runs."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

from bench.common import data_root, median_after_warmup, run_trainctl
from bench.load import ForeignLoad

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
POLICIES: list[tuple[str, dict[str, str]]] = [
    ("trainctl default", {}),
    ("OMP_WAIT_POLICY=ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
]


def samples_per_second(args: list[str], env: dict[str, str]) -> float:
    """Median samples/s of a run: whole epochs when it has several, else its logged steps after the first."""
    records = run_trainctl(args, None, env)
    epochs = [r for r in records if r["kind"] == "epoch"]
    if len(epochs) > 1:
        return median_after_warmup([r["samples"] / r["seconds"] for r in epochs])
    steps = [r["samples_per_s"] for r in records if r["kind"] == "train"]
    return statistics.median(steps[1:] if len(steps) > 1 else steps)


def compare(name: str, measure: Callable[[dict[str, str]], float]) -> dict[str, float]:
    """Each policy's median samples/s over ROUNDS rounds, the order reversed every other round."""
    seen: dict[str, list[float]] = {label: [] for label, _ in POLICIES}
    with ForeignLoad() as load:
        for round_ in range(ROUNDS):
            for label, env in POLICIES if round_ % 2 == 0 else POLICIES[::-1]:
                seen[label].append(measure(env))
    medians = {label: statistics.median(values) for label, values in seen.items()}
    base = medians["trainctl default"]
    print(f"{name}:")
    for label, median in medians.items():
        runs = " ".join(f"{v:,.0f}" for v in seen[label])
        print(f"  {label:<24} {median:9,.0f} samples/s  {base / median:.2f}x  (runs {runs})")
    print(
        f"  trainctl default at {base / medians['OMP_WAIT_POLICY=ACTIVE']:.2f}x of ACTIVE "
        f"(goal: at least 1.0x){load.verdict()}"
    )
    return {f"{name}:{label}": v for label, v in medians.items()}


def main() -> dict[str, float]:
    root = data_root()
    mnist = ["conf=mlp_mnist", f"data.root={root}", "trainer.epochs=4"]
    results = compare(
        "MNIST MLP, 1 process x 2 threads",
        lambda env: samples_per_second([*mnist, "launcher.nproc=1", "parallel=none"], env),
    )
    results |= compare(
        "MNIST MLP, 2 ddp ranks x 1 thread",
        lambda env: samples_per_second([*mnist, "launcher.nproc=2", "parallel=ddp"], env),
    )
    results |= compare(
        "ResNet-20 (conf=resnet_cifar), 1 process x 2 threads, 60 steps",
        lambda env: samples_per_second(
            ["conf=resnet_cifar", f"data.root={root}", "trainer.max_steps=60", "trainer.log_every=10"], env
        ),
    )
    return results


if __name__ == "__main__":
    main()
