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
from typing import TYPE_CHECKING, Any

from trustrec.mitigate._rerank import (
    CalibratedReranker,
    ExposureReranker,
    TradeoffPoint,
    summarise_tradeoff,
    tradeoff_curve,
    tradeoff_points,
)

if TYPE_CHECKING:
    import pandas as pd

    from trustrec.data import Dataset, EvalSet, Split
    from trustrec.mitigate._rerank import Reranker
    from trustrec.models import Recommender

__all__ = [
    "RerankerArm",
    "TradeoffPoint",
    "compare_tradeoff",
    "summarise_tradeoff",
    "tradeoff_curve",
    "tradeoff_points",
]

_RERANKERS = {"calibrated": CalibratedReranker, "exposure": ExposureReranker}


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
