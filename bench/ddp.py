"""Data parallel on this machine: 2-rank `ddp` against 1 process on the same global batch, and the cost
of starting workers with elastic_launch."""

from __future__ import annotations

import statistics
import time

from bench.common import data_root, median_after_warmup, run_trainctl

EPOCHS = 5
ROUNDS = 3


def noop() -> int:
    return 0


def launch_overhead(start_method: str, workers: int = 2, repeats: int = 3) -> float:
    """Seconds from elastic_launch to every worker having run and returned (an empty function)."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from trainctl.runtime.launch.elastic import free_port

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
        one, two = [], []
        for _ in range(ROUNDS):
            one.append(epoch_seconds([*base, "launcher.nproc=1", "parallel=none"], threads=2))
            two.append(epoch_seconds([*base, "launcher.nproc=2", "parallel=ddp"], threads=1))
        o, t = statistics.median(one), statistics.median(two)
        results[f"ratio_b{batch}"] = o / t
        print(
            f"  global batch {batch:>3}: 1 process x 2 threads {o:.3f} s/epoch ({8000 / o:,.0f} samples/s); "
            f"2 ddp ranks x 1 thread {t:.3f} s/epoch ({8000 / t:,.0f} samples/s): {o / t:.2f}x"
        )
    for method in ("fork", "spawn"):
        seconds = launch_overhead(method)
        results[f"launch_{method}_s"] = seconds
        print(f"  elastic_launch of 2 workers ({method}), empty worker, start to finish: {seconds:.2f} s")
    return results


if __name__ == "__main__":
    main()
