"""Trade-off comparisons of mitigations: accuracy vs fairness over a re-ranker's strength.

The curves themselves (:func:`tradeoff_points`, :func:`summarise_tradeoff`,
:func:`tradeoff_curve`, :class:`TradeoffPoint`) are public here; :class:`RerankerArm` is what a
``reranker`` arm builds (see :mod:`trustrec._arms`): ``wrap`` puts the re-ranker over a fitted
model (the feedback-loop audit's mitigated arm) and ``tradeoff`` computes one curve, points and
summary table (the ``fairness_mitigations`` audit). Audits reach these through the arm registry,
never by import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trustrec.data import Dataset, EvalSet, QueryBatch, Ragged, Split
from trustrec.errors import ConfigError
from trustrec.eval import group_distribution, miscalibration
from trustrec.mitigate._rerank import (
    BLOCK_CELLS,
    CalibratedReranker,
    ExposureReranker,
    Reranker,
    _assemble,
    _check_strength,
    _exposure_membership,
    _genre_membership,
    calibrated_rerank,
    xquad_rerank,
)
from trustrec.mitigate._wrap import train_dataset
from trustrec.models import Recommender, TopK

__all__ = [
    "RerankerArm",
    "TradeoffPoint",
    "compare_tradeoff",
    "summarise_tradeoff",
    "tradeoff_curve",
    "tradeoff_points",
]

_RERANKERS = {"calibrated": CalibratedReranker, "exposure": ExposureReranker}


_METHODS = {"calibrated": CalibratedReranker, "exposure": ExposureReranker}


@dataclass(frozen=True, eq=False)
class TradeoffPoint:
    """One strength of a sweep: per-user values (``user``, ``ndcg@k``, ``recall@k`` and the
    targeted fairness figure: ``miscalibration`` or ``aplt``) and list-level ``aggregates``
    (``coverage``, ``exposure_gini``); ``groups``: the item groups used (the genre column, or
    ``"popularity"``).

    Parameters
    ----------
    strength : float
        The strength λ of this point.
    per_user : pandas.DataFrame
        One row per evaluated user: ``user``, ``ndcg@k``, ``recall@k`` and ``miscalibration``
        (calibrated) or ``aplt`` (exposure).
    aggregates : dict of str to float
        List-level figures: ``coverage`` and ``exposure_gini``.
    groups : str
        The item groups used: the genre (or provider) column, or ``"popularity"``.
    """

    strength: float
    per_user: pd.DataFrame
    aggregates: dict[str, float]
    groups: str = ""


def _unique_target_counts(targets: Ragged) -> np.ndarray:
    rows, values = targets.row_ids(), np.asarray(targets.values, np.int64)
    if len(rows) == 0:
        return np.zeros(len(targets), np.int64)
    pairs = np.unique(np.stack([rows, values], 1), axis=0)
    return np.bincount(pairs[:, 0], minlength=len(targets))


def _base_candidates(model: Recommender, queries: QueryBatch, width: int, batch_size: int | None) -> TopK:
    """The base's top-``width`` lists, batched over users so one score matrix stays bounded."""
    batch_size = batch_size or int(max(1, min(4096, BLOCK_CELLS // max(model.n_items_, 1))))
    parts = [model.recommend(queries[s : s + batch_size], width) for s in range(0, len(queries), batch_size)]
    return TopK.concat(parts) if parts else TopK(np.empty((0, width)), np.empty((0, width)))


def tradeoff_points(
    model: Recommender,
    eval_set: EvalSet,
    strengths: Sequence[float],
    *,
    method: str = "calibrated",
    train: Dataset | Split,
    k: int = 10,
    batch_size: int | None = None,
    **params: Any,
) -> list[TradeoffPoint]:
    """Per-user accuracy and fairness of ``method``'s re-ranking of the fitted ``model`` on
    ``eval_set`` at each strength. The base ranks each user's top ``n_candidates`` once; every
    strength re-ranks those. ``train``: the data ``model`` was fitted on (a Split: its training
    part), which gives the item groups and the popularity; ``params``: the re-ranker's config
    fields (``n_candidates``, ``item_group_column``, ``alpha`` / ``groups``, ``head_share``,
    ``user_weights``, ``variant``).

    Parameters
    ----------
    model : Recommender
        The fitted base recommender.
    eval_set : EvalSet
        The queries (``queries``) and held-out items (``targets``) to evaluate on.
    strengths : sequence of float
        The strengths λ to evaluate, each in [0, 1] (at least one).
    method : {"calibrated", "exposure"}
        The re-ranker: :class:`CalibratedReranker` (fairness figure ``miscalibration``) or
        :class:`ExposureReranker` (``aplt``).
    train : Dataset or Split
        The data ``model`` was fitted on (a Split: its training part).
    k : int
        Length of the evaluated lists (at least 1).
    batch_size : int or None
        Users per call of the base's ``recommend``; None: sized so one score matrix stays
        bounded.
    **params
        The re-ranker's config fields, except ``strength`` and ``base``.

    Returns
    -------
    list of TradeoffPoint
        One point per strength, in the given order.

    Raises
    ------
    ConfigError
        When ``method`` is unknown, ``k < 1``, a strength is outside [0, 1] or none is given,
        ``params`` names ``strength`` or ``base`` or is not a valid config of the method, or
        the model's catalog is not that of ``train``.
    DataError
        When the item group column is missing from the dataset (or none can be guessed).
    """
    from trustrec._config import validate_config
    from trustrec.eval import (
        aplt,
        catalog_coverage,
        exposure_gini,
        hits_matrix,
        long_tail_mask,
        ndcg,
        recall,
    )

    if method not in _METHODS:
        raise ConfigError(f"tradeoff_curve: method must be one of {sorted(_METHODS)}; got {method!r}")
    if k < 1:
        raise ConfigError(f"tradeoff_curve: k must be >= 1; got {k}")
    strengths = [_check_strength(s, "tradeoff_curve") for s in strengths]
    if not strengths:
        raise ConfigError("tradeoff_curve: give at least one strength")
    for name in ("strength", "base"):
        if name in params:
            raise ConfigError(
                f"tradeoff_curve: {name!r} is not a parameter here (the strengths are swept and "
                "the base is the fitted model given)"
            )
    # the method's own config: CalibratedRerankerConfig or ExposureRerankerConfig
    config: Any = validate_config(_METHODS[method].config_class, params, f"tradeoff_curve({method})")
    model._check_fitted()
    train_ds = train_dataset(train)
    n_items = model.n_items_
    if train_ds.n_items != n_items:
        raise ConfigError(
            f"tradeoff_curve: the model knows {n_items} items but the dataset '{train_ds.name}' has {train_ds.n_items}"
        )
    if method == "calibrated":
        membership, _, source = _genre_membership(train_ds, config.item_group_column, "tradeoff_curve")

        def select(histories, items, scores, n, strength):
            return calibrated_rerank(histories, items, scores, membership, n, strength=strength, alpha=config.alpha)
    else:
        membership, _, source = _exposure_membership(train_ds, config.groups, config.head_share, "tradeoff_curve")

        def select(histories, items, scores, n, strength):
            return xquad_rerank(
                histories,
                items,
                scores,
                membership,
                n,
                strength=strength,
                user_weights=config.user_weights,
                variant=config.variant,
            )

    queries, _ = eval_set.queries.restrict(model.n_users_, n_items)
    retrieved = _base_candidates(model, queries, max(k, config.n_candidates), batch_size)
    n_rel = _unique_target_counts(eval_set.targets)
    tail = long_tail_mask(np.bincount(train_ds.interactions.item, minlength=n_items))
    profile = group_distribution(queries.histories, membership) if method == "calibrated" else None
    points = []
    for strength in strengths:
        top = _assemble(queries.histories, retrieved, k, config.n_candidates, strength, select).items
        hits = hits_matrix(top, eval_set.targets, n_items)
        frame = pd.DataFrame(
            {"user": queries.users, f"ndcg@{k}": ndcg(hits, n_rel), f"recall@{k}": recall(hits, n_rel)}
        )
        if method == "calibrated":
            assert profile is not None  # set above when method == "calibrated"
            frame["miscalibration"] = miscalibration(profile, group_distribution(top, membership), config.alpha)
        else:
            frame["aplt"] = aplt(top, tail)
        aggregates = {"coverage": catalog_coverage(top, n_items), "exposure_gini": exposure_gini(top, n_items)}
        points.append(TradeoffPoint(strength, frame, aggregates, source))
    return points


def summarise_tradeoff(
    points: Sequence[TradeoffPoint], *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per strength: each per-user value's mean with a bootstrap CI over users
    (``<name>``, ``<name>_ci_low``, ``<name>_ci_high``; NaN values, e.g. the miscalibration of a
    user with no genre in the history, are left out), then the aggregates and ``n_users``.
    The same seed is used at every strength, so the CIs resample the same users.

    Parameters
    ----------
    points : sequence of TradeoffPoint
        The points of a sweep (:func:`tradeoff_points`).
    n_boot : int
        Bootstrap resamples per CI.
    ci : float
        Coverage of the confidence intervals (0.95: 95%).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per point: ``strength``, each per-user value with its CI, the aggregates and
        ``n_users``.
    """
    from trustrec.eval import bootstrap_ci

    rows = []
    for point in points:
        row: dict[str, Any] = {"strength": point.strength}
        for col in point.per_user.columns:
            if col == "user":
                continue
            values = point.per_user[col].to_numpy(np.float64)
            lo, hi = bootstrap_ci(values, n_boot=n_boot, ci=ci, seed=seed)
            row[col] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            row[f"{col}_ci_low"], row[f"{col}_ci_high"] = lo, hi
        row.update(point.aggregates)
        row["n_users"] = len(point.per_user)
        rows.append(row)
    return pd.DataFrame(rows)


def tradeoff_curve(
    model: Recommender,
    eval_set: EvalSet,
    strengths: Sequence[float],
    *,
    method: str = "calibrated",
    train: Dataset | Split,
    k: int = 10,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Accuracy vs fairness of re-ranking the fitted ``model`` at each strength λ: one row per
    strength with NDCG@k and Recall@k (mean + bootstrap CI over users), the fairness figure the
    method targets (``miscalibration``: mean Steck KL, for ``"calibrated"``; ``aplt``: share of
    long-tail items, for ``"exposure"``; both with CIs), ``coverage``, ``exposure_gini`` (Gini of
    item exposure) and ``n_users``. See :func:`tradeoff_points` for the arguments.

    Parameters
    ----------
    model : Recommender
        The fitted base recommender.
    eval_set : EvalSet
        The queries and held-out items to evaluate on.
    strengths : sequence of float
        The strengths λ to evaluate, each in [0, 1].
    method : {"calibrated", "exposure"}
        The re-ranker (see :func:`tradeoff_points`).
    train : Dataset or Split
        The data ``model`` was fitted on (a Split: its training part).
    k : int
        Length of the evaluated lists (at least 1).
    n_boot : int
        Bootstrap resamples per CI.
    ci : float
        Coverage of the confidence intervals.
    seed : int
        Seed of the bootstrap.
    batch_size : int or None
        Users per call of the base's ``recommend``; None: chosen automatically.
    **params
        The re-ranker's config fields, except ``strength`` and ``base``.

    Returns
    -------
    pandas.DataFrame
        One row per strength (:func:`summarise_tradeoff`).

    Raises
    ------
    ConfigError
        As :func:`tradeoff_points`.
    DataError
        As :func:`tradeoff_points`.
    """
    points = tradeoff_points(
        model, eval_set, strengths, method=method, train=train, k=k, batch_size=batch_size, **params
    )
    return summarise_tradeoff(points, n_boot=n_boot, ci=ci, seed=seed)


class RerankerArm:
    """A built-in re-ranker as an arm: ``method`` (``"calibrated"`` or ``"exposure"``) and the
    re-ranker's config fields ``params`` (for example ``groups`` / ``variant``, or
    ``item_group_column``) used by both the wrapper and the trade-off curve.

    Parameters
    ----------
    method : {"calibrated", "exposure"}
        The re-ranker: :class:`~trustrec.mitigate.CalibratedReranker` or
        :class:`~trustrec.mitigate.ExposureReranker`.
    **params
        The re-ranker's config fields (other than ``base`` and ``strength``).
    """

    def __init__(self, method: str, **params: Any):
        self.method, self.params = method, params

    def wrap(self, model: Recommender, train: Dataset | Split, *, strength: float) -> Reranker:
        """The fitted ``model`` re-ranked at ``strength`` (λ); ``train``: what it was fitted on.

        Parameters
        ----------
        model : Recommender
            The fitted base recommender.
        train : Dataset or Split
            The data ``model`` was fitted on.
        strength : float
            λ in [0, 1].

        Returns
        -------
        Reranker
            The re-ranker over ``model`` (the model itself is not refitted).
        """
        return _RERANKERS[self.method].from_fitted(model, train, strength=strength, **self.params)

    def tradeoff(
        self,
        model: Recommender,
        eval_set: EvalSet,
        strengths: Sequence[float],
        *,
        train: Dataset | Split,
        k: int,
        batch_size: int | None = None,
        n_candidates: int = 100,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> tuple[list[TradeoffPoint], pd.DataFrame]:
        """``(points, table)``: :func:`tradeoff_points` at each strength and its
        :func:`summarise_tradeoff` table.

        Parameters
        ----------
        model : Recommender
            The fitted base recommender.
        eval_set : EvalSet
            The queries and held-out items to evaluate on.
        strengths : sequence of float
            The strengths λ, each in [0, 1].
        train : Dataset or Split
            The data ``model`` was fitted on.
        k : int
            Length of the evaluated lists.
        batch_size : int or None
            Users per call of the base's ``recommend``; None: chosen automatically.
        n_candidates : int
            How many of the base's top items are re-ranked.
        n_boot : int
            Bootstrap resamples per CI.
        seed : int
            Seed of the bootstrap.

        Returns
        -------
        tuple of (list of TradeoffPoint, pandas.DataFrame)
            As :func:`compare_tradeoff`.
        """
        return compare_tradeoff(
            model,
            eval_set,
            strengths,
            method=self.method,
            train=train,
            k=k,
            batch_size=batch_size,
            n_candidates=n_candidates,
            n_boot=n_boot,
            seed=seed,
            **self.params,
        )


def compare_tradeoff(
    model: Recommender,
    eval_set: EvalSet,
    strengths: Sequence[float],
    *,
    method: str,
    train: Dataset | Split,
    k: int,
    batch_size: int | None = None,
    n_candidates: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
    **params: Any,
) -> tuple[list[TradeoffPoint], pd.DataFrame]:
    """One trade-off comparison: the per-strength points of ``method``'s re-ranking of ``model``
    and their summary table (mean + bootstrap CI per strength).

    Parameters
    ----------
    model : Recommender
        The fitted base recommender.
    eval_set : EvalSet
        The queries and held-out items to evaluate on.
    strengths : sequence of float
        The strengths λ, each in [0, 1].
    method : {"calibrated", "exposure"}
        The re-ranker (see :func:`tradeoff_points`).
    train : Dataset or Split
        The data ``model`` was fitted on (a Split: its training part).
    k : int
        Length of the evaluated lists (at least 1).
    batch_size : int or None
        Users per call of the base's ``recommend``; None: chosen automatically.
    n_candidates : int
        How many of the base's top items are re-ranked.
    n_boot : int
        Bootstrap resamples per CI (95% intervals).
    seed : int
        Seed of the bootstrap.
    **params
        The re-ranker's other config fields.

    Returns
    -------
    tuple of (list of TradeoffPoint, pandas.DataFrame)
        The points (:func:`tradeoff_points`) and their table (:func:`summarise_tradeoff`).

    Raises
    ------
    ConfigError
        As :func:`tradeoff_points`.
    DataError
        As :func:`tradeoff_points`.
    """
    points = tradeoff_points(
        model,
        eval_set,
        strengths,
        method=method,
        train=train,
        k=k,
        batch_size=batch_size,
        n_candidates=n_candidates,
        **params,
    )
    return points, summarise_tradeoff(points, n_boot=n_boot, seed=seed)
