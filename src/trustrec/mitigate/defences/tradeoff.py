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

from trustrec.mitigate._rerank import (
    CalibratedReranker,
    ExposureReranker,
    TradeoffPoint,
    summarise_tradeoff,
    tradeoff_curve,
    tradeoff_points,
)

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
    ``item_group_column``) used by both the wrapper and the trade-off curve."""

    def __init__(self, method: str, **params):
        self.method, self.params = method, params

    def wrap(self, model, train, *, strength: float):
        """The fitted ``model`` re-ranked at ``strength`` (λ); ``train``: what it was fitted on."""
        return _RERANKERS[self.method].from_fitted(model, train, strength=strength, **self.params)

    def tradeoff(
        self,
        model,
        eval_set,
        strengths: Sequence[float],
        *,
        train,
        k: int,
        batch_size=None,
        n_candidates: int = 100,
        n_boot: int = 1000,
        seed: int = 0,
    ):
        """``(points, table)``: :func:`tradeoff_points` at each strength and its
        :func:`summarise_tradeoff` table."""
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
    model,
    eval_set,
    strengths: Sequence[float],
    *,
    method: str,
    train,
    k: int,
    batch_size=None,
    n_candidates: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
    **params,
):
    """One trade-off comparison: the per-strength points of ``method``'s re-ranking of ``model``
    and their summary table (mean + bootstrap CI per strength)."""
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
