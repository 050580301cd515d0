"""The implicit matrix that rankers learn from (liked ratings weigh 1, other ratings less) and its
item-item co-occurrence, computed in blocks of rows so that no items x items array is ever whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainctl.recommend.matrix import Compressed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import scipy.sparse as sp

BLOCK_ELEMENTS = 1 << 21  # (rows x items) co-occurrence entries computed at a time


def interaction_weights(values: np.ndarray, liked_at: float, weak_weight: float) -> np.ndarray:
    """1 for a liked rating (>= liked_at), `weak_weight` for any other rating: a rated item was seen."""
    return np.where(np.asarray(values) >= liked_at, 1.0, weak_weight).astype(np.float32)


def implicit_rows(ratings: Compressed, liked_at: float, weak_weight: float) -> Compressed:
    """The same sparsity as `ratings` (by user or by item) with interaction weights for values."""
    return Compressed(
        ratings.ptr, ratings.index, interaction_weights(ratings.data, liked_at, weak_weight), ratings.shape
    )


def as_scipy(rows: Compressed) -> sp.csr_matrix:
    """`rows` as a float32 scipy CSR matrix with int32 indices where they fit."""
    import scipy.sparse as sp

    index_type = np.int32 if max(rows.shape) < 2**31 and len(rows.data) < 2**31 else np.int64
    return sp.csr_matrix(
        (
            rows.data.astype(np.float32),
            rows.index.astype(index_type),
            rows.ptr.astype(index_type),
        ),
        shape=rows.shape,
    )


def block_rows(num_items: int, rows: np.ndarray) -> Iterator[np.ndarray]:
    """`rows` in consecutive blocks of about BLOCK_ELEMENTS (rows x items) entries."""
    size = max(1, BLOCK_ELEMENTS // max(1, num_items))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def cooccurrence_blocks(
    by_item: sp.csr_matrix,
    by_user: sp.csr_matrix,
    rows: np.ndarray,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows of the block, dense block of X^T X) for `rows` of the item-item co-occurrence.

    `by_item` is X^T (items x users) and `by_user` X; `reduce` sums a block over data-parallel ranks
    (each rank holds some of the users), so every rank sees the whole block.
    """
    for block in block_rows(by_user.shape[1], np.asarray(rows, dtype=np.int64)):
        dense = (by_item[block] @ by_user).toarray().astype(np.float64)
        yield block, dense if reduce is None else reduce(dense)


def item_norms(by_item: sp.csr_matrix, reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The diagonal of X^T X: each item's sum of squared weights (over every rank's users)."""
    squares = np.asarray(by_item.multiply(by_item).sum(axis=1), dtype=np.float64).ravel()
    return squares if reduce is None else reduce(squares)


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
