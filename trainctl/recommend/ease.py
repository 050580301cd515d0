"""EASE (Steck 2019): the closed-form item-item model for catalogues whose items x items matrix fits.

B = argmin ||X - X B||^2 + lambda ||B||^2 with diag(B) = 0, solved as P = (X^T X + lambda I)^-1,
B = I - P diag(1 / diag(P)). A user's scores are x_u B.
"""

from __future__ import annotations

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.recommend.interactions import Reduce, cooccurrence_blocks
from trainctl.recommend.matrix import Compressed

MEMORY_LIMIT = 4 << 30  # bytes EASE may take; larger catalogues use item-kNN


def ease_memory_bytes(num_items: int) -> int:
    """Peak bytes of a fit: the float64 Gram matrix, its inverse and the float32 weights."""
    return num_items * num_items * (8 + 8 + 4)


def check_fits(num_items: int) -> None:
    need = ease_memory_bytes(num_items)
    if need > MEMORY_LIMIT:
        raise TrainctlError(
            f"EASE on {num_items:,} items needs {need / 2**30:.1f} GiB (items^2 x 20 bytes), "
            f"over its {MEMORY_LIMIT / 2**30:.0f} GiB limit",
            fix="use model=item_knn (memory items x k) for a catalogue this large",
        )


def ease_weights(by_item: Compressed, by_user: Compressed, lam: float, reduce: Reduce = None) -> np.ndarray:
    """The (items x items) float32 weights B; `reduce` sums the Gram blocks over data-parallel ranks."""
    num_items = by_user.shape[1]
    check_fits(num_items)
    gram = np.empty((num_items, num_items), dtype=np.float64)
    for block, co in cooccurrence_blocks(by_item, by_user, np.arange(num_items), reduce):
        gram[block] = co
    gram[np.diag_indices(num_items)] += lam
    inverse = np.linalg.inv(gram)
    del gram
    weights = inverse / -np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)
