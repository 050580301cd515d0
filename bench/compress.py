"""Compression figures on MNIST: int8, 50% pruning + 1 fine-tuning epoch, structured pruning, distillation.

Everything goes through the real commands (`trainctl train`, `trainctl compress`) in subprocesses and
reads the report cards they write. Latency: 1 thread (other work shares this machine's cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, data_root

THREADS = 1
MNIST = ["conf=mlp_mnist", "launcher.nproc=1", "parallel=none", f"trainer.threads={THREADS}"]


def trainctl(args: list[str], runs: Path) -> tuple[str, float]:
    """Run one trainctl command; its output and wall seconds (exits the benchmark when it fails)."""
    env = {**os.environ, "TRAINCTL_RUNS_DIR": str(runs), "TRAINCTL_DATA_DIR": str(data_root())}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, env=env, cwd=REPO
    )
    if out.returncode != 0:
        sys.exit(f"bench: trainctl {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout, time.perf_counter() - started


def latest(runs: Path) -> Path:
    return (runs / "latest").resolve()


def accuracy(run: Path) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "eval"][-1]["accuracy"]


def card_line(name: str, report: dict[str, Any], seconds: float) -> str:
    a, b = report["before"], report["after"]
    return (
        f"{name:<34} acc {a['metrics']['accuracy']:.2%} -> {b['metrics']['accuracy']:.2%} "
        f"({(b['metrics']['accuracy'] - a['metrics']['accuracy']) * 100:+.2f} pt) | "
        f"file {a['file_bytes'] / 1e6:.3f} -> {b['file_bytes'] / 1e6:.3f} MB "
        f"({a['file_bytes'] / b['file_bytes']:.2f}x smaller) | "
        f"b1 {a['latency_ms']['1']:.3f} -> {b['latency_ms']['1']:.3f} ms "
        f"({a['latency_ms']['1'] / b['latency_ms']['1']:.2f}x) | "
        f"b64 {a['latency_ms']['64']:.3f} -> {b['latency_ms']['64']:.3f} ms "
        f"({a['latency_ms']['64'] / b['latency_ms']['64']:.2f}x faster) | "
        f"non-zero {a['nonzero_parameters']:,} -> {b['nonzero_parameters']:,} | {seconds:.0f} s"
    )


def compress(parent: Path, flags: list[str], runs: Path, name: str) -> dict[str, Any]:
    _, seconds = trainctl(["compress", str(parent), *flags, "--threads", str(THREADS)], runs)
    report = json.loads((latest(runs) / "report.json").read_text())
    print(card_line(name, report, seconds), flush=True)
    return report


def main() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        _, seconds = trainctl(["train", *MNIST], runs)
        parent = latest(runs)
        print(f"MNIST MLP 784-512-256-10, 10 epochs: {accuracy(parent):.2%} in {seconds:.0f} s", flush=True)
        results["int8"] = compress(parent, ["--quantize", "int8"], runs, "int8 dynamic")
        results["prune"] = compress(
            parent, ["--prune", "0.5", "--finetune-epochs", "1"], runs, "50% global L1 + 1 epoch"
        )
        results["channels"] = compress(
            parent,
            ["--prune", "0.5", "--prune-method", "structured-channels", "--finetune-epochs", "1"],
            runs,
            "50% channels + 1 epoch",
        )
        results["prune_int8"] = compress(
            parent,
            ["--prune", "0.5", "--finetune-epochs", "1", "--quantize", "int8"],
            runs,
            "50% L1 + 1 epoch, int8",
        )
        results["bf16"] = compress(parent, ["--quantize", "bf16"], runs, "bf16 weights")
        results["distill"] = distillation(runs, str(parent))
    return results


def distillation(runs: Path, mlp_teacher: str) -> dict[str, float]:
    """A 64-unit student (no dropout, 30 epochs, seed 0) alone, and taught with T=4, alpha=0.9 by the
    784-512-256-10 MLP and by the `cnn` model (5 epochs): same epochs, seed and settings every time."""
    trainctl(["train", *MNIST, "model=cnn", "trainer.epochs=5"], runs)
    cnn_teacher = str(latest(runs))
    student = [*MNIST, "model.hidden=[64]", "model.dropout=0", "trainer.epochs=30"]
    results = {}
    for name, extra in (
        ("alone", []),
        ("MLP teacher", [f"distill.teacher={mlp_teacher}"]),
        ("CNN teacher", [f"distill.teacher={cnn_teacher}"]),
    ):
        _, seconds = trainctl(["train", *student, *extra], runs)
        results[name] = accuracy(latest(runs))
        print(f"distillation, 64-unit student, {name}: {results[name]:.2%} ({seconds:.0f} s)", flush=True)
    for name, teacher in (("MLP", mlp_teacher), ("CNN", cnn_teacher)):
        print(f"  {name} teacher: {accuracy(Path(teacher)):.2%}")
    return results
