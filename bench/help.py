"""Latency of --help, --version and a <TAB> completion, each in a fresh process (import torch for scale)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO

ROUNDS = 7
COMMANDS = [["--help"], ["train", "--help"], ["configs", "show", "--help"], ["--version"]]


def seconds(args: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True, cwd=REPO, env={**os.environ, **(env or {})})
    return time.perf_counter() - started


def completion_env(words: str) -> dict[str, str]:
    """What the bash completion script hands trainctl for one <TAB>."""
    return {
        "_TRAINCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }


def main() -> dict[str, float]:
    figures = {}
    for command in COMMANDS:
        times = [seconds([sys.executable, "-m", "trainctl", *command]) for _ in range(ROUNDS)]
        figures[" ".join(command)] = statistics.median(times)
    for words in ("trainctl train conf=", "trainctl eval "):
        env = completion_env(words)
        script = str(Path(sys.executable).parent / "trainctl")  # the prog name decides the variable's name
        times = [seconds([script], env) for _ in range(ROUNDS)]
        figures[f"<TAB> after '{words}'"] = statistics.median(times)
    figures["python -c 'import torch' (for scale)"] = statistics.median(
        seconds([sys.executable, "-c", "import torch"]) for _ in range(ROUNDS)
    )
    for name, value in figures.items():
        print(f"{name:>40}: {value:.2f} s (median of {ROUNDS})")
    return figures


if __name__ == "__main__":
    main()
