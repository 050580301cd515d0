"""The popularity baseline: the most-rated items first; a rating is predicted by the item's damped mean."""

from __future__ import annotations

import numpy as np

from trainctl.recommend.matrix import RatingMatrix

DAMPING = 5.0  # pseudo-ratings at the global mean added to every item's mean
DESCRIPTION = "popular: the most-rated items (score = number of ratings; ties: the higher damped mean)"


class PopularRecommender:
    """Ranks items by how many ratings they have; the same list for every user."""

    name = "popular"

    def __init__(self, matrix: RatingMatrix) -> None:
        self.matrix = matrix
        counts = matrix.by_item.counts().astype(np.float64)
        sums = np.nan_to_num(matrix.by_item.row_means()) * counts
        self.item_means = (sums + DAMPING * matrix.global_mean) / (counts + DAMPING)
        # ties in count are broken by the damped mean, which lies in [1, 5]-like scales: scale it below 1
        spread = max(float(np.ptp(self.item_means)), 1e-9)
        self.popularity = counts + 0.5 * (self.item_means - self.item_means.min()) / spread

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.item_means[np.asarray(items, dtype=np.int64)]

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.matrix.num_items))
