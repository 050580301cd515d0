"""Every method on one split: top-N ranking figures on the per-user protocol, RMSE and MAE of the rating
predictors, and k-fold cross-validation of those.

Trained models (mf, implicit-mf, or a run's EASE / item-kNN) are measured as given; the other methods
are fitted here on the same training ratings. mf's folds are trained as runs through `trainctl
train`'s machinery (see commands/evaluate_ratings.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.ratings import Ratings, RatingsConfig, RatingsSplit, split_ratings
from trainctl.errors import TrainctlError
from trainctl.recommend import METHODS
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.methods import MethodSettings, fit_method
from trainctl.recommend.metrics import RANKING_COUNTS, Ranker, Recommender, ranking_metrics, rating_errors

RATING_METHODS = ("user-cf", "item-cf", "popular")  # fitted here for RMSE/MAE beside a trained mf
RANKING_FITTED = ("ease", "item-knn", "user-cf", "item-cf", "popular")  # fitted here for top-N figures


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


def timed_fit(method: str, train: RatingMatrix, settings: MethodSettings) -> tuple[Ranker, float]:
    """`method` fitted on `train`, and the seconds fitting took."""
    started = time.perf_counter()
    model = fit_method(method, train, settings)
    return model, time.perf_counter() - started


def evaluate_ranking(
    train: Ratings,
    test: Ratings,
    *,
    trained: dict[str, Ranker],
    settings: MethodSettings,
    n: int = 10,
) -> dict[str, dict[str, Any]]:
    """Top-n figures of every method on one split, keyed by method, in METHODS order (popular last).

    `trained` are measured as given; the others are fitted on `train`. A method that cannot be
    fitted (EASE on a catalogue too large for memory) gets a `skipped` reason instead of figures.
    """
    train_matrix, test_matrix = matrix_of(train), matrix_of(test)
    table: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        seconds = None
        if method in trained:
            model = trained[method]
        elif method in RANKING_FITTED:
            try:
                model, seconds = timed_fit(method, train_matrix, settings)
            except TrainctlError as exc:
                table[method] = {"skipped": exc.what}
                continue
        else:
            continue
        figures: dict[str, Any] = ranking_metrics(
            model, train_matrix.by_user, test_matrix.by_user, n=n, liked_at=settings.liked_at
        )
        for count in RANKING_COUNTS:
            figures[count] = int(figures[count])
        figures["fit_seconds"] = seconds  # None: trained in a run
        table[method] = figures
    return table


def evaluate_ratings_split(
    train: Ratings, test: Ratings, *, mf: Recommender | None, settings: MethodSettings
) -> list[MethodResult]:
    """RMSE and MAE on one split: mf (already trained, when given), user-cf, item-cf and popular."""
    train_matrix = matrix_of(train)
    results = []
    if mf is not None:
        results.append(MethodResult("mf", rating_errors(mf.predict(test.users, test.items), test.values)))
    for method in RATING_METHODS:
        model, seconds = timed_fit(method, train_matrix, settings)
        errors = rating_errors(model.predict(test.users, test.items), test.values)  # type: ignore[attr-defined]
        results.append(MethodResult(method, errors, seconds))
    return results


def cross_validate(
    ratings: Ratings,
    data: RatingsConfig,
    folds: int,
    *,
    settings: MethodSettings,
    train_mf_fold: Any = None,
) -> list[MethodResult]:
    """Mean (and std) RMSE, MAE and fit time per fold of every rating method over `folds` random folds.

    `train_mf_fold(fold)` trains mf on the other folds and returns (rmse, mae, seconds); None skips mf.
    """
    per_method: dict[str, list[MethodResult]] = {}
    for fold in range(folds):
        fold_config = replace(data, split=RatingsSplit.random, folds=folds, fold=fold)
        train, test = split_ratings(ratings, fold_config)
        if train_mf_fold is not None:
            rmse, mae, seconds = train_mf_fold(fold)
            per_method.setdefault("mf", []).append(MethodResult("mf", {"rmse": rmse, "mae": mae}, seconds))
        for result in evaluate_ratings_split(train, test, mf=None, settings=settings):
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


def run_dir_for_ranking(run_dir: Path) -> Path:
    """Where a run whose own split is not the top-N protocol is trained again on it: <run>/ranking/."""
    return run_dir / "ranking"
