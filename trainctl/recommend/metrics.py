"""Accuracy of predicted ratings (RMSE, MAE) and of top-N lists (precision, recall, nDCG at N)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from trainctl.recommend.matrix import Compressed

USERS_PER_CHUNK_ELEMENTS = 1 << 22  # (users x items) score entries ranked at a time


class Recommender(Protocol):
    name: str

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...

    def scores(self, users: np.ndarray) -> np.ndarray: ...


def rating_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def top_n(scores: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """(users x n) item indices by descending score, skipping excluded items; ties go to the lower index.

    Rows with fewer than n candidates are padded with -1.
    """
    scores = np.where(exclude, -np.inf, np.asarray(scores, dtype=np.float64))
    n_items = scores.shape[1]
    n = min(n, n_items)
    if n < n_items:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(n_items), (len(scores), 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return np.where(np.isneginf(np.take_along_axis(scores, best, axis=1)), -1, best)


def ranking_metrics(
    recommender: Recommender, train: Compressed, test: Compressed, *, n: int = 10, threshold: float = 4.0
) -> dict[str, float]:
    """precision@n, recall@n and nDCG@n over the users with a relevant test item (rated >= threshold).

    Each user's list ranks every item they did not rate in training (binary relevance).
    """
    rows = np.repeat(np.arange(test.shape[0]), test.counts())
    keep = test.data >= threshold
    liked_by_user = Compressed.build(rows[keep], test.index[keep], test.data[keep], test.shape)
    users = np.flatnonzero(liked_by_user.counts() > 0)
    totals = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0}
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    per_chunk = max(1, USERS_PER_CHUNK_ELEMENTS // max(1, train.shape[1]))
    for start in range(0, len(users), per_chunk):
        chunk = users[start : start + per_chunk]
        lists = top_n(recommender.scores(chunk), train.dense_mask(chunk), n)
        liked = liked_by_user.dense_mask(chunk)
        hits = np.take_along_axis(liked, lists.clip(0), axis=1) & (lists >= 0)
        n_liked = liked.sum(axis=1)
        ideal = np.cumsum(discounts)[np.minimum(n_liked, n) - 1]
        totals["precision"] += float((hits.sum(axis=1) / n).sum())
        totals["recall"] += float((hits.sum(axis=1) / n_liked).sum())
        totals["ndcg"] += float(((hits * discounts[: hits.shape[1]]).sum(axis=1) / ideal).sum())
    count = max(1, len(users))
    return {f"{name}@{n}": value / count for name, value in totals.items()}
