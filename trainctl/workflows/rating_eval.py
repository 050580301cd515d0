"""Evaluate a run trained on ratings: every method on the run's split, and K-fold cross-validation
(mf trained once per fold, each fold a job of its own)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainctl.config.compose import compose
from trainctl.errors import TrainctlError
from trainctl.observe.ticker import Ticker

RESULTS_FILE = "eval-ratings.json"


def is_rating_config(config: dict[str, Any]) -> bool:
    """Whether a saved run config trained on the ratings data set."""
    return (config.get("data") or {}).get("name") == "ratings"


def evaluate_ratings(
    checkpoint: Path, state: dict[str, Any], overrides: Sequence[str], *, cv: int | None
) -> dict[str, Any]:
    """Figures of every method: on the run's split (mf = the checkpoint) and, with `cv`, over K folds."""
    from trainctl.data.ratings import split_ratings
    from trainctl.data.sets.ratings import load_ratings
    from trainctl.recommend.evaluation import cross_validate, evaluate_split, run_dir_for_folds
    from trainctl.recommend.factors import FactorRecommender
    from trainctl.recommend.knn import KNNSettings

    composed = compose(overrides, base=OmegaConf.create(state["config"]))
    data = composed.config.data
    ratings = load_ratings(data)
    train, test = split_ratings(ratings, data)  # exactly the split the run trained on
    mf = None
    if composed.config.model.name == "mf":
        mf, user_ids, item_ids = FactorRecommender.trained(state["model"])
        if user_ids is not None and item_ids is not None:  # measure in the model's own index space
            train, test = train.remap(user_ids, item_ids), test.remap(user_ids, item_ids)
    settings = KNNSettings()
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": ratings.source,
        "ratings": len(ratings),
        "users": train.num_users,
        "items": train.num_items,
        "split": {
            "train": len(train),
            "test": len(test),
            "test_fraction": data.test_fraction,
            "folds": data.folds,
            "fold": data.fold,
            "seed": data.split_seed,
        },
        "knn": settings.describe(),
        "ranking": {"n": 10, "relevant": "rated >= 4"},
        "methods": [r.to_dict() for r in evaluate_split(train, test, mf=mf, settings=settings)],
    }
    if cv:
        if cv < 2:
            raise TrainctlError(f"--cv {cv}: cross-validation needs at least 2 folds")
        run_dir = checkpoint.parent.parent
        with Ticker(f"{cv}-fold cross-validation", total=cv, unit="folds") as ticker:  # a line every 10 s
            trainer = (
                mf_fold_trainer(composed.tree, cv, run_dir_for_folds(run_dir, cv), ticker)
                if mf is not None
                else None
            )
            results = cross_validate(ratings, data, cv, settings=settings, train_mf_fold=trainer)
        report["cv"] = {"folds": cv, "seed": data.split_seed, "methods": [r.to_dict() for r in results]}
    results_file = checkpoint.parent.parent / RESULTS_FILE
    if (checkpoint.parent.parent / "config.yaml").is_file():
        results_file.write_text(json.dumps(report, indent=2) + "\n")
        report["written"] = str(results_file)
    return report


def mf_fold_trainer(
    tree: DictConfig, folds: int, root: Path, ticker: Ticker
) -> Callable[[int], tuple[float, float, float]]:
    """A function that trains mf on all folds but one as a run under `root`: (rmse, mae, seconds);
    `ticker` learns how many folds are done."""
    from trainctl.api import run_job

    def train_fold(fold: int) -> tuple[float, float, float]:
        ticker.update(fold)
        epochs = int(tree.trainer.epochs)
        overrides = [
            f"data.folds={folds}",
            f"data.fold={fold}",
            f"run.root={root}",
            f"trainer.eval_every={epochs}",
        ]
        root.mkdir(parents=True, exist_ok=True)
        summary = run_job(overrides, base=tree, output=root / f"fold{fold}.log")
        return summary["test"]["rmse"], summary["test"]["mae"], summary["wall seconds"]

    return train_fold
