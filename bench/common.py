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
from typing import TypeVar

from bench.load import ForeignLoad

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


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


def in_rounds(rounds: int, sides: list[tuple[str, Callable[[], T]]]) -> dict[str, list[T]]:
    """Each side measured once per round, the order reversed every other round, so machine drift hits
    every side alike; each side's results in round order."""
    seen: dict[str, list[T]] = {label: [] for label, _ in sides}
    for round_ in range(rounds):
        for label, measure in sides if round_ % 2 == 0 else sides[::-1]:
            seen[label].append(measure())
    return seen


def bracketed(
    middle: list[float], first: list[float], second: list[float]
) -> tuple[list[float], list[float]]:
    """Rounds of (reference, measured, reference again), in either order: each round's measured value over
    the mean of the reference runs around it (a steady drift cancels), and the second reference over the
    first, an A/A control: how far this machine moves a ratio with no cause."""
    ratios = [m / ((a + b) / 2) for m, a, b in zip(middle, first, second, strict=True)]
    return ratios, [b / a for a, b in zip(first, second, strict=True)]


def control_line(same: list[float], what: str) -> str:
    return (
        f"control: {what} against itself {statistics.median(same):.3f}x (range {min(same):.2f} .. "
        f"{max(same):.2f}): this machine's noise alone"
    )


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
    with `control`, each round runs the plain script again after trainctl (the third list, else empty),
    so trainctl always runs between the two (see `bracketed`)."""

    def plain() -> float:
        return median_after_warmup(
            [r["seconds"] for r in run_script(REPO / "bench" / script, script_args, threads)]
        )

    def ours() -> float:  # trainctl in a pseudo-terminal: its live progress view is measured too
        records = run_trainctl(trainctl_args, threads)
        return median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"])

    sides = [("plain", plain), ("ours", ours), *([("again", plain)] if control else [])]
    seen = in_rounds(rounds, sides)
    return seen["plain"], seen["ours"], seen.get("again", [])


def print_paired(
    plain: list[float], ours: list[float], samples: int, load: ForeignLoad, again: list[float] | None = None
) -> float:
    """Print both sides' median samples/s and seconds per epoch and the overhead (marked when other
    processes ran meanwhile), and the control when there is one; returns the overhead (median of the
    rounds' ratios, against the mean of the plain runs around trainctl's when there is a control)."""
    ratios, same = (
        bracketed(ours, plain, again) if again else ([o / p for o, p in zip(ours, plain, strict=True)], [])
    )
    overhead = statistics.median(ratios) - 1
    for name, side in (("plain PyTorch loop", plain), ("trainctl train    ", ours)):
        median = statistics.median(side)
        runs = " ".join(f"{v:.3f}" for v in side)
        print(f"  {name}  {samples / median:9,.1f} samples/s ({median:.3f} s/epoch); runs {runs}")
    print(
        f"  overhead            {overhead:+.1%} median of the rounds' ratios "
        f"(range {min(ratios) - 1:+.1%} .. {max(ratios) - 1:+.1%}); goal: at most +2%{load.verdict()}"
    )
    if same:
        print(f"  {control_line(same, 'the plain loop (s/epoch)')}")
    return overhead


def alternating(
    rounds: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[float, float, list[float]]:
    """Medians of `first` and `second` measured in turns (see `in_rounds`), and the ratio first / second
    of each round's pair."""
    seen = in_rounds(rounds, [("first", first), ("second", second)])
    a, b = seen["first"], seen["second"]
    return statistics.median(a), statistics.median(b), [x / y for x, y in zip(a, b, strict=True)]


def pairs_line(ratios: list[float]) -> str:
    return f"median of {len(ratios)} paired ratios (range {min(ratios):.2f} .. {max(ratios):.2f})"
