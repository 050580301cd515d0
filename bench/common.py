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
    script: str,
    script_args: list[str],
    trainctl_args: list[str],
    rounds: int,
    threads: int,
    *,
    control: bool = False,
) -> tuple[list[float], list[float], list[float]]:
    """Seconds per epoch (median after warm-up) of a plain script and of trainctl, in alternating rounds;
    with `control`, each round runs the plain script again after trainctl (the third list, else empty).

    Rounds alternate which side goes first, so machine drift hits both sides alike. With the control,
    trainctl runs between the two plain runs of its round (plain, trainctl, plain), which cancels a steady
    drift; the two plain runs against each other are an A/A test: how far this machine moves a ratio with
    no cause.
    """
    sides = ["plain", "ours", "again"] if control else ["plain", "ours"]
    seconds: dict[str, list[float]] = {side: [] for side in ["plain", "ours", "again"]}
    for round_ in range(rounds):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            if side == "ours":  # trainctl in a pseudo-terminal: its live progress view is measured too
                records = run_trainctl(trainctl_args, threads)
                seconds[side].append(
                    median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"])
                )
            else:
                records = run_script(REPO / "bench" / script, script_args, threads)
                seconds[side].append(median_after_warmup([r["seconds"] for r in records]))
    return seconds["plain"], seconds["ours"], seconds["again"]


def print_paired(
    plain: list[float], ours: list[float], samples: int, load: ForeignLoad, again: list[float] | None = None
) -> float:
    """Print both sides' median samples/s and seconds per epoch and the overhead (marked when other
    processes ran meanwhile), and the control's ratio when there is one; returns the overhead (median
    of the rounds' ratios, each against the mean of the plain runs around trainctl's)."""
    reference = [(p + a) / 2 for p, a in zip(plain, again, strict=True)] if again else plain
    ratios = [o / p for o, p in zip(ours, reference, strict=True)]
    overhead = statistics.median(ratios) - 1
    for name, side in (("plain PyTorch loop", plain), ("trainctl train    ", ours)):
        median = statistics.median(side)
        runs = " ".join(f"{v:.3f}" for v in side)
        print(f"  {name}  {samples / median:9,.1f} samples/s ({median:.3f} s/epoch); runs {runs}")
    print(
        f"  overhead            {overhead:+.1%} median of the rounds' ratios "
        f"(range {min(ratios) - 1:+.1%} .. {max(ratios) - 1:+.1%}); goal: at most +2%{load.verdict()}"
    )
    if again:
        same = [a / p for a, p in zip(again, plain, strict=True)]
        print(
            f"  control             {statistics.median(same) - 1:+.1%} the plain loop against itself in the "
            f"same rounds (range {min(same) - 1:+.1%} .. {max(same) - 1:+.1%}): this machine's noise alone"
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
