"""`python -m bench estimate`: `trainctl plan --estimate` against the real run, side by side, per job:
seconds per epoch (or for the whole run), peak memory per rank, and the error in percent; and the what-if
model's 2-rank step predicted from a 1-rank measurement beside the measured 2-rank step.

The real run's peak memory per rank is the highest VmHWM seen of its process (rank 0 of a one-process
job is trainctl itself; launched ranks are found by the pid in their log), polled every 0.2 s.
BENCH_ESTIMATE_CASES=name,name picks cases (default all; names below).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO, data_root

CASES: dict[str, list[str]] = {
    "mlp_mnist_ddp": ["conf=mlp_mnist", "launcher.nproc=2", "parallel=ddp"],
    "mf_movielens": ["conf=mf_movielens"],
    "mlp_mnist_fsdp": ["conf=mlp_mnist", "launcher.nproc=2", "parallel=fsdp", "trainer.epochs=3"],
    "mlp_mnist_pipeline": ["conf=mlp_mnist", "launcher.nproc=2", "parallel=pipeline", "trainer.epochs=3"],
    "resnet_cifar": ["conf=resnet_cifar", "trainer.epochs=1"],
    "bert_sst2": ["conf=bert_sst2", "trainer.max_steps=300"],
}
WHAT_IF = ["conf=mlp_mnist", "launcher.nproc=1", "parallel=none", "trainer.epochs=1"]


def hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class MemoryWatch:
    """Peak resident memory per rank of a running trainctl job under `runs`."""

    main_pid: int
    runs: Path
    peaks: dict[int, int] = field(default_factory=dict)  # rank -> bytes
    stop: threading.Event = field(default_factory=threading.Event)

    def ranks(self) -> dict[int, int]:
        """rank -> pid: launched ranks from their logs; else rank 0 is the trainctl process itself."""
        found = {}
        for log in self.runs.glob("*/*/logs/rank*.log"):
            for line in log.read_text(errors="replace").splitlines():
                match = re.match(r"rank (\d+)/\d+ pid (\d+)", line)
                if match:
                    found[int(match.group(1))] = int(match.group(2))
        return found or {0: self.main_pid}

    def poll(self) -> None:
        while not self.stop.is_set():
            for rank, pid in self.ranks().items():
                value = hwm(pid)
                if value is not None:
                    self.peaks[rank] = max(self.peaks.get(rank, 0), value)
            time.sleep(0.2)


def trainctl_env(runs: str) -> dict[str, str]:
    return {**os.environ, "TRAINCTL_RUNS_DIR": runs, "TRAINCTL_DATA_DIR": str(data_root())}


def estimate(args: list[str], extra: list[str] = ()) -> tuple[dict, float]:
    """`trainctl plan --estimate --json ARGS`: its document and the wall seconds it took."""
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "trainctl", "plan", "--estimate", "--json", *extra, *args],
            env=trainctl_env(runs),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"bench: the estimate failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout), took


def train(args: list[str]) -> tuple[list[dict], float, dict[int, int]]:
    """`trainctl train ARGS`: its metrics records, wall seconds and peak memory per rank."""
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainctl", "train", *args],
            env=trainctl_env(runs),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        watch = MemoryWatch(proc.pid, Path(runs))
        poller = threading.Thread(target=watch.poll, daemon=True)
        poller.start()
        _, err = proc.communicate()
        took = time.perf_counter() - started
        watch.stop.set()
        poller.join()
        if proc.returncode != 0:
            sys.exit(f"bench: trainctl train failed:\n{err[-3000:]}")
        (metrics,) = Path(runs).glob("*/*/metrics.jsonl")
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return records, took, watch.peaks


def error(estimated: float, measured: float) -> str:
    return f"{(estimated - measured) / measured:+.0%}" if measured else "-"


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_case(name: str, args: list[str]) -> list[str]:
    document, estimate_took = estimate(args)
    e = document["estimate"]
    records, run_took, peaks = train(args)
    epochs = [r["seconds"] for r in records if r["kind"] == "epoch" and r.get("rank", 0) == 0]
    rows = [name, f"{estimate_took:.0f}"]
    if epochs and "max_steps" not in " ".join(args):
        measured_epoch = statistics.mean(epochs)
        rows += [
            f"{e['seconds_per_epoch']:.2f}",
            f"{measured_epoch:.2f}",
            error(e["seconds_per_epoch"], measured_epoch),
        ]
    else:
        rows += ["-", "-", "-"]
    rows += [f"{e['total_seconds']:.1f}", f"{run_took:.1f}", error(e["total_seconds"], run_took)]
    estimated_peaks = e["peak_memory_bytes_per_rank"]
    measured_peaks = [peaks.get(rank, 0) for rank in range(len(estimated_peaks))]
    rows += [
        " / ".join(f"{b / 1e6:.0f}" for b in estimated_peaks),
        " / ".join(f"{b / 1e6:.0f}" for b in measured_peaks),
        " / ".join(error(a, b) for a, b in zip(estimated_peaks, measured_peaks, strict=True)),
        load(),
    ]
    return rows


def what_if_check() -> None:
    """The 2-rank DDP step predicted from a 1-rank measurement, beside the measured 2-rank step."""
    one, _ = estimate(WHAT_IF, ["--world", "2"])
    two, _ = estimate(["conf=mlp_mnist", "launcher.nproc=2", "parallel=ddp", "trainer.epochs=1"])
    (prediction,) = one["what_if"]
    threads_one = one["estimate"]["threads_per_rank"]
    threads_two = two["estimate"]["threads_per_rank"]
    shared = prediction["compute_seconds"] * threads_one / threads_two + prediction["comm_seconds"]
    measured = two["estimate"]["seconds_per_step"]
    print(
        f"  what-if, conf=mlp_mnist DDP: 1 rank measured {one['estimate']['seconds_per_step']:.4f} s/step "
        f"({threads_one} threads)\n"
        "    predicted at 2 ranks, each as fast as the measured one: "
        f"{prediction['step_seconds']:.4f} s/step "
        f"(compute {prediction['compute_seconds']:.4f} + communication {prediction['comm_seconds']:.5f})\n"
        f"    predicted at 2 ranks sharing this box ({threads_two} thread(s) each, compute x "
        f"{threads_one}/{threads_two}): {shared:.4f} s/step\n"
        f"    measured at 2 ranks: {measured:.4f} s/step; error of the shared-box prediction "
        f"{error(shared, measured)}"
    )


def main() -> None:
    chosen = [c for c in os.environ.get("BENCH_ESTIMATE_CASES", ",".join(CASES)).split(",") if c]
    unknown = [c for c in chosen if c not in CASES and c != "what_if"]
    if unknown:
        sys.exit(f"bench estimate: unknown case(s) {unknown}; choose from {', '.join([*CASES, 'what_if'])}")
    print(f"  load average at start: {load()} ({os.cpu_count()} CPUs)")
    header = [
        "case",
        "estimate s",
        "est s/epoch",
        "real s/epoch",
        "err",
        "est run s",
        "real run s",
        "err",
        "est peak MB/rank",
        "real peak MB/rank",
        "err",
        "load",
    ]
    print("  " + " | ".join(header))
    for name in chosen:
        if name == "what_if":
            continue
        print("  " + " | ".join(run_case(name, CASES[name])), flush=True)
    if "what_if" in chosen or "BENCH_ESTIMATE_CASES" not in os.environ:
        what_if_check()
    print(f"  load average at end: {load()}")
