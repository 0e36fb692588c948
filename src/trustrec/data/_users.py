"""Users named by a caller (a forget request, an audit config): raw ids or indices resolved
against a dataset, unknown ones named in the error."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from trustrec.data._dataset import Dataset
from trustrec.errors import ConfigError, DataError

__all__ = ["resolve_users"]


def resolve_users(
    dataset: Dataset, user_ids: npt.ArrayLike, *, by: Literal["id", "index"] = "id", owner: str = "forget"
) -> np.ndarray:
    """Sorted unique user indices of raw ``user_ids`` (``by="id"``) or of indices (``"index"``).

    Unknown users raise a :class:`DataError` that names them.

    Parameters
    ----------
    dataset : Dataset
        The dataset the users belong to.
    user_ids : object or array_like
        One user or several: raw ids (compared as strings) or user indices.
    by : {"id", "index"}, default "id"
        Whether ``user_ids`` are raw ids or indices.
    owner : str, default "forget"
        Who asks, named at the start of error messages.

    Returns
    -------
    numpy.ndarray
        The sorted unique int64 user indices.

    Raises
    ------
    DataError
        If ``user_ids`` is empty, an index is not an integer or out of range, or a raw id is
        not a user of ``dataset``.
    ConfigError
        If ``by`` is neither ``"id"`` nor ``"index"``.
    """
    values = list(np.atleast_1d(np.asarray(user_ids, dtype=object)))
    if not values:
        raise DataError(f"{owner}: the forget set is empty; give at least one user")
    if by == "index":
        try:
            idx = np.asarray(values, np.int64)
        except (TypeError, ValueError):
            raise DataError(f"{owner}: by='index' needs integer user indices, got {values[:5]}") from None
        bad_indices = [int(i) for i in idx if not 0 <= i < dataset.n_users]
        if bad_indices:
            raise DataError(
                f"{owner}: {len(bad_indices)} user indices are not users of dataset '{dataset.name}' "
                f"(0..{dataset.n_users - 1}): {bad_indices[:10]}{' ...' if len(bad_indices) > 10 else ''}"
            )
        return np.unique(idx)
    if by != "id":
        raise ConfigError(f"{owner}: by must be 'id' or 'index', got {by!r}")
    raw = [str(v) for v in values]
    idx = dataset.user_index(raw, missing="ignore")
    unknown = [r for r, i in zip(raw, idx) if i < 0]
    if unknown:
        raise DataError(
            f"{owner}: {len(unknown)} of {len(raw)} user ids are not users of dataset "
            f"'{dataset.name}': {unknown[:10]}{' ...' if len(unknown) > 10 else ''} "
            f"(known ids look like {list(dataset.user_ids[:3])}); nothing was forgotten"
        )
    return np.unique(np.asarray(idx, np.int64))
