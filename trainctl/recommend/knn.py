"""k-nearest-neighbour collaborative filtering (user-based and item-based), vectorised over pairs.

user-cf predicts r(u, i) from the k users most similar to u among those who rated i; item-cf from
the k items most similar to i among those u rated. Both are one computation on the ratings matrix
or its transpose ("rows" are the entities compared). With `centered` (the default) a prediction is
the row's mean plus the similarity-weighted mean deviation of the neighbours (Surprise's
KNNWithMeans), else the similarity-weighted mean rating (KNNBasic). Only positive similarities count.

Ranked lists follow the minimum-evidence rule: an estimate from fewer than min_k neighbours falls
back to a mean, and a fallback never outranks an estimate with neighbours (ties: see metrics.top_n).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from trainctl.recommend.matrix import Compressed, RatingMatrix
from trainctl.recommend.similarity import Similarity

PAIR_BUDGET = 1 << 21  # candidate neighbours examined per vectorised chunk of pairs


@dataclass(frozen=True)
class KNNSettings:
    k: int = 40
    min_k: int = 1  # fewer usable neighbours than this: fall back to the row mean (or global mean)
    similarity: Similarity = Similarity.pearson
    shrinkage: float = 100.0
    centered: bool = True

    def describe(self) -> str:
        kind = "with means" if self.centered else "basic"
        similarity = Similarity(self.similarity).value
        return f"k={self.k}, {similarity} similarity, shrinkage {self.shrinkage:g}, {kind}"

    def key(self) -> str:
        """What the similarity matrix depends on (k and centering are applied per query)."""
        return f"{Similarity(self.similarity).value}-shrink{self.shrinkage:g}"

    def to_dict(self) -> dict:
        return {**asdict(self), "similarity": Similarity(self.similarity).value}


class Neighbourhood:
    """Estimates entry (row, col) from the k rows most similar to `row` that have an entry in `col`."""

    def __init__(self, by_column: Compressed, row_means: np.ndarray, sim: np.ndarray, settings: KNNSettings):
        self.by_column = by_column
        self.sim = sim
        self.settings = settings
        self.offsets = np.nan_to_num(row_means) if settings.centered else np.zeros(len(row_means))
        self.values = by_column.data - self.offsets[by_column.index]  # deviations, or raw ratings

    def estimate(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """One estimate per (row, col) pair; NaN where fewer than min_k positive neighbours exist."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        counts = self.by_column.ptr[cols + 1] - self.by_column.ptr[cols]
        order = np.argsort(counts, kind="stable")
        widths = np.maximum(counts[order], 1)
        # chunks of columns whose candidate counts are within a factor 2 (padding at most doubles the
        # work), each holding about PAIR_BUDGET candidates
        bands = np.flatnonzero(np.diff(np.log2(widths).astype(np.int64))) + 1
        out = np.full(len(rows), np.nan)
        for band in np.split(np.arange(len(order)), bands):
            size = max(1, PAIR_BUDGET // int(widths[band[-1]]))
            for start in range(0, len(band), size):
                chunk = order[band[start : start + size]]
                out[chunk] = self._estimate_chunk(rows[chunk], cols[chunk], counts[chunk])
        return out

    def _estimate_chunk(self, rows: np.ndarray, cols: np.ndarray, counts: np.ndarray) -> np.ndarray:
        width = int(counts.max()) if len(counts) else 0
        if width == 0:
            return np.full(len(rows), np.nan)
        offsets = np.arange(width)
        valid = offsets < counts[:, None]
        positions = np.where(valid, self.by_column.ptr[cols][:, None] + offsets, 0)
        members = self.by_column.index[positions]
        sims = np.where(valid, self.sim[rows[:, None], members], -np.inf)
        values = self.values[positions]
        k = self.settings.k
        if width > k:
            top = np.argpartition(sims, width - k, axis=1)[:, width - k :]
            sims = np.take_along_axis(sims, top, axis=1)
            values = np.take_along_axis(values, top, axis=1)
        used = sims > 0
        weights = np.where(used, sims, 0.0)
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            deviation = (weights * values).sum(axis=1) / total
        enough = used.sum(axis=1) >= max(1, self.settings.min_k)
        return np.where(enough, self.offsets[rows] + deviation, np.nan)


class KNNRecommender:
    """user-cf or item-cf over a RatingMatrix; `sim` is computed when not given (a cached one)."""

    def __init__(
        self,
        matrix: RatingMatrix,
        *,
        user_based: bool,
        settings: KNNSettings | None = None,
        sim: np.ndarray | None = None,
    ) -> None:
        self.matrix = matrix
        self.user_based = user_based
        self.settings = settings or KNNSettings()
        self.name = "user-cf" if user_based else "item-cf"
        rows = matrix.by_user if user_based else matrix.by_item
        if sim is None:
            from trainctl.recommend.similarity import similarity

            sim = similarity(rows.to_scipy(), self.settings.similarity, self.settings.shrinkage)
        self.sim = sim
        by_column = matrix.by_item if user_based else matrix.by_user
        self.row_means = rows.row_means()
        self.neighbourhood = Neighbourhood(by_column, self.row_means, sim, self.settings)
        self.global_mean = matrix.global_mean
        self.low, self.high = matrix.rating_range

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) pairs, clipped to the rating scale."""
        return np.clip(self.estimate(users, items), self.low, self.high)

    def estimate(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows, cols = (users, items) if self.user_based else (items, users)
        return self.with_fallback(self.neighbourhood.estimate(rows, cols), rows)

    def with_fallback(self, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """`out` with its NaNs (no usable neighbour) replaced by the row's mean, else the global mean."""
        missing = np.isnan(out)
        if self.settings.centered:
            out[missing] = self.row_means[np.asarray(rows)[missing]]
            missing = np.isnan(out)
        out[missing] = self.global_mean
        return out

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(users x items) ranking scores: the clipped predictions, lowered below the rating scale where
        they are a fallback (no usable neighbour), so that any real estimate ranks first."""
        users = np.asarray(users, dtype=np.int64)
        grid_users = np.repeat(users, self.matrix.num_items)
        grid_items = np.tile(np.arange(self.matrix.num_items), len(users))
        rows, cols = (grid_users, grid_items) if self.user_based else (grid_items, grid_users)
        estimate = self.neighbourhood.estimate(rows, cols)
        fallback = np.isnan(estimate)
        clipped = np.clip(self.with_fallback(estimate, rows), self.low, self.high)
        below = np.where(fallback, self.high - self.low + 1.0, 0.0)
        return (clipped - below).reshape(len(users), self.matrix.num_items)

    def is_fallback(self, scores: np.ndarray) -> np.ndarray:
        """Which of `scores` came from a fallback rather than from neighbours."""
        return scores < self.low

    def because(self, user: int, items: np.ndarray, most: int = 2) -> list[list[int]] | None:
        """item-cf: for each item, up to `most` items the user rated that are its most similar
        neighbours with a rating above the user's mean; user-cf explains by users, so None."""
        if self.user_based:
            return None
        start, end = self.matrix.by_user.ptr[user], self.matrix.by_user.ptr[user + 1]
        rated = self.matrix.by_user.index[start:end]
        liked = rated[
            self.matrix.by_user.data[start:end] >= np.nan_to_num(self.matrix.by_user.row_means()[user])
        ]
        if len(liked) == 0:
            return [[] for _ in items]
        sims = self.sim[np.ix_(np.asarray(items, dtype=np.int64), liked)]
        order = np.argsort(-sims, axis=1, kind="stable")[:, :most]
        return [[int(liked[j]) for j in row if sims[i, j] > 0] for i, row in enumerate(order)]
