"""Accuracy of predicted ratings (RMSE, MAE) and of top-N lists (precision, recall, nDCG at N)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from trainctl.recommend.matrix import Compressed

USERS_PER_CHUNK_ELEMENTS = 1 << 22  # (users x items) score entries ranked at a time


class Ranker(Protocol):
    name: str

    def scores(self, users: np.ndarray) -> np.ndarray: ...


class Recommender(Ranker, Protocol):
    """A rating predictor: predicted ratings of pairs, and ranking scores."""

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...


def rating_errors(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def popularity_tiebreak(counts: np.ndarray) -> np.ndarray:
    """Per item, a number in [0, 1) that grows with its rating count: ties in score go to the more
    popular item (then to the lower index)."""
    order = np.lexsort((-np.arange(len(counts)), np.asarray(counts)))  # least popular first
    rank = np.empty(len(counts), dtype=np.float64)
    rank[order] = np.arange(len(counts))
    return rank / max(1, len(counts))


def top_n(scores: np.ndarray, exclude: np.ndarray, n: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """(users x n) item indices by descending score, skipping excluded items; rows with fewer than n
    candidates are padded with -1.

    Equal scores go to the item with the larger `tiebreak` (popularity_tiebreak), else the lower index.
    The tiebreak is added at 1e-9 of the scores' magnitude, so it orders only (near-)equal scores.
    """
    scores = np.where(exclude, -np.inf, np.asarray(scores, dtype=np.float64))
    if tiebreak is not None:
        finite = np.abs(scores[np.isfinite(scores)])
        scale = 1e-9 * max(1.0, float(finite.max()) if finite.size else 1.0)
        scores = scores + scale * tiebreak[None, :]
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


RANKING_METRICS = ("precision", "recall", "ndcg", "hit_rate", "coverage")
RANKING_COUNTS = ("users", "users_excluded", "items_excluded")  # who was scored: counts, not figures


def ranking_metrics(
    ranker: Ranker, train: Compressed, test: Compressed, *, n: int = 10, liked_at: float = 4.0
) -> dict[str, float]:
    """precision@n, recall@n, nDCG@n, hit_rate@n and catalogue coverage of top-n lists, and the counts
    of RANKING_COUNTS.

    Relevance is binary: a held-out rating >= liked_at is liked. A user's list ranks the candidates:
    items with a training rating that they did not rate in training; equal scores go to the more
    popular item. recall divides the hits by the user's relevant items, nDCG by the ideal DCG of
    min(n, relevant) hits, and coverage counts the distinct items of all lists over the catalogue's.

    What cannot be scored stays out of the means. Peers average over the users who have something to
    find in the test split (implicit's ranking_metrics_at_k and LightFM's precision_at_k skip users
    without test items; RecBole evaluates only users with some). Here, having something to find means
    a liked held-out item that is a candidate: an item with no training rating can be listed by no
    method, so it is left out of its user's relevant items (`items_excluded` counts those distinct
    items), and a user whose liked held-out items are all such items is left out of every mean
    (`users_excluded`) rather than counted as a guaranteed zero. `users` is how many users the means
    are over.
    """
    popularity = np.bincount(train.index, minlength=train.shape[1])
    unseen = popularity == 0
    rows = np.repeat(np.arange(test.shape[0]), test.counts())
    liked_pairs = test.data >= liked_at
    scorable = liked_pairs & ~unseen[test.index]
    liked_by_user = Compressed.build(rows[scorable], test.index[scorable], test.data[scorable], test.shape)
    users = np.flatnonzero(liked_by_user.counts() > 0)
    users_with_liked = np.unique(rows[liked_pairs])
    items_excluded = np.unique(test.index[liked_pairs & unseen[test.index]])
    tiebreak = popularity_tiebreak(popularity)
    totals = dict.fromkeys(RANKING_METRICS[:-1], 0.0)
    listed = np.zeros(train.shape[1], dtype=bool)
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    per_chunk = max(1, USERS_PER_CHUNK_ELEMENTS // max(1, train.shape[1]))
    for start in range(0, len(users), per_chunk):
        chunk = users[start : start + per_chunk]
        exclude = train.dense_mask(chunk) | unseen[None, :]
        lists = top_n(ranker.scores(chunk), exclude, n, tiebreak)
        listed[lists[lists >= 0]] = True
        liked = liked_by_user.dense_mask(chunk)
        hits = np.take_along_axis(liked, lists.clip(0), axis=1) & (lists >= 0)
        n_hits, n_liked = hits.sum(axis=1), liked.sum(axis=1)
        ideal = np.cumsum(discounts)[np.minimum(n_liked, n) - 1]
        totals["precision"] += float((n_hits / n).sum())
        totals["recall"] += float((n_hits / n_liked).sum())
        totals["ndcg"] += float(((hits * discounts[: hits.shape[1]]).sum(axis=1) / ideal).sum())
        totals["hit_rate"] += float((n_hits > 0).sum())
    count = max(1, len(users))
    result = {f"{name}@{n}": value / count for name, value in totals.items()}
    result["coverage"] = float(listed.sum() / max(1, train.shape[1]))
    result["users"] = float(len(users))
    result["users_excluded"] = float(len(users_with_liked) - len(users))
    result["items_excluded"] = float(len(items_excluded))
    return result


def figures_only(metrics: dict[str, float]) -> dict[str, float]:
    """`ranking_metrics` without its counts: what a run records as its evaluation."""
    return {key: value for key, value in metrics.items() if key not in RANKING_COUNTS}
