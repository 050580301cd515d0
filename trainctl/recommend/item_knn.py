"""Item-kNN for top-N: each item's k most similar items on the implicit matrix, kept as sparse rows.

sim(j, i) = co(j, i) / (norm_j^alpha * norm_i^(1 - alpha)) with co = X^T X and norm = its diagonal
(alpha = 0.5 is the whole-vector cosine; above 0.5 popular candidates lose less), shrunk by the
number of users who rated both as user-cf and item-cf shrink theirs (similarity.shrink_by_support):
an item with a few ratings gets no large similarity from them. Item j keeps its
k most similar items (Deshpande and Karypis' item-based top-N), so memory is O(items x k); a user's
score for item i sums the similarities of the rated items j that have i among their neighbours.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np

from trainctl.models.ranker_settings import KNNRankerSettings
from trainctl.recommend.interactions import Reduce, cooccurrence_blocks, item_norms
from trainctl.recommend.matrix import Compressed
from trainctl.recommend.similarity import shrink_by_support


def top_k_rows(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of each row's k largest positive entries, by ascending column; columns -1
    (value 0) pad rows with fewer. Entries tied at the k-th value are kept as numpy's partition picks
    them."""
    width = block.shape[1]
    if k < width:
        columns = np.sort(np.argpartition(block, width - k, axis=1)[:, width - k :], axis=1)
    else:
        columns = np.broadcast_to(np.arange(width), block.shape)
    values = np.take_along_axis(block, columns, axis=1)
    keep = values > 0
    return np.where(keep, columns, -1), np.where(keep, values, 0.0)


def similarity_block(block: np.ndarray, rows: np.ndarray, norms: np.ndarray, alpha: float) -> np.ndarray:
    """Rows `rows` of the asymmetric cosine (float32) from their co-occurrence block; 0 on the diagonal
    and for items that nobody rated."""
    with np.errstate(divide="ignore"):
        left, right = 1.0 / norms[rows] ** alpha, 1.0 / norms ** (1.0 - alpha)
    left[~np.isfinite(left)], right[~np.isfinite(right)] = 0.0, 0.0
    sim = block.astype(np.float32, copy=False) * left.astype(np.float32)[:, None]
    sim *= right.astype(np.float32)[None, :]
    sim[np.arange(len(rows)), rows] = 0.0
    return sim


def knn_neighbours(
    by_item: Compressed,
    by_user: Compressed,
    settings: KNNRankerSettings,
    rows: np.ndarray | None = None,
    reduce: Reduce = None,
) -> Compressed:
    """The sparse top-k similarity rows of `rows` (every item when None; other rows stay empty).

    Memory: the result holds at most len(rows) x k entries; the co-occurrence is computed in blocks
    of interactions.BLOCK_ELEMENTS entries. `reduce` sums over data-parallel ranks.
    """
    num_items = by_user.shape[1]
    rows = np.arange(num_items) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    norms = item_norms(by_item, reduce)
    columns = np.full((len(rows), min(settings.k, num_items)), -1, dtype=np.int64)
    values = np.zeros(columns.shape, dtype=np.float32)
    done = 0
    blocks = cooccurrence_blocks(by_item, by_user, rows, reduce)
    supports = (  # common raters of each pair: the same blocks of the 0/1 matrix
        (co for _, co in cooccurrence_blocks(rated(by_item), rated(by_user), rows, reduce))
        if settings.shrinkage > 0
        else repeat(None)
    )
    for (block, co), support in zip(blocks, supports, strict=False):  # repeat(None) never ends
        sim = similarity_block(co, block, norms, settings.alpha)
        if support is not None:
            shrink_by_support(sim, support, settings.shrinkage)
        cols, vals = top_k_rows(sim, settings.k)
        columns[done : done + len(block)], values[done : done + len(block)] = cols, vals
        done += len(block)
    return neighbours_from_rows(rows, columns, values, num_items)


def rated(ratings: Compressed) -> Compressed:
    """The same sparsity with every value 1: its co-occurrence counts common raters."""
    return Compressed(ratings.ptr, ratings.index, np.ones(len(ratings.data), np.float32), ratings.shape)


def neighbours_from_rows(
    rows: np.ndarray, columns: np.ndarray, values: np.ndarray, num_items: int
) -> Compressed:
    """(items x items) sparse rows from each listed row's padded (columns, values)."""
    keep = columns >= 0
    counts = np.zeros(num_items, dtype=np.int64)
    counts[rows] = keep.sum(axis=1)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order = np.argsort(rows, kind="stable")
    return Compressed(
        ptr,
        columns[order][keep[order]].astype(np.int64),
        values[order][keep[order]].astype(np.float32),
        (num_items, num_items),
    )


def knn_memory_bytes(num_items: int, k: int) -> int:
    """Bytes of a fitted model's neighbour rows: int64 column and float32 value per neighbour."""
    return num_items * k * (8 + 4) + (num_items + 1) * 8


def query_memory_bytes(num_users: int, num_items: int, num_ratings: int, rated: int, k: int) -> int:
    """Peak bytes of answering one user from ratings alone (`recommend --data` with item-knn), past the
    interpreter and the file's parsing: the ratings by user and by item (int64 index, float64 value:
    32 B a rating) plus the sort that builds them (16 B), their implicit weights (float32: 8 B), one
    co-occurrence block (at most BLOCK_ELEMENTS entries of 40 B: the sums and a bincount's, the
    float32 similarities, the selection's indices) and the same block of common-rater counts (16 B),
    then twice (weights, counts) either X held dense (float32, when users x items is at most
    DENSE_LIMIT) or the gathered pairs (at most PAIR_BUDGET, about 40 B each), the `rated` items'
    neighbours (12 B each) and a few score rows over the catalogue."""
    from trainctl.recommend.interactions import BLOCK_ELEMENTS, DENSE_LIMIT, PAIR_BUDGET

    per_rating = 32 + 16 + 8
    cells = num_users * num_items
    gather = 4 * cells if cells <= DENSE_LIMIT else PAIR_BUDGET * 40
    block = min(BLOCK_ELEMENTS, max(1, rated) * num_items) * (40 + 16) + 2 * gather
    return per_rating * num_ratings + 16 * (num_users + num_items) + block + 12 * rated * k + 32 * num_items
