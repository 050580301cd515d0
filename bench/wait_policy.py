"""The OpenMP wait policy on a quiet machine: trainctl's default against the user setting
OMP_WAIT_POLICY=ACTIVE or PASSIVE, on the MNIST MLP (1 process x 2 threads, and 2 DDP ranks x 1 thread),
ResNet-20 and MiniLM (1 process x 2 threads), in alternating runs."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from functools import partial

from bench.common import bracketed, control_line, data_root, in_rounds, median_after_warmup, run_trainctl
from bench.load import ForeignLoad

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
JOBS = ["mlp", "ddp", "resnet", "bert"]
DEFAULT, ACTIVE, AGAIN = "trainctl default", "OMP_WAIT_POLICY=ACTIVE", "ACTIVE again (control)"
POLICIES: list[tuple[str, dict[str, str]]] = [
    (DEFAULT, {}),
    (ACTIVE, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
]


def measured(args: list[str], env: dict[str, str]) -> tuple[float, list[float]]:
    """Median samples/s of a run (whole epochs when it has several, else its logged steps after the
    first) and its logged losses (a wait policy changes timing only: the losses must not move)."""
    records = run_trainctl(args, None, env)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    if len(epochs) > 1:
        return median_after_warmup([r["samples"] / r["seconds"] for r in epochs]), losses
    steps = [r["samples_per_s"] for r in records if r["kind"] == "train"]
    return statistics.median(steps[1:] if len(steps) > 1 else steps), losses


def compare(
    name: str,
    args: list[str],
    policies: list[tuple[str, dict[str, str]]] = POLICIES,
    rounds: int = ROUNDS,
    *,
    control: bool = False,
) -> dict[str, float]:
    """Each policy's median samples/s over `rounds` rounds (the order reversed every other round), and
    the default against ACTIVE as the median of each round's ratio.

    With `control` (in place of `policies`), each round runs ACTIVE twice, before and after the default
    (which then always runs between them): the default is compared with their mean, and the two ACTIVE
    runs against each other are an A/A test of this machine's noise."""
    active_env = dict(POLICIES[1][1])
    runs = [(ACTIVE, active_env), (DEFAULT, {}), (AGAIN, active_env)] if control else policies
    with ForeignLoad() as load:
        results = in_rounds(rounds, [(label, partial(measured, args, env)) for label, env in runs])
    seen = {label: [speed for speed, _ in each] for label, each in results.items()}
    losses = [run_losses for each in results.values() for _, run_losses in each]
    medians = {label: statistics.median(values) for label, values in seen.items()}
    base = medians[DEFAULT]
    print(f"{name}:")
    for label, median in medians.items():
        runs_text = " ".join(f"{v:,.0f}" for v in seen[label])
        print(f"  {label:<24} {median:9,.0f} samples/s  {base / median:.2f}x  (runs {runs_text})")
    if control:
        paired, same = bracketed(seen[DEFAULT], seen[ACTIVE], seen[AGAIN])
    else:
        paired, same = [d / a for d, a in zip(seen[DEFAULT], seen[ACTIVE], strict=True)], []
    identical = all(run == losses[0] for run in losses)
    print(
        f"  trainctl default at {statistics.median(paired):.3f}x of ACTIVE, median of {len(paired)} rounds' "
        f"ratios (range {min(paired):.2f} .. {max(paired):.2f}; goal: at least 1.0x); logged losses "
        f"{'identical in every run' if identical else 'DIFFER between runs'}{load.verdict()}"
    )
    if same:
        print(f"  {control_line(same, 'ACTIVE (samples/s)')}")
    return {f"{name}:{label}": v for label, v in medians.items()}


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    """All four jobs, or those named: `python -m bench wait_policy --only resnet`."""
    parser = argparse.ArgumentParser(prog="python -m bench wait_policy")
    parser.add_argument("--only", nargs="+", choices=JOBS, default=JOBS)
    chosen = parser.parse_args(list(argv)).only
    root = data_root()
    mnist = ["conf=mlp_mnist", f"data.root={root}", "trainer.epochs=4"]
    results: dict[str, float] = {}
    if "mlp" in chosen:
        results |= compare("MNIST MLP, 1 process x 2 threads", [*mnist, "launcher.nproc=1", "parallel=none"])
    if "ddp" in chosen:
        results |= compare("MNIST MLP, 2 ddp ranks x 1 thread", [*mnist, "launcher.nproc=2", "parallel=ddp"])
    if "resnet" in chosen:
        results |= compare(
            "ResNet-20 (conf=resnet_cifar), 1 process x 2 threads, 60 steps",
            ["conf=resnet_cifar", f"data.root={root}", "trainer.max_steps=60", "trainer.log_every=10"],
            control=True,  # PASSIVE's cost is shown on the MLP; ResNet's runs are long
        )
    if "bert" in chosen:
        results |= compare(
            "MiniLM (conf=bert_sst2), 1 process x 2 threads, 40 steps",
            ["conf=bert_sst2", f"data.root={root}", "trainer.max_steps=40", "trainer.log_every=5"],
            POLICIES[:2],
            rounds=3,
        )
    return results


if __name__ == "__main__":
    main()
