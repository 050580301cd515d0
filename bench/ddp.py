"""Data parallel on this machine: 2-rank `ddp` against 1 process on the same global batch, trainctl's
2-rank `ddp` against a plain torchrun DDP script, and the cost of starting workers with elastic_launch."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from bench.common import REPO, alternating, data_root, median_after_warmup, pairs_line, run_trainctl
from bench.load import ForeignLoad

# Epochs here last 0.3-1.3 s and vary +-30% on a quiet 2-core box: ratios are taken per alternating pair
# (median epoch after the first of each run) and the median of the pairs is the result.
EPOCHS = 10
ROUNDS = 5


def noop() -> int:
    return 0


def launch_overhead(start_method: str, workers: int = 2, repeats: int = 3) -> float:
    """Seconds from elastic_launch to every worker having run and returned (an empty function)."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from trainctl.runtime.launch.elastic import free_port, prepare_start_method

    prepare_start_method(start_method)
    times = []
    for i in range(repeats):
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=workers,
            run_id=f"bench{i}",
            rdzv_backend="c10d",
            rdzv_endpoint=f"127.0.0.1:{free_port()}",
            max_restarts=0,
            monitor_interval=0.05,
            start_method=start_method,
        )
        started = time.perf_counter()
        elastic_launch(config, noop)()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def plain_torchrun_seconds(root: Path, batch: int, threads: int) -> float:
    """Median epoch of bench/plain_ddp.py under torchrun on 2 ranks."""
    from trainctl.runtime.launch.elastic import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    command += ["-m", "bench.plain_ddp", f"--data-root={root}", f"--epochs={EPOCHS}"]
    command += [f"--batch={batch}", f"--threads={threads}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return median_after_warmup([r["seconds"] for r in records])


def epoch_seconds(args: list[str], threads: int) -> float:
    records = run_trainctl(args, threads)
    return median_after_warmup([r["seconds"] for r in records if r["kind"] == "epoch"])


def main() -> dict[str, float]:
    import logging

    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    root = data_root()
    results: dict[str, float] = {}
    print(
        f"MNIST MLP 784-512-256-10, {EPOCHS} epochs, median epoch after the first; {ROUNDS} alternating runs"
    )
    for batch in (64, 256):
        base = [
            "conf=mlp_mnist",
            f"data.root={root}",
            f"trainer.epochs={EPOCHS}",
            f"trainer.batch_size={batch}",
        ]
        ddp = [*base, "launcher.nproc=2", "parallel=ddp"]
        with ForeignLoad() as load:
            o, t, ratios = alternating(
                ROUNDS,
                partial(epoch_seconds, [*base, "launcher.nproc=1", "parallel=none"], threads=2),
                partial(epoch_seconds, ddp, threads=1),
            )
        results[f"ratio_b{batch}"] = statistics.median(ratios)
        print(
            f"  global batch {batch:>3}: 1 process x 2 threads {o:.3f} s/epoch ({8000 / o:,.0f} samples/s); "
            f"2 ddp ranks x 1 thread {t:.3f} s/epoch ({8000 / t:,.0f} samples/s): "
            f"{statistics.median(ratios):.2f}x, {pairs_line(ratios)}{load.verdict()}"
        )
        # The same model, data, batch and threads: a plain torchrun DDP script against trainctl.
        with ForeignLoad() as load:
            p, o, ratios = alternating(
                ROUNDS,
                partial(plain_torchrun_seconds, root, batch, threads=1),
                partial(epoch_seconds, ddp, threads=1),
            )
        results[f"vs_torchrun_b{batch}"] = statistics.median(ratios)
        print(
            f"  global batch {batch:>3}, 2 ranks x 1 thread: plain torchrun DDP {p:.3f} s/epoch, "
            f"trainctl parallel=ddp {o:.3f} s/epoch: trainctl at {statistics.median(ratios):.2f}x the plain "
            f"script's speed, {pairs_line(ratios)} (goal: at least 0.97x){load.verdict()}"
        )
    for method in ("fork", "forkserver", "spawn"):
        seconds = launch_overhead(method)
        results[f"launch_{method}_s"] = seconds
        print(f"  elastic_launch of 2 workers ({method}), empty worker, start to finish: {seconds:.2f} s")
    return results


if __name__ == "__main__":
    main()
