"""The implicit matrix that rankers learn from (liked ratings weigh 1, other ratings less) and its
item-item co-occurrence, computed in blocks of rows so that no items x items array is ever whole."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from trainctl.recommend.matrix import Compressed

BLOCK_ELEMENTS = 1 << 20  # (rows x items) co-occurrence entries computed at a time
PAIR_BUDGET = 1 << 21  # (user, item) pairs gathered at a time while computing a block
DENSE_LIMIT = 1 << 24  # up to this many (users x items) entries, X is held dense (float32, 64 MB)

Reduce = Callable[[np.ndarray], np.ndarray] | None


def interaction_weights(values: np.ndarray, liked_at: float, weak_weight: float) -> np.ndarray:
    """1 for a liked rating (>= liked_at), `weak_weight` for any other rating: a rated item was seen."""
    return np.where(np.asarray(values) >= liked_at, 1.0, weak_weight).astype(np.float32)


def implicit_rows(ratings: Compressed, liked_at: float, weak_weight: float) -> Compressed:
    """The same sparsity as `ratings` (by user or by item) with interaction weights for values."""
    return Compressed(
        ratings.ptr, ratings.index, interaction_weights(ratings.data, liked_at, weak_weight), ratings.shape
    )


def implicit_matrices(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    liked_at: float,
    weak_weight: float,
) -> tuple[Compressed, Compressed]:
    """The implicit (users x items) matrix of these ratings, by user and by item."""
    weights = interaction_weights(values, liked_at, weak_weight)
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    return (
        Compressed.build(users, items, weights, shape),
        Compressed.build(items, users, weights, (shape[1], shape[0])),
    )


def block_rows(num_items: int, rows: np.ndarray) -> Iterator[np.ndarray]:
    """`rows` in consecutive blocks of about BLOCK_ELEMENTS (rows x items) entries."""
    size = max(1, BLOCK_ELEMENTS // max(1, num_items))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def cooccurrence_blocks(
    by_item: Compressed, by_user: Compressed, rows: np.ndarray, reduce: Reduce = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows of the block, dense block of X^T X) for `rows` of the item-item co-occurrence.

    A small X (at most DENSE_LIMIT entries) is held dense and each block is one float32 matrix product
    (exact with the default weights 1 and 0.5: products are quarters, sums far below 2^22). Otherwise
    row j sums, over the users v who rated j, w(v, j) times v's row of weights: numpy gathers and one
    bincount per chunk of at most PAIR_BUDGET (user, item) pairs (a chunk may hold one user with
    more). `reduce` sums a block over data-parallel ranks (each holds some of the users).
    """
    num_users, num_items = by_user.shape
    rows = np.asarray(rows, dtype=np.int64)
    if num_users * num_items <= DENSE_LIMIT:
        weights_by_user = by_user.dense_values(np.arange(num_users), np.float32)
        for block in block_rows(num_items, rows):
            dense = weights_by_user[:, block].T @ weights_by_user
            yield block, dense if reduce is None else reduce(dense)
        return
    user_counts = by_user.counts()
    for block in block_rows(num_items, rows):
        dense = np.zeros(len(block) * num_items)
        owner, position = by_item.entries(block)
        users, weights = by_item.index[position], by_item.data[position]
        reach = np.cumsum(user_counts[users])  # pairs that the block's first raters expand to
        total = int(reach[-1]) if len(reach) else 0
        starts = np.searchsorted(reach, np.arange(0, total, PAIR_BUDGET), "right")
        starts[0] = 0 if len(starts) else 0
        for start, end in zip(starts, [*starts[1:], len(users)], strict=True):
            if start >= end:
                continue
            voter, pair = by_user.entries(users[start:end])
            cells = owner[start:end][voter] * num_items + by_user.index[pair]
            products = weights[start:end][voter].astype(np.float64) * by_user.data[pair]
            dense += np.bincount(cells, weights=products, minlength=len(dense))
        dense = dense.reshape(len(block), num_items)
        yield block, dense if reduce is None else reduce(dense)


def item_norms(by_item: Compressed, reduce: Reduce = None) -> np.ndarray:
    """The diagonal of X^T X: each item's sum of squared weights (over every rank's users)."""
    owner = np.repeat(np.arange(by_item.shape[0]), by_item.counts())
    squares = np.bincount(
        owner, weights=np.asarray(by_item.data, np.float64) ** 2, minlength=by_item.shape[0]
    )
    return squares if reduce is None else reduce(squares)
