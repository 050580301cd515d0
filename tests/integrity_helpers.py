"""Shared helpers of the integrity suites: a small run, fingerprints of a run's files, damaged bytes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.conftest import SINGLE
from trainctl.cli.train import train

SMALL = ["trainer.schedule=constant", "model.hidden=[32]", *SINGLE]  # 23 steps an epoch, constant schedule


def small_run(epochs: int = 2, *extra: str) -> Path:
    """A finished mlp_digits run of `epochs` epochs (checkpoints at steps 23, 46, ...)."""
    return Path(train([f"trainer.epochs={epochs}", *SMALL, *extra])["run dir"])


def fingerprint(runs_root: Path) -> dict[str, str]:
    """sha256 of every file under the runs root (a run's logs/ excepted) and where each link points:
    equal fingerprints mean nothing was written, removed or re-pointed."""
    found = {}
    for path in sorted(runs_root.rglob("*")):
        rel = str(path.relative_to(runs_root))
        if "/logs/" in f"/{rel}/":
            continue
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def damage(path: Path, how: str) -> None:
    """Flip 4 KB in the middle of a file, truncate it to 1,000 bytes, or empty it."""
    data = bytearray(path.read_bytes())
    if how == "flipped":
        middle = len(data) // 2
        data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    elif how == "truncated":
        data = data[:1000]
    else:
        data = bytearray()
    path.write_bytes(bytes(data))


def step_records(run: Path) -> list[int]:
    """The steps of the train records in metrics.jsonl, in order (a torn last line of a live run skipped)."""
    if not (run / "metrics.jsonl").is_file():
        return []
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return [r["step"] for r in records if r["kind"] == "train"]


def duplicates(steps: list[int]) -> list[int]:
    return sorted(step for step, n in Counter(steps).items() if n > 1)


def meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def wait_for(condition, timeout: float = 90.0, what: str = "the condition") -> None:  # noqa: ANN001
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pid(run: Path, rank: int) -> int:
    first = (run / "logs" / f"rank{rank}.log").read_text().splitlines()[0]  # "rank R/W pid P restart N"
    return int(first.split()[3])


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)
