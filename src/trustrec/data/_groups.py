"""Groups of users and items for sliced metrics: attribute columns, age bands, activity levels,
and item-group membership matrices built from multi-valued item columns (genres, providers)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from trustrec.errors import DataError

__all__ = [
    "ITEM_GROUP_COLUMNS",
    "MISSING_GROUP",
    "activity_levels",
    "age_bands",
    "guess_item_group_column",
    "item_group_matrix",
    "split_group_values",
    "user_group_table",
]

MISSING_GROUP = "(missing)"
ITEM_GROUP_COLUMNS = (
    "genre",
    "genres",
    "class",
    "category",
    "categories",
    "provider",
    "brand",
    "publisher",
    "artist",
    "label",
)
# MovieLens-1M's published age bands; used for any column named "age" that holds numbers.
AGE_EDGES = (18, 25, 35, 45, 50, 56)
_SEPARATORS = ("|", ";", ",")


def guess_item_group_column(items: pd.DataFrame) -> str | None:
    """The first item column whose name is a usual group column (genre, category, provider...).

    Names are matched case-insensitively, in the order of ``ITEM_GROUP_COLUMNS``.

    Parameters
    ----------
    items : pandas.DataFrame
        The item attribute table.

    Returns
    -------
    str or None
        The column's name as spelled in ``items``, or ``None`` when no column matches.
    """
    lower = {c.lower(): c for c in items.columns}
    return next((lower[name] for name in ITEM_GROUP_COLUMNS if name in lower), None)


def split_group_values(values: pd.Series, sep: str | None) -> tuple[list[list[str]], str]:
    """Split each value of a multi-valued column into its stripped, non-empty tokens.

    Parameters
    ----------
    values : pandas.Series
        The column; missing values give no tokens.
    sep : str or None
        The separator, ``"whitespace"`` for runs of whitespace, or ``None`` to detect it: the
        first of ``|``, ``;`` and ``,`` found in any value, else whitespace.

    Returns
    -------
    rows : list of list of str
        The tokens of each value, in order.
    sep : str
        The separator used.
    """
    text = values.astype("string")
    if sep is None:
        present = text.dropna()
        sep = next((s for s in _SEPARATORS if present.str.contains(s, regex=False).any()), "whitespace")
    pattern = r"\s+" if sep == "whitespace" else re.escape(sep)
    rows = [[] if pd.isna(v) else [t.strip() for t in re.split(pattern, str(v)) if t.strip()] for v in text]
    return rows, sep


def item_group_matrix(
    items: pd.DataFrame, column: str, *, sep: str | None = None, max_groups: int = 200
) -> tuple[sp.csr_matrix, list[str], dict]:
    """(n_items, n_groups) 0/1 membership from a (possibly multi-valued) item column.

    ``sep=None`` detects the separator: ``|``, ``;`` or ``,`` when present, else whitespace
    (RecBole token sequences). Returns the matrix, the group names and counts (items with no
    group, the separator used). More than ``max_groups`` distinct values raises: the column is
    an identifier or free text, not a group.

    Parameters
    ----------
    items : pandas.DataFrame
        The item attribute table, one row per item index.
    column : str
        The group column.
    sep : str, optional
        The separator between a value's groups (``"whitespace"`` for runs of whitespace);
        ``None`` detects it.
    max_groups : int, default 200
        The most distinct groups accepted.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix
        (n_items, n_groups) with 1.0 where an item is in a group.
    names : list of str
        The group names, sorted; column ``j`` of ``matrix`` is ``names[j]``.
    info : dict
        ``n_items_without_group`` and ``separator`` (the one used).

    Raises
    ------
    DataError
        If ``column`` is not an item column, or it has more than ``max_groups`` distinct values.
    """
    if column not in items.columns:
        raise DataError(f"item column {column!r} not found; item columns: {list(items.columns)}")
    rows, used = split_group_values(items[column], sep)
    names = sorted({t for r in rows for t in r})
    if len(names) > max_groups:
        raise DataError(
            f"item column {column!r} has {len(names)} distinct values (more than {max_groups}); "
            "it does not look like a group column (genre, category, provider)"
        )
    code = {n: i for i, n in enumerate(names)}
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.fromiter((code[t] for x in rows for t in x), dtype=np.int64, count=len(r))
    m = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), len(names)))
    m.data[:] = 1.0  # an item listing a group twice is still in it once
    return m, names, {"n_items_without_group": int(sum(1 for x in rows if not x)), "separator": used}


def age_bands(ages: pd.Series) -> pd.Series:
    """Numeric ages to MovieLens-1M bands (<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+).

    Parameters
    ----------
    ages : pandas.Series
        The ages; values that are not numbers become missing.

    Returns
    -------
    pandas.Series
        The band label of each age (string dtype; missing where the age is).
    """
    x = pd.to_numeric(ages, errors="coerce")
    labels = ["<18"] + [f"{a}-{b - 1}" for a, b in itertools.pairwise(AGE_EDGES)] + [f"{AGE_EDGES[-1]}+"]
    bands = pd.cut(x, [-np.inf, *AGE_EDGES, np.inf], right=False, labels=labels)
    return bands.astype("string")


def activity_levels(n_interactions: npt.ArrayLike, active_share: float = 0.2) -> np.ndarray:
    """Label users "active" or "inactive" by their number of training interactions.

    "active" for the ``active_share`` of users with the most training interactions (ties by
    index), "inactive" for the rest: the advantaged/disadvantaged split of user-oriented
    fairness (Li et al., WWW 2021, which uses the top 5%; the share is a parameter).

    Parameters
    ----------
    n_interactions : array_like
        The number of training interactions of each user.
    active_share : float, default 0.2
        The share of users labelled "active" (rounded up to a whole user); in (0, 1).

    Returns
    -------
    numpy.ndarray
        An object array of ``"active"`` / ``"inactive"``, one per user.

    Raises
    ------
    ValueError
        If ``active_share`` is not in (0, 1).
    """
    counts = np.asarray(n_interactions)
    if not 0 < active_share < 1:
        raise ValueError(f"active_share must be in (0, 1), got {active_share}")
    n_active = int(np.ceil(active_share * len(counts)))
    order = np.lexsort((np.arange(len(counts)), -counts))
    out = np.full(len(counts), "inactive", dtype=object)
    out[order[:n_active]] = "active"
    return out


def user_group_table(
    users: pd.DataFrame,
    n_interactions: npt.ArrayLike,
    columns: Sequence[str] | None = None,
    *,
    active_share: float = 0.2,
    numeric_bins: int = 4,
) -> pd.DataFrame:
    """One string column per grouping, one row per user index.

    The chosen attribute columns (``None``: every column but ids and free text), numeric ones
    banded (``age`` by the MovieLens bands, others by quartiles), plus ``activity``. Missing
    values become ``"(missing)"`` so they are counted, never dropped.

    Parameters
    ----------
    users : pandas.DataFrame
        The user attribute table, one row per user index.
    n_interactions : array_like
        The number of training interactions of each user (for ``activity``).
    columns : sequence of str, optional
        The attribute columns to group by; ``None`` takes every column but ``user_id`` /
        ``user``, skipping non-numeric ones with more than 50 distinct values.
    active_share : float, default 0.2
        The share of users in the ``"active"`` group (see :func:`activity_levels`).
    numeric_bins : int, default 4
        The number of quantile bins for numeric columns other than ``age`` with more than 12
        distinct values.

    Returns
    -------
    pandas.DataFrame
        One object column per grouping plus ``activity``, indexed ``0..len(users)-1``.

    Raises
    ------
    DataError
        If a column in ``columns`` is not a user column.
    ValueError
        If ``active_share`` is not in (0, 1).
    """
    out = pd.DataFrame(index=np.arange(len(users)))
    candidates = [c for c in users.columns if c not in ("user_id", "user")] if columns is None else list(columns)
    for col in candidates:
        if col not in users.columns:
            raise DataError(f"user attribute {col!r} not found; user columns: {list(users.columns)}")
        values = users[col].reset_index(drop=True)
        numeric = pd.to_numeric(values, errors="coerce")
        if col.lower() == "age" and numeric.notna().any():
            groups = age_bands(values)
        elif numeric.notna().sum() == values.notna().sum() and values.nunique() > 12:
            groups = pd.qcut(numeric, numeric_bins, duplicates="drop").astype("string")
        else:
            if columns is None and values.nunique(dropna=True) > 50:
                continue  # identifiers and free text (zip codes) are not groups
            groups = values.astype("string")
        out[col] = groups.fillna(MISSING_GROUP).to_numpy(dtype=object)
    out["activity"] = activity_levels(np.asarray(n_interactions), active_share)
    return out
