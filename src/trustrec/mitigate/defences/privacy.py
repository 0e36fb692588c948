"""Privacy mitigations on histories: noise (randomised response) and minimisation.

Randomised response (Warner 1965, in its local-privacy form)
    :func:`randomised_response` keeps each history item with probability
    ``p = e^eps / (e^eps + 1)`` (:func:`keep_probability`) and otherwise replaces it by an item
    drawn uniformly from the *other* items of the catalog, so the share of items left unchanged
    is exactly ``p`` in expectation (a replacement never lands on the original item). For a
    catalog of ``n`` items this binary keep/replace form bounds the likelihood ratio of any
    reported item by ``e^eps * (n - 1)``: it is ``(eps + ln(n - 1))``-local differential privacy
    per item, not ``eps``-LDP (k-ary randomised response would keep with ``e^eps / (e^eps + n -
    1)``, which destroys almost every history on a real catalog). ``eps`` is the stated
    strength of the keep/replace coin; say so when reporting. Timestamps (order) are kept.
    :func:`randomise_interactions` applies it to interaction rows and :func:`noise_training` to
    the training part of a split (optionally only some users' rows): the membership-inference
    audit trains on noised histories and reports the AUC drop and the accuracy cost.

History minimisation in prompts
    Send less: :func:`drop_items` removes sensitive items from query histories;
    :func:`generalise_item_text` replaces the text of sensitive items by a generalisation (their
    group values, e.g. genres), for LLM recommenders that read item text
    (``model.with_item_text``). :func:`minimise_history` applies either to a model and a batch
    of queries. Which items are sensitive is the caller's choice (raw ids) or, with
    :func:`revealing_items`, the items whose consumption most reveals a user attribute in the
    training data (chi-square of item consumption against the attribute).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import Dataset, Interactions, QueryBatch, Ragged, Split
from trustrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = [
    "drop_items",
    "generalise_item_text",
    "keep_probability",
    "minimise_history",
    "noise_training",
    "randomise_interactions",
    "randomised_response",
    "revealing_items",
    "sensitive_mask",
]


def keep_probability(epsilon: float) -> float:
    """``e^eps / (e^eps + 1)``: the probability that randomised response keeps an item.

    Parameters
    ----------
    epsilon : float
        The stated strength, at least 0 (``inf`` keeps every item).

    Returns
    -------
    float
        The keep probability, in [0.5, 1].

    Raises
    ------
    ConfigError
        When ``epsilon`` is not a number, NaN or negative.
    """
    if not isinstance(epsilon, (int, float)) or math.isnan(epsilon) or epsilon < 0:
        raise ConfigError(f"randomised response: epsilon must be a number >= 0 (inf keeps every item), got {epsilon!r}")
    if math.isinf(epsilon):
        return 1.0
    return 1.0 / (1.0 + math.exp(-epsilon))


def _replace(
    values: np.ndarray, epsilon: float, n_items: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if n_items < 2:
        raise ConfigError(f"randomised response needs at least 2 items in the catalog, got {n_items}")
    values = np.asarray(values, np.int64)
    if len(values) and (values.min() < 0 or values.max() >= n_items):
        raise DataError(
            f"randomised response: item indices must be in [0, {n_items}); got {int(values.min())}..{int(values.max())}"
        )
    p = keep_probability(epsilon)
    replaced = rng.random(len(values)) >= p
    # a uniform draw among the other n - 1 items: shift draws at or above the original by one
    draw = rng.integers(0, n_items - 1, int(replaced.sum()))
    draw = draw + (draw >= values[replaced])
    out = values.copy()
    out[replaced] = draw
    return out, replaced


def randomised_response(histories: Ragged, epsilon: float, n_items: int, *, seed: int = 0) -> Ragged:
    """``histories`` with each item kept with probability ``e^eps / (e^eps + 1)``, else replaced
    by a uniformly drawn other item (module docstring); row lengths and positions unchanged.

    Parameters
    ----------
    histories : Ragged
        The histories (item indices in ``[0, n_items)``).
    epsilon : float
        The strength of the keep/replace coin (at least 0).
    n_items : int
        The catalog size (at least 2).
    seed : int
        Seed of the random draws.

    Returns
    -------
    Ragged
        The noised histories.

    Raises
    ------
    ConfigError
        When ``epsilon`` is invalid or the catalog has fewer than 2 items.
    DataError
        When an item index is outside ``[0, n_items)``.
    """
    values, _ = _replace(histories.values, epsilon, n_items, np.random.default_rng(seed))
    return Ragged(histories.indptr, values)


def randomise_interactions(
    interactions: Interactions, epsilon: float, n_items: int, *, seed: int = 0, rows: npt.ArrayLike | None = None
) -> Interactions:
    """Randomised response on the item of each interaction (``rows``: a boolean mask or indices of
    the rows to noise; all when None). Users, timestamps and ratings are kept.

    Parameters
    ----------
    interactions : Interactions
        The interaction rows.
    epsilon : float
        The strength of the keep/replace coin (at least 0).
    n_items : int
        The catalog size (at least 2).
    seed : int
        Seed of the random draws.
    rows : array_like or None
        A boolean mask or the indices of the rows to noise; None: all.

    Returns
    -------
    Interactions
        The interactions with the chosen rows' items noised.

    Raises
    ------
    ConfigError
        When ``epsilon`` is invalid or the catalog has fewer than 2 items.
    DataError
        When an item index is outside ``[0, n_items)``.
    """
    rng = np.random.default_rng(seed)
    chosen = np.ones(len(interactions), bool) if rows is None else np.zeros(len(interactions), bool)
    if rows is not None:
        chosen[np.asarray(rows)] = True
    items = np.array(interactions.item, copy=True)
    items[chosen], _ = _replace(items[chosen], epsilon, n_items, rng)
    return Interactions(interactions.user, items, interactions.timestamp, interactions.rating)


def noise_training(split: Split, epsilon: float, *, seed: int = 0, users: npt.ArrayLike | None = None) -> Split:
    """``split`` whose training interactions (of ``users`` only, user indices, when given) went
    through randomised response; valid and test are unchanged.

    Parameters
    ----------
    split : Split
        The split whose training part is noised.
    epsilon : float
        The strength of the keep/replace coin (at least 0).
    seed : int
        Seed of the random draws.
    users : array_like or None
        User indices whose training rows are noised; None: every user's.

    Returns
    -------
    Split
        The split with noised training interactions (``randomised_response_epsilon`` in its
        parameters).

    Raises
    ------
    ConfigError
        When ``epsilon`` is invalid or the catalog has fewer than 2 items.
    """
    rows = None
    if users is not None:
        rows = np.isin(split.train.user, np.asarray(users, np.int64))
    train = randomise_interactions(split.train, epsilon, split.dataset.n_items, seed=seed, rows=rows)
    return split.with_train(
        train,
        params={"randomised_response_epsilon": float(epsilon)},
        note=(
            f"training items through randomised response, eps={epsilon:g} "
            f"(keep probability {keep_probability(epsilon):.3f})"
        ),
    )


# -- minimisation ---------------------------------------------------------------------------------
def sensitive_mask(dataset: Dataset, items: npt.ArrayLike, owner: str = "sensitive items") -> np.ndarray:
    """Boolean mask over ``dataset``'s items from raw item ids (unknown ids raise, naming them),
    item indices (an int array) or a boolean mask.

    Parameters
    ----------
    dataset : Dataset
        The dataset whose items are meant.
    items : array_like
        Raw item ids, item indices (integers) or a boolean mask over the items.
    owner : str
        Who asks, for error messages.

    Returns
    -------
    numpy.ndarray
        Boolean per item index: sensitive.

    Raises
    ------
    DataError
        When a raw id is unknown, an index is outside the catalog or a mask has the wrong
        length.
    """
    n_items = dataset.n_items
    arr = np.asarray(items)
    if arr.dtype == bool:
        if arr.shape != (n_items,):
            raise DataError(f"{owner}: a boolean mask needs {n_items} entries, got {arr.shape}")
        return arr.copy()
    if arr.dtype.kind in "iu":
        bad = arr[(arr < 0) | (arr >= n_items)]
        if len(bad):
            raise DataError(f"{owner}: item indices {bad[:10].tolist()} are outside [0, {n_items})")
        mask = np.zeros(n_items, bool)
        mask[arr] = True
        return mask
    raw = [str(x) for x in np.atleast_1d(arr)]
    idx = dataset.item_index(raw, missing="ignore")
    unknown = [r for r, i in zip(raw, idx) if i < 0]
    if unknown:
        raise DataError(
            f"{owner}: {len(unknown)} item ids are not in dataset '{dataset.name}': "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}; give raw item ids"
        )
    mask = np.zeros(n_items, bool)
    mask[idx] = True
    return mask


def drop_items(histories: Ragged, sensitive: np.ndarray) -> Ragged:
    """``histories`` without the items marked in the boolean mask ``sensitive`` (order kept).

    Parameters
    ----------
    histories : Ragged
        The histories (item indices).
    sensitive : numpy.ndarray
        Boolean per item index: the items to drop.

    Returns
    -------
    Ragged
        The histories without the sensitive items.
    """
    sensitive = np.asarray(sensitive, bool)
    keep = ~sensitive[histories.values]
    lengths = np.bincount(histories.row_ids()[keep], minlength=len(histories))
    return Ragged(np.concatenate([[0], np.cumsum(lengths)]), histories.values[keep])


def generalise_item_text(
    items: pd.DataFrame,
    sensitive: np.ndarray,
    *,
    column: str | None = None,
    template: str = "an item in {groups}",
    fallback: str = "an item withheld for privacy",
    text_columns: Sequence[str] = ("title",),
) -> pd.DataFrame:
    """A copy of the ``items`` table where sensitive items' ``text_columns`` read as their
    generalisation: ``template`` filled with their values in the group ``column`` (``None``:
    guessed, e.g. genre/class; ``"{groups}"`` joins the values with ``", "``), or ``fallback``
    when the item has no group or there is no such column. Other items are unchanged.

    Parameters
    ----------
    items : pandas.DataFrame
        The items table (row ``i`` = item index ``i``).
    sensitive : numpy.ndarray
        Boolean per item: the items whose text is generalised.
    column : str or None
        The group column; None: guessed.
    template : str
        The generalised text; ``{groups}`` is replaced by the item's group values.
    fallback : str
        The text of a sensitive item without a group value.
    text_columns : sequence of str
        The columns rewritten (those not in the table are skipped).

    Returns
    -------
    pandas.DataFrame
        The rewritten copy of ``items``.

    Raises
    ------
    DataError
        When the mask's length is not the number of items or ``column`` is not a column.
    """
    from trustrec.data import guess_item_group_column, split_group_values

    sensitive = np.asarray(sensitive, bool)
    if sensitive.shape != (len(items),):
        raise DataError(f"generalise_item_text: the mask has {sensitive.shape} entries for {len(items)} items")
    column = column or guess_item_group_column(items)
    if column is not None and column not in items.columns:
        raise DataError(f"generalise_item_text: item column {column!r} not found; columns: {list(items.columns)}")
    out = items.copy()
    rows = np.flatnonzero(sensitive)
    if column is not None:
        groups, _ = split_group_values(items[column].iloc[rows], None)
    else:
        groups = [[] for _ in rows]
    texts = [template.format(groups=", ".join(g)) if g else fallback for g in groups]
    for col in text_columns:
        if col in out.columns:
            out[col] = out[col].astype(object)
            out.iloc[rows, out.columns.get_loc(col)] = texts
    return out


def minimise_history(
    model: Recommender,
    queries: QueryBatch,
    sensitive: np.ndarray,
    mode: Literal["drop", "generalise"] = "drop",
    *,
    items: pd.DataFrame | None = None,
    column: str | None = None,
) -> tuple[Recommender, QueryBatch]:
    """``(model, queries)`` to ask instead: with ``mode="drop"`` the queries' histories lose the
    sensitive items (the model is unchanged); with ``"generalise"`` the model (an LLM recommender
    with ``with_item_text``) reads the generalised text of the sensitive items from ``items``
    (the catalog table; :func:`generalise_item_text`), wherever it shows them, and the queries
    are unchanged.

    Parameters
    ----------
    model : Recommender
        The fitted recommender asked.
    queries : QueryBatch
        The queries.
    sensitive : numpy.ndarray
        Boolean per item index: the sensitive items.
    mode : {"drop", "generalise"}
        Drop the items from the histories, or show them by their generalised text.
    items : pandas.DataFrame or None
        The items table (needed by ``"generalise"``).
    column : str or None
        The group column of the generalisation (None: guessed).

    Returns
    -------
    tuple of (Recommender, QueryBatch)
        The model and the queries to ask instead.

    Raises
    ------
    ConfigError
        When ``mode`` is unknown, or ``"generalise"`` is asked of a model that does not read
        item text or without ``items``.
    """
    if mode == "drop":
        return model, queries.with_histories(drop_items(queries.histories, sensitive))
    if mode == "generalise":
        if not hasattr(model, "with_item_text"):
            raise ConfigError(
                f"minimise_history: mode 'generalise' rewrites item text and needs a recommender that "
                f"reads it (with_item_text: llm_ranker, llm_generative, text_knn); "
                f"{type(model).__name__} reads item ids, use mode='drop'"
            )
        if items is None:
            raise ConfigError("minimise_history: mode 'generalise' needs the items table (dataset.items)")
        return model.with_item_text(generalise_item_text(items, sensitive, column=column)), queries
    raise ConfigError(f"minimise_history: mode must be 'drop' or 'generalise', got {mode!r}")


def revealing_items(train: Interactions, labels: npt.ArrayLike, n_items: int, n: int) -> np.ndarray:
    """The ``n`` items whose consumption most reveals the user attribute ``labels`` (one label
    per user index, None/NaN = missing; users with a missing label are left out), by the
    chi-square statistic of the binary user x item matrix against the labels (scikit-learn's
    ``chi2``), highest first; items nobody with a label consumed are never chosen.

    Parameters
    ----------
    train : Interactions
        The training interactions.
    labels : array_like
        One attribute value per user index (None/NaN: missing).
    n_items : int
        The catalog size.
    n : int
        How many items to return (at most).

    Returns
    -------
    numpy.ndarray
        Up to ``n`` item indices, most revealing first (empty when fewer than two labels
        are present).
    """
    import scipy.sparse as sp
    from sklearn.feature_selection import chi2

    by_user = pd.Series(np.asarray(labels, dtype=object))
    known = by_user.notna().to_numpy()
    users = np.flatnonzero(known)
    if len(users) == 0 or by_user[known].nunique() < 2:
        return np.empty(0, np.int64)
    rows = np.isin(train.user, users)
    remap = np.full(len(by_user), -1)
    remap[users] = np.arange(len(users))
    x = sp.csr_matrix(
        (np.ones(int(rows.sum())), (remap[train.user[rows]], train.item[rows])), shape=(len(users), n_items)
    )
    x.data[:] = 1.0
    used = np.asarray(x.sum(0)).ravel() > 0
    stat = np.zeros(n_items)
    with np.errstate(divide="ignore", invalid="ignore"):
        s, _ = chi2(x[:, used], by_user[known].astype(str).to_numpy())
    stat[used] = np.nan_to_num(s, nan=0.0)
    order = np.lexsort((np.arange(n_items), -stat))
    order = order[used[order]]
    return order[:n].astype(np.int64)
