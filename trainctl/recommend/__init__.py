"""Recommenders over a ratings matrix: k-NN collaborative filtering, popularity, and factor models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from trainctl.recommend.knn import KNNSettings
    from trainctl.recommend.matrix import RatingMatrix
    from trainctl.recommend.metrics import Recommender

METHODS = ("mf", "user-cf", "item-cf", "popular")


def neighbours_or_popular(
    method: str, matrix: RatingMatrix, settings: KNNSettings, sim: np.ndarray | None = None
) -> Recommender:
    """The popularity recommender, or the user-cf / item-cf k-NN one (`sim`: its similarities, if
    known), fitted on `matrix`."""
    from trainctl.recommend.knn import KNNRecommender
    from trainctl.recommend.popular import PopularRecommender

    if method == "popular":
        return PopularRecommender(matrix)
    return KNNRecommender(matrix, user_based=method == "user-cf", settings=settings, sim=sim)
