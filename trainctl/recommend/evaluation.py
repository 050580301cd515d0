"""Every method on one train/test split (RMSE, MAE, ranking metrics), and k-fold cross-validation.

mf is not refitted here: on the run's own split the run's checkpoint is measured, and for
cross-validation each fold is trained as a run of its own through `trainctl train`'s machinery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.ratings import Ratings, RatingsConfig, split_ratings
from trainctl.recommend import neighbours_or_popular
from trainctl.recommend.knn import KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import Recommender, ranking_metrics, rating_errors

CF_METHODS = ("user-cf", "item-cf", "popular")


@dataclass
class MethodResult:
    """One method's figures on one split (or averaged over folds, with their spread)."""

    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    spread: dict[str, float] = field(default_factory=dict)  # std over folds

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.metrics, "fit_seconds": self.fit_seconds, "std": self.spread}


def matrix_of(ratings: Ratings) -> RatingMatrix:
    return RatingMatrix.build(
        ratings.users, ratings.items, ratings.values, (ratings.num_users, ratings.num_items)
    )


def fit_method(method: str, train: RatingMatrix, settings: KNNSettings) -> tuple[Recommender, float]:
    """A k-NN or popularity recommender fitted on `train`, and the seconds fitting took."""
    started = time.perf_counter()
    model = neighbours_or_popular(method, train, settings)
    return model, time.perf_counter() - started


def score_split(
    recommender: Recommender,
    train: RatingMatrix,
    test: Ratings,
    *,
    ranking: bool,
    n: int = 10,
    threshold: float = 4.0,
) -> dict[str, float]:
    """RMSE and MAE on the test ratings, plus top-n ranking metrics when asked."""
    metrics = rating_errors(recommender.predict(test.users, test.items), test.values)
    if ranking:
        metrics.update(
            ranking_metrics(recommender, train.by_user, matrix_of(test).by_user, n=n, threshold=threshold)
        )
    return metrics


def evaluate_split(
    train: Ratings,
    test: Ratings,
    *,
    mf: Recommender | None,
    settings: KNNSettings,
    ranking: bool = True,
    n: int = 10,
    threshold: float = 4.0,
) -> list[MethodResult]:
    """Every method on one split: mf (already trained, when given), user-cf, item-cf and popular."""
    train_matrix = matrix_of(train)
    results = []
    if mf is not None:
        results.append(
            MethodResult("mf", score_split(mf, train_matrix, test, ranking=ranking, n=n, threshold=threshold))
        )
    for method in CF_METHODS:
        model, seconds = fit_method(method, train_matrix, settings)
        metrics = score_split(model, train_matrix, test, ranking=ranking, n=n, threshold=threshold)
        results.append(MethodResult(method, metrics, seconds))
    return results


def cross_validate(
    ratings: Ratings,
    data: RatingsConfig,
    folds: int,
    *,
    settings: KNNSettings,
    train_mf_fold: Any = None,
) -> list[MethodResult]:
    """Mean (and std) RMSE, MAE and fit time per fold of every method over `folds` random folds.

    `train_mf_fold(fold)` trains mf on the other folds and returns (rmse, mae, seconds); None skips mf.
    """
    per_method: dict[str, list[MethodResult]] = {}
    for fold in range(folds):
        train, test = split_ratings(ratings, replace(data, folds=folds, fold=fold))
        if train_mf_fold is not None:
            rmse, mae, seconds = train_mf_fold(fold)
            per_method.setdefault("mf", []).append(MethodResult("mf", {"rmse": rmse, "mae": mae}, seconds))
        for result in evaluate_split(train, test, mf=None, settings=settings, ranking=False):
            per_method.setdefault(result.method, []).append(result)
    return [average(method, results) for method, results in per_method.items()]


def average(method: str, results: list[MethodResult]) -> MethodResult:
    keys = results[0].metrics.keys()
    values = {key: np.array([r.metrics[key] for r in results]) for key in keys}
    return MethodResult(
        method,
        {key: float(v.mean()) for key, v in values.items()},
        float(np.mean([r.fit_seconds for r in results])),
        {key: float(v.std()) for key, v in values.items()},
    )


def run_dir_for_folds(run_dir: Path, folds: int) -> Path:
    """Where a run's cross-validation folds are trained: <run>/cv<folds>/."""
    return run_dir / f"cv{folds}"
