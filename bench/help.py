"""Latency of `trainctl --help`, a command's --help and --version in a fresh process (torch for scale)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.common import REPO

ROUNDS = 7
COMMANDS = [["--help"], ["train", "--help"], ["configs", "show", "--help"], ["--version"]]


def seconds(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> dict[str, float]:
    figures = {}
    for command in COMMANDS:
        times = [seconds([sys.executable, "-m", "trainctl", *command]) for _ in range(ROUNDS)]
        figures[" ".join(command)] = statistics.median(times)
    figures["python -c 'import torch' (for scale)"] = statistics.median(
        seconds([sys.executable, "-c", "import torch"]) for _ in range(ROUNDS)
    )
    for name, value in figures.items():
        print(f"{name:>40}: {value:.2f} s (median of {ROUNDS})")
    return figures


if __name__ == "__main__":
    main()
