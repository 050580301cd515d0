"""What the reproducibility record costs at a run's start: writing it in a fresh process (MNIST's hashes first
computed, then cached), and `trainctl train` with against without it; and what a dead MLflow server costs."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, data_root

RUN = ["conf=mlp_mnist", "launcher.nproc=1", "parallel=none", "trainer.max_steps=1", "trainer.threads=1"]
PAIRS = 5

# A child process: plan the job, then time keep_record alone into a fresh run directory.
TIME_RECORD = """
import sys, time
from pathlib import Path
from trainctl import api
from trainctl.data import data_paths
from trainctl.runs.record import keep_record
from trainctl.runs.run_dir import create_run_dir
plan = api.plan_job(sys.argv[2:]).plan
run = create_run_dir(Path(sys.argv[1]), "bench")
started = time.perf_counter()
keep_record(run, plan, data_paths(plan.config.data))
print(time.perf_counter() - started)
"""

# A child process: the fingerprint of a file, timed (the cache decides whether it is read).
TIME_HASH = """
import sys, time
from pathlib import Path
from trainctl.runs.fingerprint import fingerprints
started = time.perf_counter()
fingerprints([Path(sys.argv[1])])
print(time.perf_counter() - started)
"""
BIG_FILE_MIB = 512

# A child process: `trainctl train`, with the record switched off when asked (the only difference).
TRAIN = """
import sys
if sys.argv[1] == "without":
    import trainctl.runs.record as record
    record.keep_record = lambda run, plan, paths: None
from trainctl.cli.app import main
sys.argv = ["trainctl", "train", *sys.argv[2:]]
main()
"""


TRAIN_WITH = [sys.executable, "-c", TRAIN, "with"]
TRAIN_WITHOUT = [sys.executable, "-c", TRAIN, "without"]


def seconds(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:4])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started


def paired(first: list[str], second: list[str], pairs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median seconds of two commands run alternately (load on the machine hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(pairs):
        times[0].append(seconds(first, env))
        times[1].append(seconds(second, env))
    return statistics.median(times[0]), statistics.median(times[1])


def child_seconds(script: str, args: list[str], env: dict[str, str]) -> float:
    """The seconds a child process running `script` prints as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    data = data_root()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "TRAINCTL_DATA_DIR": str(data),
            "TRAINCTL_CACHE_DIR": f"{folder}/cache",
            "TRAINCTL_RUNS_DIR": f"{folder}/runs",
        }
        args = [*RUN, f"data.root={data}"]
        record_s = [child_seconds(TIME_RECORD, [f"{folder}/runs", *args], env) for _ in range(3)]
        print(
            f"keep_record in a fresh process: {record_s[0]:.2f} s hashing MNIST's 4 files, then "
            f"{statistics.median(record_s[1:]):.2f} s with their hashes cached"
        )
        big = Path(folder) / "big.bin"
        with big.open("wb") as f:
            for _ in range(BIG_FILE_MIB):
                f.write(os.urandom(1 << 20))
        hash_s = [child_seconds(TIME_HASH, [str(big)], env) for _ in range(2)]
        print(f"a {BIG_FILE_MIB} MiB data file: {hash_s[0]:.2f} s to hash, {hash_s[1]:.3f} s from the cache")
        w, wo = paired(TRAIN_WITH + args, TRAIN_WITHOUT + args, PAIRS, env)
        print(
            f"trainctl train ({' '.join(RUN)}), median of {PAIRS} alternating pairs: "
            f"{w:.2f} s with the record, {wo:.2f} s without ({w - wo:+.2f} s)"
        )
        dead = [*args, "logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{closed_port()}"]
        d, p = paired(TRAIN_WITH + dead, TRAIN_WITH + args, 3, env)
        print(
            f"logger=mlflow with its server down (a closed port), median of 3 pairs: {d:.2f} s against "
            f"{p:.2f} s without MLflow ({d - p:+.2f} s)"
        )
