"""Small array helpers shared by the data layer: read-only copies and ragged rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trustrec.errors import DataError


def readonly(array: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """A read-only copy of ``array`` (optionally cast), so frozen objects really are frozen.

    Parameters
    ----------
    array : array_like
        The values to copy.
    dtype : data-type, optional
        The dtype to cast to; ``None`` keeps the one NumPy infers.

    Returns
    -------
    numpy.ndarray
        A new array with its ``writeable`` flag cleared.
    """
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Ragged:
    """Rows of different lengths in CSR form: row ``i`` is ``values[indptr[i]:indptr[i+1]]``.

    Used for histories, targets and candidate lists so batches stay vectorised. Both arrays are
    stored as read-only copies (``indptr`` as int64).

    Parameters
    ----------
    indptr : numpy.ndarray
        1-d, non-decreasing row offsets starting at 0 and ending at ``len(values)``; one more
        entry than there are rows.
    values : numpy.ndarray
        The values of all rows, concatenated.

    Raises
    ------
    DataError
        If ``indptr`` is not 1-d, is empty, does not start at 0, decreases, or does not end at
        ``len(values)``.
    """

    indptr: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        indptr = readonly(self.indptr, np.int64)
        values = readonly(self.values)
        if indptr.ndim != 1 or len(indptr) == 0 or indptr[0] != 0:
            raise DataError("Ragged: indptr must be 1-d and start at 0")
        if np.any(np.diff(indptr) < 0):
            raise DataError("Ragged: indptr must be non-decreasing")
        if indptr[-1] != len(values):
            raise DataError(f"Ragged: indptr ends at {indptr[-1]} but there are {len(values)} values")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence | np.ndarray], dtype: npt.DTypeLike = np.int64) -> Ragged:
        arrays = [np.asarray(r, dtype=dtype).ravel() for r in rows]
        lengths = np.fromiter((len(r) for r in arrays), dtype=np.int64, count=len(arrays))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        values = np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)
        return cls(indptr, values.astype(dtype, copy=False))

    @classmethod
    def from_groups(cls, group: np.ndarray, values: np.ndarray, n_rows: int) -> Ragged:
        """Group ``values`` by the row index in ``group`` (already in the wanted order within a row)."""
        group = np.asarray(group, dtype=np.int64)
        order = np.argsort(group, kind="stable")
        counts = np.bincount(group, minlength=n_rows) if len(group) else np.zeros(n_rows, np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(indptr, np.asarray(values)[order])

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.indptr[i] : self.indptr[i + 1]]

    def rows(self) -> list[np.ndarray]:
        return [self.row(i) for i in range(len(self))]

    def row_ids(self) -> np.ndarray:
        """The row index of every value (the COO expansion of ``indptr``)."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def tails(self, limit: int) -> Ragged:
        """A new Ragged with each row's last ``limit`` values (rows as long or shorter kept whole).

        Parameters
        ----------
        limit : int
            Values kept per row (at least 0).

        Returns
        -------
        Ragged
            The cut rows, same number of rows.
        """
        keep = np.minimum(self.lengths, max(0, int(limit)))
        indptr = np.concatenate([[0], np.cumsum(keep)])
        flat = np.repeat(self.indptr[1:] - keep - indptr[:-1], keep) + np.arange(indptr[-1])
        return Ragged(indptr, self.values[flat])

    def take(self, rows: np.ndarray) -> Ragged:
        """A new Ragged with only ``rows`` (in that order); vectorised gather."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.indptr[rows], self.lengths[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
        return Ragged(indptr, self.values[np.repeat(starts, lengths) + offsets])

    def last(self, n: int) -> Ragged:
        """Keep at most the last ``n`` values of each row."""
        lengths = np.minimum(self.lengths, n)
        starts = self.indptr[1:] - lengths
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
        return Ragged(indptr, self.values[np.repeat(starts, lengths) + offsets])

    def to_dense_mask(self, n_cols: int) -> np.ndarray:
        """Boolean matrix (rows x n_cols) with True at every value."""
        mask = np.zeros((len(self), n_cols), dtype=bool)
        mask[self.row_ids(), self.values] = True
        return mask

    def to_padded(self, width: int, fill: int = 0, align: str = "right") -> np.ndarray:
        """Dense (rows x width) array of the last ``width`` values; pad on the left for 'right'."""
        kept = self.last(width)
        out = np.full((len(kept), width), fill, dtype=kept.values.dtype)
        lengths = kept.lengths
        cols = np.arange(kept.indptr[-1]) - np.repeat(kept.indptr[:-1], lengths)
        if align == "right":
            cols = cols + np.repeat(width - lengths, lengths)
        out[kept.row_ids(), cols] = kept.values
        return out
