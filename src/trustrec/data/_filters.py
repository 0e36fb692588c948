"""Preprocessing that returns a new Dataset and records what it removed in ``provenance``."""

from __future__ import annotations

import numpy as np

from trustrec._registry import NamedRegistry, check_callable
from trustrec.data._dataset import Dataset, FilterStep
from trustrec.errors import ConfigError, DataError

__all__ = ["FILTERS", "drop_duplicates", "k_core", "sample_users", "to_implicit"]


#: Dataset filters by name (kind ``filters`` of :mod:`trustrec.registry`): ``fn(dataset, **params)
#: -> Dataset``. The built-ins are the functions below; third-party ones come from the entry-point
#: group ``trustrec.filters``.
FILTERS: NamedRegistry = NamedRegistry("filter", None, ConfigError, "", group="trustrec.filters", check=check_callable)


@FILTERS.register(name="to_implicit")
def to_implicit(dataset: Dataset, threshold: float) -> Dataset:
    """Keep interactions rated at least ``threshold``; ratings are kept for reference.

    Parameters
    ----------
    dataset : Dataset
        A dataset with ratings.
    threshold : float
        The lowest rating kept.

    Returns
    -------
    Dataset
        The dataset with only the kept interactions and a ``to_implicit`` step in its
        provenance.

    Raises
    ------
    DataError
        If ``dataset`` has no ratings.
    """
    inter = dataset.interactions
    if inter.rating is None:
        raise DataError(f"Dataset '{dataset.name}' has no ratings; it is already implicit")
    keep = inter.rating >= threshold
    step = FilterStep("to_implicit", {"threshold": threshold}, int((~keep).sum()))
    return dataset.with_interactions(inter.select(keep), step)


@FILTERS.register(name="drop_duplicates")
def drop_duplicates(dataset: Dataset, keep: str = "last") -> Dataset:
    """One interaction per (user, item): the ``last`` or ``first`` in time.

    Parameters
    ----------
    dataset : Dataset
        The dataset to deduplicate.
    keep : {"last", "first"}, default "last"
        Which interaction of a repeated (user, item) pair to keep, in chronological order.

    Returns
    -------
    Dataset
        The dataset with one interaction per (user, item), in the original order, and a
        ``drop_duplicates`` step in its provenance.

    Raises
    ------
    ConfigError
        If ``keep`` is neither ``"first"`` nor ``"last"``.
    """
    if keep not in ("first", "last"):
        raise ConfigError(f"drop_duplicates: keep must be 'first' or 'last', got {keep!r}")
    inter = dataset.interactions
    order = inter.chronological_order()
    if keep == "last":
        order = order[::-1]
    key = inter.user[order] * dataset.n_items + inter.item[order]
    _, first = np.unique(key, return_index=True)
    rows = np.sort(order[first])
    step = FilterStep("drop_duplicates", {"keep": keep}, len(inter) - len(rows))
    return dataset.with_interactions(inter.select(rows), step)


@FILTERS.register(name="k_core")
def k_core(dataset: Dataset, user_k: int = 5, item_k: int | None = None, max_iter: int = 1000) -> Dataset:
    """Keep the k-core: drop sparse users and items until every one left has enough interactions.

    Iteratively drops users with < ``user_k`` and items with < ``item_k`` interactions until
    every remaining user and item has enough (the k-core fixed point); renumbers densely.

    Parameters
    ----------
    dataset : Dataset
        The dataset to filter.
    user_k : int, default 5
        The fewest interactions a kept user has.
    item_k : int, optional
        The fewest interactions a kept item has; ``None`` uses ``user_k``.
    max_iter : int, default 1000
        The most passes before giving up.

    Returns
    -------
    Dataset
        The k-core with users and items renumbered densely and a ``k_core`` step (interactions,
        users and items removed, passes taken) in its provenance.

    Raises
    ------
    ConfigError
        If ``user_k`` or ``item_k`` is below 1.
    DataError
        If the fixed point is not reached in ``max_iter`` passes, or no interaction is left.
    """
    item_k = user_k if item_k is None else item_k
    if user_k < 1 or item_k < 1:
        raise ConfigError(f"k_core: user_k and item_k must be >= 1, got {user_k}, {item_k}")
    inter = dataset.interactions
    alive = np.ones(len(inter), dtype=bool)
    keep_users = np.ones(dataset.n_users, dtype=bool)
    keep_items = np.ones(dataset.n_items, dtype=bool)
    for iteration in range(1, max_iter + 1):  # noqa: B007 - read after the loop (the FilterStep's count)
        user_counts = np.bincount(inter.user[alive], minlength=dataset.n_users)
        item_counts = np.bincount(inter.item[alive], minlength=dataset.n_items)
        keep_users = user_counts >= user_k
        keep_items = item_counts >= item_k
        new_alive = alive & keep_users[inter.user] & keep_items[inter.item]
        if new_alive.sum() == alive.sum():
            break
        alive = new_alive
    else:
        raise DataError(f"k_core did not converge in {max_iter} iterations")
    step = FilterStep(
        "k_core",
        {"user_k": user_k, "item_k": item_k},
        int((~alive).sum()),
        int((~keep_users).sum()),
        int((~keep_items).sum()),
        iteration,
    )
    if not alive.any():
        raise DataError(
            f"k_core(user_k={user_k}, item_k={item_k}) removed every interaction of '{dataset.name}'; lower k"
        )
    return dataset.compact(keep_users, keep_items, inter.select(alive), step)


@FILTERS.register(name="sample_users")
def sample_users(dataset: Dataset, n_users: int, *, seed: int = 0) -> Dataset:
    """A seeded uniform sample of ``n_users`` users with all their interactions.

    For example to audit an LLM recommender on a stated user sample; the catalog is kept whole,
    users are renumbered.

    Parameters
    ----------
    dataset : Dataset
        The dataset to sample from.
    n_users : int
        How many users to keep (drawn without replacement).
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    Dataset
        The sampled users' interactions with every item, and a ``sample_users`` step in its
        provenance.

    Raises
    ------
    ConfigError
        If ``n_users`` is below 1 or not below the dataset's number of users.
    """
    if n_users < 1:
        raise ConfigError(f"sample_users: n_users must be >= 1, got {n_users}")
    if n_users >= dataset.n_users:
        raise ConfigError(
            f"sample_users: n_users={n_users} is not below the {dataset.n_users} users of "
            f"'{dataset.name}'; drop the filter to keep every user"
        )
    keep_users = np.zeros(dataset.n_users, dtype=bool)
    keep_users[np.random.default_rng(seed).choice(dataset.n_users, n_users, replace=False)] = True
    inter = dataset.interactions
    alive = keep_users[inter.user]
    step = FilterStep(
        "sample_users", {"n_users": n_users, "seed": seed}, int((~alive).sum()), int((~keep_users).sum()), 0
    )
    return dataset.compact(keep_users, np.ones(dataset.n_items, dtype=bool), inter.select(alive), step)
