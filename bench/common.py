"""Helpers shared by the benchmarks: where the data is, running trainctl under a terminal, medians."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
from collections.abc import Callable
from pathlib import Path

from bench.load import ForeignLoad

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    root = Path(os.environ.get("TRAINCTL_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "mnist").is_dir():
        sys.exit(f"bench: the shared data sets are not at {root}; set TRAINCTL_DATA_DIR")
    return root


def in_terminal(argv: list[str], env: dict[str, str], columns: int = 80, rows: int = 30) -> tuple[int, str]:
    """Run `argv` in a pseudo-terminal of `columns` x `rows` (so rich draws its live view as a person
    sees it); its exit code and everything it wrote."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=REPO)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return proc.wait(), output.decode(errors="replace")


def run_trainctl(args: list[str], threads: int | None, env: dict[str, str] | None = None) -> list[dict]:
    """Run `trainctl train ARGS` in a pseudo-terminal (so its live view renders) and return its records.

    `threads` None leaves the thread count to trainctl's default; `env` adds variables."""
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "TRAINCTL_RUNS_DIR": runs, **(env or {})}
        threads_arg = [] if threads is None else [f"trainer.threads={threads}"]
        argv = [sys.executable, "-m", "trainctl", "train", *args, *threads_arg]
        code, output = in_terminal(argv, env)
        if code != 0:
            sys.exit(f"bench: trainctl failed:\n{output[-3000:]}")
        (metrics,) = Path(runs).glob("*/*/metrics.jsonl")
        return [json.loads(line) for line in metrics.read_text().splitlines()]


def run_script(script: Path, args: list[str], threads: int) -> list[dict]:
    """Run a plain benchmark script that prints one JSON record per line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, str(script), *args, "--threads", str(threads)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def median_after_warmup(values: list[float]) -> float:
    """Median of per-epoch figures, the first (warm-up) epoch left out."""
    return statistics.median(values[1:] if len(values) > 1 else values)


def paired_epochs(
    script: str, script_args: list[str], trainctl_args: list[str], rounds: int, threads: int
) -> tuple[list[float], list[float]]:
    """Seconds per epoch (median after warm-up) of a plain script and of trainctl, in alternating pairs.

    Pairs alternate which side goes first, so machine drift hits both sides alike.
    """
    plain, ours = [], []
    for round_ in range(rounds):
        for side in ["plain", "ours"] if round_ % 2 == 0 else ["ours", "plain"]:
            if side == "plain":
                records = run_script(REPO / "bench" / script, script_args, threads)
                plain.append(median_after_warmup([r["seconds"] for r in records]))
            else:  # trainctl in a pseudo-terminal: its live progress view is part of what is measured
                records = run_trainctl(trainctl_args, threads)
                ours.append(median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"]))
    return plain, ours


def print_paired(plain: list[float], ours: list[float], samples: int, load: ForeignLoad) -> float:
    """Print both sides' median samples/s and seconds per epoch and the overhead (marked when other
    processes ran meanwhile); returns the overhead (median of the paired ratios)."""
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    overhead = statistics.median(ratios) - 1
    for name, side in (("plain PyTorch loop", plain), ("trainctl train    ", ours)):
        median = statistics.median(side)
        runs = " ".join(f"{v:.3f}" for v in side)
        print(f"  {name}  {samples / median:9,.1f} samples/s ({median:.3f} s/epoch); runs {runs}")
    print(
        f"  overhead            {overhead:+.1%} median of paired ratios (range {min(ratios) - 1:+.1%} .. "
        f"{max(ratios) - 1:+.1%}); goal: at most +2%{load.verdict()}"
    )
    return overhead


def alternating(
    rounds: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[float, float, list[float]]:
    """Medians of `first` and `second` measured in turns (which goes first alternates by round), and
    the ratio first / second of each round's pair."""
    a, b = [], []
    for round_ in range(rounds):
        for side in (0, 1) if round_ % 2 == 0 else (1, 0):
            (a if side == 0 else b).append(first() if side == 0 else second())
    return statistics.median(a), statistics.median(b), [x / y for x, y in zip(a, b, strict=True)]


def pairs_line(ratios: list[float]) -> str:
    return f"median of {len(ratios)} paired ratios (range {min(ratios):.2f} .. {max(ratios):.2f})"
