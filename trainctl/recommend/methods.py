"""Fit a recommendation method on a ratings matrix, as `trainctl eval` and `recommend --data` do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.models.ranker_settings import EASESettings, KNNRankerSettings
from trainctl.recommend.knn import KNNSettings
from trainctl.recommend.matrix import RatingMatrix
from trainctl.recommend.metrics import Ranker


@dataclass
class MethodSettings:
    """Settings of every method that can be fitted on the fly."""

    knn: KNNSettings = field(default_factory=KNNSettings)  # user-cf, item-cf
    item_knn: KNNRankerSettings = field(default_factory=KNNRankerSettings)
    ease: EASESettings = field(default_factory=EASESettings)
    liked_at: float = 4.0

    def describe(self, method: str) -> str:
        if method in ("user-cf", "item-cf"):
            return f"{method}: {self.knn.describe()}"
        if method == "item-knn":
            return f"item-knn: {self.item_knn.describe()}"
        if method == "ease":
            return f"ease: {self.ease.describe()}"
        from trainctl.recommend.popular import DESCRIPTION

        return DESCRIPTION

    def key(self, method: str) -> dict[str, Any]:
        """What a fitted `method` depends on besides the ratings."""
        if method in ("user-cf", "item-cf"):
            return self.knn.to_dict()
        if method == "item-knn":
            return {**self.item_knn.to_dict(), "liked_at": self.liked_at}
        if method == "ease":
            return {**self.ease.to_dict(), "liked_at": self.liked_at}
        return {}


def fit_method(
    method: str, matrix: RatingMatrix, settings: MethodSettings, rows: np.ndarray | None = None
) -> Ranker:
    """`method` fitted on `matrix`; item-knn computes only the neighbour rows `rows` when given (the
    items of the one user a query is for: exact for that user, and O(len(rows) x items) work)."""
    from trainctl.recommend.popular import PopularRecommender

    if method == "popular":
        return PopularRecommender(matrix)
    if method in ("user-cf", "item-cf"):
        from trainctl.recommend.knn import KNNRecommender

        return KNNRecommender(matrix, user_based=method == "user-cf", settings=settings.knn)
    if method in ("item-knn", "ease"):
        return fit_item_model(method, matrix, settings, rows)
    raise TrainctlError(
        f"{method} is trained as a run, not fitted on the fly",
        fix=f"train one (trainctl train conf={method.replace('-', '_')}_movielens) and pass --run",
    )


def fit_item_model(
    method: str, matrix: RatingMatrix, settings: MethodSettings, rows: np.ndarray | None = None
) -> Ranker:
    from trainctl.recommend.ease import ease_weights
    from trainctl.recommend.interactions import implicit_rows
    from trainctl.recommend.item_knn import knn_neighbours
    from trainctl.recommend.item_scores import ItemItemRecommender

    weak = settings.ease.weak_weight if method == "ease" else settings.item_knn.weak_weight
    by_user = implicit_rows(matrix.by_user, settings.liked_at, weak)
    by_item = implicit_rows(matrix.by_item, settings.liked_at, weak)
    if method == "ease":
        weights: Any = ease_weights(by_item, by_user, settings.ease.lam)
    else:
        weights = knn_neighbours(by_item, by_user, settings.item_knn, rows=rows)
    return ItemItemRecommender(method, weights, by_user)
