"""`trainctl recommend --data` at scale: a cold process on a MovieLens latest-small-shaped folder (610
users, 9,742 items, 100,836 ratings; goal <= 1 s and <= 300 MB), and one query on a synthetic matrix of
MovieLens-25M's shape (162,541 users, 62,423 items, 25M ratings) against the memory formula
(trainctl.recommend.item_knn.query_memory_bytes). Both data sets are generated here."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO

COLD_RUNS = 3
ITEM_KNN = ["--method", "item-knn"]  # what the figures are of (the --data default is EASE)
ML25M = (162_541, 62_423, 25_000_095)


def peak_rss(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of a fresh process, from its rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def latest_small(folder: Path) -> None:
    from tests.ratings_fixtures import latest_small_like, write_latest_small_like

    write_latest_small_like(folder)
    users, _, _ = latest_small_like()
    counts = np.bincount(users)
    typical = int(np.argsort(counts)[len(counts) // 2]) + 1
    heaviest = int(counts.argmax()) + 1
    trainctl = str(Path(sys.executable).parent / "trainctl")
    base_seconds, base_mb, _ = peak_rss([sys.executable, "-c", "import trainctl.cli, numpy"])
    print(f"latest-small-shaped folder: {len(users):,} ratings, 9,742 items, {len(counts)} users")
    print(f"  baseline: python + trainctl's CLI imports {base_seconds:.2f} s, {base_mb:.0f} MB")
    print(f"  {'user':<24}{'ratings':>8}{'wall median':>13}{'max':>7}{'peak MB':>9}{'formula MB':>12}")
    from trainctl.models.ranker_settings import KNNRankerSettings
    from trainctl.recommend.item_knn import query_memory_bytes

    for label, user in (("user 1", 1), ("median activity", typical), ("heaviest", heaviest)):
        runs = [
            peak_rss(
                [
                    trainctl,
                    "recommend",
                    "--user",
                    str(user),
                    "--data",
                    str(folder),
                    "-m",
                    "item-knn",
                    "--json",
                ]
            )
            for _ in range(COLD_RUNS)
        ]
        walls = [r[0] for r in runs]
        formula = query_memory_bytes(
            len(counts), 9_742, len(users), int(counts[user - 1]), KNNRankerSettings().k
        )
        name = f"{label} ({user})"
        print(
            f"  {name:<24}{counts[user - 1]:>8}{statistics.median(walls):>12.2f}s{max(walls):>6.2f}s"
            f"{max(r[1] for r in runs):>9.0f}{base_mb + formula / 2**20:>12.0f}"
        )
    print("  (a new process each time: no cache; formula MB = baseline + query_memory_bytes)")


SCALE_SCRIPT = """
import sys, time, resource, numpy as np
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.methods import MethodSettings, fit_method
from trainctl.recommend.metrics import top_n
folder = sys.argv[1]
users, items, values = (np.load(f"{folder}/{name}.npy") for name in ("users", "items", "values"))
shape = (int(sys.argv[2]), int(sys.argv[3]))
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
matrix = RatingMatrix.build(users, items, values, shape)
del users, items, values
built = time.perf_counter() - started
user = int(np.argsort(matrix.by_user.counts())[shape[0] // 2])
rows = matrix.by_user.index[matrix.by_user.ptr[user]:matrix.by_user.ptr[user + 1]]
started = time.perf_counter()
ranker = fit_method("item-knn", matrix, MethodSettings(), rows)
top = top_n(ranker.scores(np.array([user])), matrix.by_user.dense_mask(np.array([user])), 10)
print(len(rows), built, time.perf_counter() - started, loaded)
"""


def ml25m_shape(folder: Path) -> None:
    num_users, num_items, num_ratings = ML25M
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    activity = rng.lognormal(0.0, 1.2, num_users)
    counts = 20 + np.floor(activity / activity.sum() * (num_ratings - 20 * num_users)).astype(np.int64)
    counts[: num_ratings - counts.sum()] += 1
    popularity = rng.lognormal(0.0, 1.6, num_items)  # the most rated item gets ~0.3%, as in ML-25M
    items = rng.choice(num_items, size=num_ratings, p=popularity / popularity.sum())
    users = np.repeat(np.arange(num_users), counts)
    np.save(folder / "users.npy", users)
    np.save(folder / "items.npy", items)
    np.save(folder / "values.npy", rng.integers(1, 11, num_ratings).astype(np.float32) / 2)
    print(
        f"\nMovieLens-25M shape: {num_users:,} users, {num_items:,} items, {num_ratings:,} ratings "
        f"(synthetic, generated in {time.perf_counter() - started:.0f} s; repeated pairs kept)"
    )
    seconds, peak, out = peak_rss(
        [sys.executable, "-c", SCALE_SCRIPT, str(folder), str(num_users), str(num_items)]
    )
    rated, built, query, loaded = out.split()
    from trainctl.models.ranker_settings import KNNRankerSettings
    from trainctl.recommend.item_knn import knn_memory_bytes, query_memory_bytes

    formula = query_memory_bytes(num_users, num_items, num_ratings, int(rated), KNNRankerSettings().k)
    print(f"  one query (user with {rated} ratings): matrix built in {float(built):.1f} s, ", end="")
    print(f"answered in {float(query):.1f} s")
    print(
        f"  peak {peak / 1024:.2f} GB resident ({float(loaded) / 1024:.2f} GB of it the three input arrays); "
        f"formula {formula / 2**30:.2f} GB past the inputs"
    )
    print(
        f"  a fully fitted item-kNN model of this catalogue holds items x k neighbours: "
        f"{knn_memory_bytes(num_items, KNNRankerSettings().k) / 2**20:.0f} MB"
    )


def movielens_100k() -> None:
    """`recommend --user 1 --data ml-100k` in new processes, when the shared copy is there."""
    folder = Path(os.environ.get("TRAINCTL_DATA_DIR") or REPO.parent / "shared" / "data") / "ml-100k"
    if not (folder / "u.data").is_file():
        print(f"MovieLens 100K not found at {folder}: its line is skipped")
        return
    trainctl = str(Path(sys.executable).parent / "trainctl")
    runs = [
        peak_rss([trainctl, "recommend", "--user", "1", "--data", str(folder), *ITEM_KNN, "--json"])
        for _ in range(COLD_RUNS)
    ]
    walls = [r[0] for r in runs]
    print(
        f"ml-100k, recommend --user 1 --data: wall median {statistics.median(walls):.2f} s, "
        f"max {max(walls):.2f} s, peak {max(r[1] for r in runs):.0f} MB ({COLD_RUNS} new processes)\n"
    )


def main() -> None:
    movielens_100k()
    with tempfile.TemporaryDirectory() as tmp:
        latest_small(Path(tmp) / "small")
        if os.environ.get("TRAINCTL_BENCH_QUICK"):
            print("TRAINCTL_BENCH_QUICK is set: the MovieLens-25M-shaped run is skipped")
            return
        ml25m_shape(Path(tmp))
