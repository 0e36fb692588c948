"""System-initiated control
:class:`PlatformRules`: blocked items and a per-item exposure cap (no item in more than
``max_exposure_share`` of the lists of one ``recommend`` call, at least one list).
:func:`enforce_rules` applies them to a base's candidate lists: blocked items are dropped,
then lists are filled position by position (a loop over candidate columns, vectorised over
users); when more users propose an item than its remaining cap, the users who score it
highest (min-max normalised per user) get it, ties by user order; the others move on to their
next candidate. Lists may come out shorter than k when the caps leave nothing (counted, never
violated). :class:`RuleEnforcedRecommender` wraps any fitted model with a rule set. Caps
are over the users of one call: ask for the whole population at once to cap it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from trustrec.data import Dataset, QueryBatch, readonly
from trustrec.errors import ConfigError
from trustrec.mitigate._wrap import WrapperRecommender
from trustrec.mitigate.control._common import _compact, _WrapperConfig
from trustrec.models import TopK, register_model

__all__ = ["PlatformRules", "RuleEnforcedConfig", "RuleEnforcedRecommender", "enforce_rules"]


# -- platform rules ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlatformRules:
    """A platform's rule set: ``blocked`` item indices never shown, and ``max_exposure_share``:
    no item in more than that share of the lists of one ``recommend`` call (None: no cap).

    Parameters
    ----------
    blocked : numpy.ndarray
        Item indices never shown (stored sorted and unique).
    max_exposure_share : float or None
        The largest share of one call's lists an item may appear in, in (0, 1]; None: no cap.

    Raises
    ------
    ConfigError
        When ``max_exposure_share`` is outside (0, 1].
    """

    blocked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    max_exposure_share: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "blocked", readonly(np.unique(np.asarray(self.blocked, np.int64).ravel())))
        s = self.max_exposure_share
        if s is not None and not (0 < s <= 1):
            raise ConfigError(f"PlatformRules: max_exposure_share must be in (0, 1] or None; got {s}")

    @classmethod
    def from_ids(
        cls, dataset: Dataset, blocked_ids: Sequence[Any] = (), *, max_exposure_share: float | None = None
    ) -> tuple[PlatformRules, list[str]]:
        """Rules over raw item ids; also returns the ids not in the catalog (they cannot be shown,
        so they are reported and skipped).

        Parameters
        ----------
        dataset : Dataset
            The dataset whose item ids are given.
        blocked_ids : sequence
            Raw ids of the blocked items.
        max_exposure_share : float or None
            The exposure cap (None: none).

        Returns
        -------
        tuple of (PlatformRules, list of str)
            The rules and the blocked ids not in the catalog.
        """
        ids = [str(i) for i in blocked_ids]
        index = dataset.item_index(ids, missing="ignore") if ids else np.empty(0, np.int64)
        index = np.asarray(index)
        known = index >= 0
        return cls(index[known], max_exposure_share), [i for i, ok in zip(ids, known) if not ok]

    def cap(self, n_lists: int) -> int | None:
        """The most lists one item may appear in, for ``n_lists`` lists (at least 1).

        Parameters
        ----------
        n_lists : int
            The number of lists of the call.

        Returns
        -------
        int or None
            The cap; None when there is no exposure cap.
        """
        if self.max_exposure_share is None:
            return None
        return max(1, math.floor(self.max_exposure_share * n_lists + 1e-9))

    def violations(self, top: np.ndarray, n_items: int) -> dict[str, Any]:
        """What ``top`` (n_lists, k item indices, -1 = none) breaks: ``blocked_per_list`` (array),
        ``blocked_slots``, ``lists_with_blocked``, ``cap``, ``items_over_cap``,
        ``excess_slots`` (slots above the caps) and ``violating_slots`` (both) of ``slots``.

        Parameters
        ----------
        top : numpy.ndarray
            (n_lists, k) item indices, -1 = none.
        n_items : int
            The catalog size.

        Returns
        -------
        dict of str to object
            The counts above, plus ``lists`` (the number of lists).
        """
        top = np.asarray(top)
        valid = top >= 0
        blocked = np.zeros(n_items, bool)
        blocked[self.blocked[self.blocked < n_items]] = True
        per_list = (blocked[np.where(valid, top, 0)] & valid).sum(1)
        cap = self.cap(len(top))
        exposure = np.bincount(top[valid], minlength=n_items)
        exposure[blocked] = 0  # a blocked item's slots are counted once, as blocked
        excess = np.maximum(exposure - cap, 0) if cap is not None else np.zeros(n_items, np.int64)
        return {
            "blocked_per_list": per_list,
            "blocked_slots": int(per_list.sum()),
            "lists_with_blocked": int((per_list > 0).sum()),
            "cap": cap,
            "items_over_cap": int((excess > 0).sum()),
            "excess_slots": int(excess.sum()),
            "violating_slots": int(per_list.sum() + excess.sum()),
            "slots": int(valid.sum()),
            "lists": len(top),
        }


def enforce_rules(items: np.ndarray, scores: np.ndarray, rules: PlatformRules, k: int, n_items: int) -> TopK:
    """Top-``k`` lists from ranked candidate lists ``items``/``scores`` (n, C) under ``rules``
    (module docstring: blocked items dropped, caps filled greedily column by column, the
    highest min-max-normalised score first). Never returns a blocked item or exceeds a cap.

    Parameters
    ----------
    items : numpy.ndarray
        (n, C) ranked candidate item indices, -1 = none.
    scores : numpy.ndarray
        (n, C) their scores (non-finite = none).
    rules : PlatformRules
        The rules to enforce; the cap is over the ``n`` lists.
    k : int
        Length of the lists (at most ``n_items``).
    n_items : int
        The catalog size.

    Returns
    -------
    TopK
        The (n, k) lists, padded with -1 where the rules leave too few candidates.
    """
    from trustrec.mitigate._rerank import minmax_relevance

    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    n, width = items.shape
    k = int(max(0, min(k, n_items)))
    blocked = np.zeros(n_items, bool)
    blocked[rules.blocked[rules.blocked < n_items]] = True
    valid = (items >= 0) & ~blocked[np.where(items >= 0, items, 0)] & np.isfinite(scores)
    cap = rules.cap(n)
    if cap is None:
        return _compact(items, scores, valid, k)
    priority = minmax_relevance(np.where(valid, scores, 0.0), valid)
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf)
    filled = np.zeros(n, np.int64)
    left = np.full(n_items, cap, np.int64)
    for j in range(width):
        rows = np.flatnonzero(valid[:, j] & (filled < k))
        if not len(rows):
            continue
        its = items[rows, j]
        order = np.lexsort((rows, -priority[rows, j], its))  # by item, best claim first
        rows, its = rows[order], its[order]
        first = np.r_[True, its[1:] != its[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(its)), 0))
        take = (np.arange(len(its)) - start) < left[its]
        rows, its = rows[take], its[take]
        out_items[rows, filled[rows]] = its
        out_scores[rows, filled[rows]] = scores[rows, j]
        filled[rows] += 1
        left -= np.bincount(its, minlength=n_items)
    return TopK(out_items, out_scores)


class RuleEnforcedConfig(_WrapperConfig):
    """Settings of :class:`RuleEnforcedRecommender`.

    Parameters
    ----------
    base : ModelSpec
        The recommender to wrap (registered name + params; built and fitted by ``fit``, or
        taken as is by ``from_fitted``); default ``item_knn``.
    n_candidates : int
        How deep into the base's ranking lists are filled from, at least (see
        :meth:`RuleEnforcedRecommender.depth`; positive, default 100).
    blocked_items : tuple of str
        Raw item ids never shown (ids not in the catalog are counted in ``unknown_blocked_``).
    max_exposure_share : float or None
        The exposure cap: no item in more than this share of one call's lists, in (0, 1];
        None: no cap.
    """

    blocked_items: tuple[str, ...] = ()
    max_exposure_share: float | None = Field(None, gt=0, le=1)


@register_model
class RuleEnforcedRecommender(WrapperRecommender):
    """Any recommender, with a platform rule set enforced on every call (module docstring).
    Blocked ids that are not in the catalog are counted in ``unknown_blocked_``.

    Parameters
    ----------
    config : RuleEnforcedConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`RuleEnforcedConfig` fields) as keyword arguments.
    """

    name = "rule_enforced"
    config: RuleEnforcedConfig
    config_class = RuleEnforcedConfig

    def _setup(self, train: Dataset) -> None:
        rules, unknown = PlatformRules.from_ids(train, self.config.blocked_items)
        self.blocked_ = np.asarray(rules.blocked, np.int64)
        self.unknown_blocked_ = unknown

    def depth(self, k: int) -> int:
        """How far down the base's ranking lists are filled from: ``n_candidates``, at least
        ``k / max_exposure_share`` (enough to fill identical lists under the cap), plus the
        blocked items.

        Parameters
        ----------
        k : int
            Length of the lists asked for.

        Returns
        -------
        int
            How many of the base's items are read per list.
        """
        share = self.config.max_exposure_share
        need = max(k, self.config.n_candidates, math.ceil(k / share - 1e-9) if share else 0)
        return need + len(self.blocked_)

    @property
    def rules(self) -> PlatformRules:
        self._check_fitted()
        return PlatformRules(self.blocked_, self.config.max_exposure_share)

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The base's lists, :meth:`depth` deep, under the rules (:func:`enforce_rules`); the cap
        is over the queries of this call.

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Length of the lists (at least 0).
        exclude_seen : bool
            Whether items in a query's history are left out.

        Returns
        -------
        TopK
            The lists; no blocked item, no item above the cap (padding -1).

        Raises
        ------
        ConfigError
            When ``k`` is negative.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        top = self.base_.recommend(queries, self.depth(k), exclude_seen=exclude_seen)
        return enforce_rules(top.items, top.scores, self.rules, k, self.n_items_)
