"""Row-row similarity of a sparse ratings matrix (cosine or Pearson over co-rated columns, shrunk)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

BLOCK_ELEMENTS = 1 << 22  # rows are compared in blocks of about this many (rows x rows) entries


class Similarity(str, Enum):
    cosine = "cosine"  # over the columns both rows rated
    pearson = "pearson"  # centred on each row's mean over the columns both rows rated


def shrink_by_support(sim: np.ndarray, common: np.ndarray, shrinkage: float) -> np.ndarray:
    """The minimum-evidence rule of every neighbourhood method (user-cf, item-cf, item-kNN): a similarity
    computed on n common raters (or co-rated columns) is shrunk toward 0 by (n - 1) / (n - 1 + shrinkage),
    so that a pair seen together once or twice cannot look as close as one seen together a hundred times
    (Koren 2010; Surprise's pearson_baseline does the same). `sim` is scaled in place and returned."""
    if shrinkage > 0:
        support = np.maximum(np.asarray(common, dtype=sim.dtype) - 1, 0)
        sim *= support / (support + shrinkage)
    return sim


def similarity(matrix: sp.spmatrix, kind: Similarity | str, shrinkage: float = 0.0) -> np.ndarray:
    """Dense (rows x rows) float32 similarities from sparse products; 0 on the diagonal.

    Pairs with little support count less (shrink_by_support). Pairs with no co-rated column or a zero
    variance get 0.
    """
    import scipy.sparse as sp  # here, not at module load: a cached query needs only the Similarity names

    kind = Similarity(kind)
    values = sp.csr_matrix(matrix, dtype=np.float64)
    rated = values.copy()
    rated.data[:] = 1.0
    squares = values.multiply(values).tocsr()
    rows = values.shape[0]
    result = np.empty((rows, rows), dtype=np.float32)
    block = max(1, BLOCK_ELEMENTS // max(rows, 1))
    squares_t, rated_t, values_t = squares.T.tocsc(), rated.T.tocsc(), values.T.tocsc()
    for start in range(0, rows, block):
        part = slice(start, min(rows, start + block))
        common = (rated[part] @ rated_t).toarray()  # n_uv: columns both rated
        products = (values[part] @ values_t).toarray()  # sum of x_u x_v over them
        squares_u = (squares[part] @ rated_t).toarray()  # sum of x_u^2 over them
        squares_v = (rated[part] @ squares_t).toarray()  # sum of x_v^2 over them
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind is Similarity.cosine:
                sim = products / np.sqrt(squares_u * squares_v)
            else:
                sums_u = (values[part] @ rated_t).toarray()
                sums_v = (rated[part] @ values_t).toarray()
                covariance = products - sums_u * sums_v / common
                sim = covariance / np.sqrt(
                    (squares_u - sums_u**2 / common) * (squares_v - sums_v**2 / common)
                )
        sim[~np.isfinite(sim) | (common == 0)] = 0.0
        result[part] = shrink_by_support(sim, common, shrinkage)
    np.fill_diagonal(result, 0.0)
    return result
