"""MovieLens 100K recommenders: 5-fold CV RMSE/MAE of every method beside Surprise's published table,
ranking metrics on the 75/25 split, and the cold-start and per-query times of `trainctl recommend`."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO

THREADS = 1  # Surprise's SVD and k-NN run on one core; so do these figures
COLD_RUNS = 5
QUERIES = 200
# Surprise's benchmark table, MovieLens 100K, 5-fold CV (RMSE, MAE, time for all five folds)
SURPRISE = [
    ("SVD", 0.934, 0.737, "0:00:06"),
    ("SVD++", 0.919, 0.721, "0:01:48"),
    ("KNNBaseline", 0.931, 0.733, "0:00:05"),
    ("KNNWithMeans", 0.951, 0.749, "0:00:04"),
    ("KNNBasic", 0.980, 0.774, "0:00:04"),
    ("BaselineOnly", 0.944, 0.748, "0:00:00"),
]


def ml100k_root() -> Path:
    root = Path(os.environ.get("TRAINCTL_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "ml-100k" / "u.data").is_file():
        sys.exit(f"bench: MovieLens 100K is not at {root}/ml-100k; set TRAINCTL_DATA_DIR")
    return root


def trainctl(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run the installed `trainctl` command; (wall seconds, stdout)."""
    started = time.perf_counter()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "trainctl"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"bench: trainctl {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, out.stdout


def query_milliseconds(run_dir: Path, method: str) -> float:
    """Median time of one `recommend_for` call against a model already loaded in this process."""
    from trainctl.cli.recommend import recommend_for
    from trainctl.recommend.fitting import fitted_recommender, origin_of_run
    from trainctl.recommend.knn import KNNSettings

    fitted = fitted_recommender(origin_of_run(run_dir), method, KNNSettings())
    users = [str(u) for u in fitted.user_ids[:QUERIES]]
    times = []
    for user in users:
        started = time.perf_counter()
        recommend_for(fitted, user, 10)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    root = ml100k_root()
    with tempfile.TemporaryDirectory() as runs:
        env = {
            **os.environ,
            "TRAINCTL_RUNS_DIR": runs,
            "TRAINCTL_DATA_DIR": str(root),
            "OMP_NUM_THREADS": str(THREADS),
        }
        seconds, _ = trainctl(["train", "conf=mf_movielens", f"trainer.threads={THREADS}"], env)
        run_dir = (Path(runs) / "latest").resolve()
        print(f"trainctl train conf=mf_movielens: {seconds:.1f} s wall (process start to exit)")
        seconds, _ = trainctl(["eval", str(run_dir), "--cv", "5"], env)
        report = json.loads((run_dir / "eval-ratings.json").read_text())
        print(f"trainctl eval RUN --cv 5: {seconds:.1f} s wall ({THREADS} thread)\n")
        print_cv(report)
        print_split(report)
        print_latency(run_dir, env)


def print_cv(report: dict) -> None:
    print(f"5-fold cross-validation on MovieLens 100K ({report['ratings']:,} ratings in this copy)")
    print(f"{'method':<14}{'RMSE':>16}{'MAE':>16}{'fit s/fold':>12}")
    for row in report["cv"]["methods"]:
        rmse = f"{row['rmse']:.4f}±{row['std']['rmse']:.4f}"
        mae = f"{row['mae']:.4f}±{row['std']['mae']:.4f}"
        print(f"{row['method']:<14}{rmse:>16}{mae:>16}{row['fit_seconds']:>12.2f}")
    print("  (mf fit = one training run per fold, wall time of the recipe; k-NN fit = similarity matrix)")
    print("Surprise's published figures (5-fold CV; time is for all five folds, their machine):")
    for name, rmse, mae, spent in SURPRISE:
        print(f"{name:<14}{rmse:>16.3f}{mae:>16.3f}{spent:>12}")
    print()


def print_split(report: dict) -> None:
    split = report["split"]
    print(f"The run's split ({split['train']:,} train / {split['test']:,} test), top 10 among unrated items")
    print(f"{'method':<10}{'RMSE':>8}{'MAE':>8}{'P@10':>8}{'R@10':>8}{'nDCG@10':>9}")
    for row in report["methods"]:
        figures = [row[k] for k in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10")]
        print(f"{row['method']:<10}" + "".join(f"{v:>8.4f}" for v in figures[:-1]) + f"{figures[-1]:>9.4f}")
    print()


def print_latency(run_dir: Path, env: dict[str, str]) -> None:
    print("trainctl recommend --user 1: wall time of whole processes (cold start: a new process each time)")
    print(f"{'method':<10}{'first (fits, caches)':>22}{'cached: median':>16}{'max':>8}{'query ms':>10}")
    for method in ("mf", "user-cf", "item-cf", "popular"):
        args = ["recommend", "--user", "1", "--run", str(run_dir), "--method", method]
        first, _ = trainctl(args, env)
        cold = [trainctl(args, env)[0] for _ in range(COLD_RUNS)]
        query = query_milliseconds(run_dir, method)
        print(f"{method:<10}{first:>21.2f}s{statistics.median(cold):>15.2f}s{max(cold):>7.2f}s{query:>10.2f}")
    print(f"  (query: median of {QUERIES} users, top 10, against the model loaded once in this process)")
