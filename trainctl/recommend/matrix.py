"""Training ratings held both by user and by item (compressed numpy arrays), with means and counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp


@dataclass(frozen=True)
class Compressed:
    """A sparse matrix by rows: row r's entries are index[ptr[r]:ptr[r+1]] with values data[...]."""

    ptr: np.ndarray
    index: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def build(
        cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
    ) -> Compressed:
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=shape[0])
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(ptr, cols[order].astype(np.int64), values[order].astype(np.float64), shape)

    def counts(self) -> np.ndarray:
        return np.diff(self.ptr)

    def row_means(self) -> np.ndarray:
        """Mean of each row's values; NaN for an empty row."""
        counts = self.counts()
        rows = np.repeat(np.arange(self.shape[0]), counts)
        sums = np.bincount(rows, weights=self.data, minlength=self.shape[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums, np.nan) / counts

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, position) of every entry of `rows`: owner is the entry's place in `rows`, position
        its place in `index` and `data`."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.ptr[rows + 1] - self.ptr[rows]
        owner = np.repeat(np.arange(len(rows)), lengths)
        starts = np.repeat(self.ptr[rows] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return owner, starts + np.arange(len(owner))

    def dense_mask(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), columns) booleans: True where the row has an entry."""
        mask = np.zeros((len(rows), self.shape[1]), dtype=bool)
        owner, position = self.entries(rows)
        mask[owner, self.index[position]] = True
        return mask

    def dense_values(self, rows: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """(len(rows), columns) values, 0 where the row has no entry."""
        out = np.zeros((len(rows), self.shape[1]), dtype=dtype)
        owner, position = self.entries(rows)
        out[owner, self.index[position]] = self.data[position]
        return out

    def to_scipy(self) -> sp.csr_matrix:
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.index, self.ptr), shape=self.shape)


@dataclass(frozen=True)
class RatingMatrix:
    """The ratings a method learns from: users x items, by user and by item."""

    by_user: Compressed
    by_item: Compressed

    @classmethod
    def build(
        cls, users: np.ndarray, items: np.ndarray, values: np.ndarray, shape: tuple[int, int]
    ) -> RatingMatrix:
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        return cls(
            Compressed.build(users, items, values, shape),
            Compressed.build(items, users, values, (shape[1], shape[0])),
        )

    @property
    def num_users(self) -> int:
        return self.by_user.shape[0]

    @property
    def num_items(self) -> int:
        return self.by_user.shape[1]

    @property
    def global_mean(self) -> float:
        return float(self.by_user.data.mean()) if len(self.by_user.data) else 0.0

    @property
    def rating_range(self) -> tuple[float, float]:
        data = self.by_user.data
        return (float(data.min()), float(data.max())) if len(data) else (0.0, 0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The matrix as named arrays (to save); `from_arrays` reads them back."""
        m = self.by_user
        return {"ptr": m.ptr, "index": m.index, "data": m.data, "shape": np.array(m.shape)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RatingMatrix:
        shape = tuple(int(x) for x in arrays["shape"])
        users = np.repeat(np.arange(shape[0]), np.diff(arrays["ptr"]))
        return cls.build(users, arrays["index"], arrays["data"], (shape[0], shape[1]))
