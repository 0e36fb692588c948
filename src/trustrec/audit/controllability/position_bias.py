"""``position_bias`` (dimension ``fairness``)
For rankers that read an ordered candidate list (a ``score_listed`` method, as
:class:`~trustrec.models.llm.LLMRanker` has, or the capability ``ordered_candidates``:
the model reads ``Query.candidates`` in the order given). Each user's held-out target is
listed with ``n_candidates - 1`` negatives (``retrieved``: the model's retriever, else the
most popular unseen items; ``random``: uniform unseen items; never history items) in a random
order, the target's position drawn uniformly (stratified: every position gets the same number
of users, up to one). **Single order**: the list as shown. **Averaged**: the list shown in
``P`` evenly spaced cyclic shifts (:func:`~trustrec.models.llm._ranker.cyclic_orders`;
``P`` = the ranker's ``n_permutations`` when above 1, else the list length) and averaged
(the ranker's mean LLM score; a model answering by ranks gets its mean rank), at ``P``
times the model calls. Ties go to a random candidate. Estimates: the target's top-1 rate
(HR@1 within the list) and its **curve over listed positions** (Wilson 95% intervals), its
spread (max - min over positions, stratified-bootstrap CI) with a test that the rate is the
same at every position (chi-square on the 2 x positions table; a permutation test when an
expected count is under 5); the **position of the top-1 item**, which is uniform for a
position-blind ranker because the whole list is in random order: its total-variation
distance from uniform (bootstrap CI) with a chi-square goodness-of-fit test (a Monte Carlo
exact multinomial test when an expected count is under 5), and how often the first-listed
candidate wins (binomial test against ``1 / n_candidates``); the cost in model calls; and,
from the averaged orders, :func:`~trustrec.models.llm._ranker.position_bias` (Kendall tau
between orders, top-1 agreement, score deviation by listed position).
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field, PositiveInt

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.audit.controllability._common import (
    _recommend,
)
from trustrec.data import QueryBatch, Ragged
from trustrec.errors import DataError
from trustrec.eval import (
    cluster_mean_estimate,
    percentile_ci,
    wilson_interval,  # re-exported: it lived here
)
from trustrec.models import has_capability

__all__ = ["PositionBiasAudit", "PositionBiasConfig", "equal_rate_test", "uniform_position_test", "wilson_interval"]


# -- position bias -------------------------------------------------------------------------------------------------
def uniform_position_test(
    positions: npt.ArrayLike, n_positions: int, *, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, str]:
    """Chi-square goodness of fit of ``positions`` (0-based) to the uniform distribution over
    ``n_positions``: (statistic, p-value, method). When an expected count is under 5 the p-value
    is a Monte Carlo exact test (``n_resamples`` multinomial draws under uniformity).

    Parameters
    ----------
    positions : array_like of int
        0-based positions, each in ``[0, n_positions)``.
    n_positions : int
        Number of positions.
    n_resamples : int
        Multinomial draws of the Monte Carlo test.
    seed : int
        Seed of the draws.

    Returns
    -------
    statistic : float
        The chi-square statistic (NaN with no positions or fewer than 2 positions).
    p_value : float
        Its p-value (NaN likewise).
    method : str
        ``"chi2"``, ``"monte_carlo"`` or ``"none"``.

    Raises
    ------
    DataError
        If a position is outside ``[0, n_positions)``.
    """
    from scipy import stats

    pos = np.asarray(positions, np.int64)
    n, m = len(pos), int(n_positions)
    if n == 0 or m < 2:
        return float("nan"), float("nan"), "none"
    if pos.min() < 0 or pos.max() >= m:
        raise DataError(f"uniform_position_test: positions must be in [0, {m}); got {pos.min()}..{pos.max()}")
    counts = np.bincount(pos, minlength=m).astype(np.float64)
    expected = n / m
    stat = float(((counts - expected) ** 2 / expected).sum())
    if expected >= 5:
        return stat, float(stats.chi2.sf(stat, m - 1)), "chi2"
    draws = np.random.default_rng(seed).multinomial(n, np.full(m, 1.0 / m), size=n_resamples)
    sim = ((draws - expected) ** 2 / expected).sum(1)
    return stat, float((1 + (sim >= stat - 1e-9).sum()) / (n_resamples + 1)), "monte_carlo"


def equal_rate_test(
    positions: npt.ArrayLike, success: npt.ArrayLike, n_positions: int, *, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, str]:
    """Chi-square test that the success rate is the same at every position (the 2 x positions
    table of successes and failures): (statistic, p-value, method); a permutation test
    (``n_resamples`` shuffles of the outcomes) when an expected count is under 5.

    Parameters
    ----------
    positions : array_like of int
        0-based position of each trial.
    success : array_like of bool
        Outcome of each trial.
    n_positions : int
        Number of positions.
    n_resamples : int
        Shuffles of the permutation test.
    seed : int
        Seed of the shuffles.

    Returns
    -------
    statistic : float
        The chi-square statistic.
    p_value : float
        Its p-value.
    method : str
        ``"chi2"``, ``"permutation"``, or ``"none"`` (fewer than two positions used, or all
        outcomes equal: statistic 0, p-value 1).
    """
    from scipy import stats

    pos = np.asarray(positions, np.int64)
    y = np.asarray(success, bool)
    if len(pos) != len(y):
        raise ValueError(f"equal_rate_test: {len(pos)} positions but {len(y)} outcomes")
    m = int(n_positions)
    n_j = np.bincount(pos, minlength=m).astype(np.float64)
    used = n_j > 0
    total, hits = len(y), y.sum()
    if used.sum() < 2 or hits == 0 or hits == total:
        return 0.0, 1.0, "none"

    def statistic(s_j):  # s_j: (..., m) successes per position
        e_s = n_j * hits / total
        e_f = n_j * (total - hits) / total
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(used, (s_j - e_s) ** 2 / np.where(used, e_s, 1), 0)
            b = np.where(used, ((n_j - s_j) - e_f) ** 2 / np.where(used, e_f, 1), 0)
        return (a + b).sum(-1)

    observed = float(statistic(np.bincount(pos[y], minlength=m).astype(np.float64)))
    e_min = min((n_j[used] * hits / total).min(), (n_j[used] * (total - hits) / total).min())
    if e_min >= 5:
        return observed, float(stats.chi2.sf(observed, used.sum() - 1)), "chi2"
    rng = np.random.default_rng(seed)
    onehot = np.zeros((total, m))
    onehot[np.arange(total), pos] = 1.0
    shuffled = rng.permuted(np.tile(y.astype(np.float64), (n_resamples, 1)), axis=1)
    sim = statistic(shuffled @ onehot)
    return observed, float((1 + (sim >= observed - 1e-9).sum()) / (n_resamples + 1)), "permutation"


class PositionBiasConfig(AuditConfig):
    """Settings of the ``position_bias`` audit (its ``max_users`` defaults to 200).

    Parameters
    ----------
    n_candidates : int
        List length (target + negatives; at least 2).
    negatives : {"retrieved", "random"}
        How the negatives are chosen.
    n_permutations : int or None
        Orders averaged by the mitigation; None: the ranker's own when above 1, else the list
        length.
    n_resamples : int
        Draws of the exact tests.
    batch_size : int
        Queries answered per batch.
    max_position_tv : float or None
        Threshold on the single-order top-1 position's distance from uniform (total
        variation, in [0, 1]); None: no such threshold.
    """

    n_candidates: int = Field(10, ge=2)
    negatives: Literal["retrieved", "random"] = "retrieved"
    n_permutations: PositiveInt | None = None
    max_users: PositiveInt | None = 200
    n_resamples: PositiveInt = 2000
    batch_size: PositiveInt = 64
    max_position_tv: float | None = Field(0.2, ge=0, le=1)


@register_audit
class PositionBiasAudit(Audit):
    """Candidate-position bias of rankers that read an ordered list (module docstring)."""

    name: ClassVar[str] = "position_bias"
    dimension: ClassVar[str] = "fairness"
    description: ClassVar[str] = (
        "LLM ranker position bias: the target's top-1 rate by listed position, tests "
        "against uniformity, permutation averaging and its cost in model calls"
    )
    needs: ClassVar[str] = (
        "a ranker that reads an ordered candidate list (LLM ranker, or capability ordered_candidates)"
    )
    config: PositionBiasConfig
    config_class = PositionBiasConfig

    @staticmethod
    def _listed(model) -> bool:
        return has_capability(model, "listed_scores") or has_capability(model, "ordered_candidates")

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        if not self._listed(model):
            name = getattr(model, "name", "") or type(model).__name__
            return (
                f"{name} does not read the caller's candidate order (no listed_scores or ordered_candidates "
                "capability): it scores items on their own or lists candidates in an order of its own, so the "
                "order of a given list cannot reach it (position bias concerns LLM rankers)"
            )
        m = self.config.n_candidates
        free = inputs.dataset.n_items - inputs.queries.histories.lengths - 1
        if not (free >= m - 1).any():
            return f"no user has {m - 1} unseen items besides the target to list as negatives; lower n_candidates"
        return None

    def _negatives(self, inputs: AuditInputs, users: np.ndarray, target: np.ndarray, rng) -> np.ndarray:
        """(n, m-1) negatives per row of ``users`` (rows of the eval set), in random order."""
        c = self.config
        m, n_items = c.n_candidates, inputs.dataset.n_items
        queries = inputs.queries[users]
        boost = None
        if c.negatives == "retrieved":
            retriever = getattr(inputs.model, "retriever_", None)
            if retriever is not None and callable(getattr(retriever, "recommend", None)):
                top = _recommend(retriever, queries, m, c.batch_size)
                rows = np.repeat(np.arange(len(users)), top.shape[1])
                boost = np.zeros((len(users), n_items))
                ranks = np.tile(np.arange(top.shape[1], 0, -1, dtype=np.float64), len(users))
                ok = top.ravel() >= 0
                boost[rows[ok], top.ravel()[ok]] = 2.0 + ranks[ok]
            else:
                pop = inputs.item_popularity.astype(np.float64)
                boost = np.broadcast_to(2.0 + pop / max(pop.max(), 1.0), (len(users), n_items))
        out = np.empty((len(users), m - 1), np.int64)
        step = max(1, 2_000_000 // max(n_items, 1))
        for start in range(0, len(users), step):
            sl = slice(start, start + step)
            score = rng.random((len(users[sl]), n_items))
            if boost is not None:
                score = score + boost[sl]
            sub = queries[np.arange(len(users))[sl]]
            score[sub.seen_mask(n_items)] = -np.inf
            score[np.arange(score.shape[0]), target[sl]] = -np.inf
            out[sl] = np.argsort(-score, axis=1, kind="stable")[:, : m - 1]
        return rng.permuted(out, axis=1)

    def _scores(self, model, queries: QueryBatch, lists: np.ndarray, n_orders: int) -> tuple[np.ndarray, str]:
        """``scores[q, p, c]`` of candidate ``lists[q, c]`` in cyclic order ``p`` (order 0 = as
        listed): the ranker's scores, or minus the rank a model gives when asked with the list as
        the query's candidates."""
        from trustrec.models.llm import cyclic_orders

        bs = self.config.batch_size
        n, m = lists.shape
        if has_capability(model, "listed_scores"):
            parts = [model.score_listed(queries[s : s + bs], lists[s : s + bs], n_orders) for s in range(0, n, bs)]
            return np.concatenate(parts), "llm scores"
        orders = cyclic_orders(np.full(n, m), n_orders, m)
        scores = np.empty((n, n_orders, m))
        indptr = np.arange(0, n * m + 1, m)
        for p in range(n_orders):
            shown = np.take_along_axis(lists, orders[:, p, :], 1)
            top = _recommend(model, queries.with_candidates(Ragged(indptr, shown.ravel())), m, bs, exclude_seen=False)[
                :, :m
            ]
            eq = top[:, :, None] == lists[:, None, :]  # (q, rank, candidate)
            scores[:, p, :] = -np.where(eq.any(1), eq.argmax(1), m)
        return scores, "minus rank"

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from scipy.stats import binomtest

        from trustrec.models.llm import cyclic_orders, position_bias

        c = self.config
        model, m = inputs.model, c.n_candidates
        rng = np.random.default_rng(c.seed)
        free = inputs.dataset.n_items - inputs.queries.histories.lengths - 1
        rows = np.flatnonzero(free >= m - 1)
        n_dropped = len(inputs.queries) - len(rows)
        targets = inputs.eval_set.targets
        target = targets.values[targets.indptr[rows]]  # each user's first target
        n = len(rows)
        pos = rng.permutation(np.arange(n) % m)  # stratified uniform positions
        negatives = self._negatives(inputs, rows, target, rng)
        j = np.arange(m)[None, :]
        neg_col = np.clip(j - (j > pos[:, None]), 0, m - 2)
        lists = np.where(j == pos[:, None], target[:, None], np.take_along_axis(negatives, neg_col, 1))
        n_orders = c.n_permutations
        if n_orders is None:
            own = getattr(getattr(model, "config", None), "n_permutations", None)
            n_orders = own if isinstance(own, int) and own > 1 else m
        n_orders = min(int(n_orders), m)
        queries = inputs.queries[rows]
        t0 = time.perf_counter()
        scores, scale = self._scores(model, queries, lists, n_orders)
        seconds = time.perf_counter() - t0
        tie = rng.random((n, m))

        def top1(s):
            return np.argmax(np.where(s >= s.max(1, keepdims=True), tie, -1.0), axis=1)

        outcomes = {"single order": top1(scores[:, 0, :])}
        if n_orders > 1:
            outcomes["averaged"] = top1(scores.mean(1))
        users = queries.users
        estimates: dict[str, Estimate] = {}
        curve_rows, share_rows = [], []
        n_j = np.bincount(pos, minlength=m)
        for ci, (cond, best) in enumerate(outcomes.items()):
            hit = best == pos
            s_j = np.bincount(pos[hit], minlength=m)
            rate = np.divide(s_j, n_j, out=np.full(m, np.nan), where=n_j > 0)
            lo, hi = wilson_interval(s_j, n_j)
            estimates[f"target_top1_rate [{cond}]"] = cluster_mean_estimate(
                hit.astype(float),
                users,
                n_boot=c.n_boot,
                seed=c.seed + ci,
                description=f"share of users whose target is ranked first among {m} listed candidates (HR@1)",
            )
            _stat, p, method = equal_rate_test(pos, hit, m, n_resamples=c.n_resamples, seed=c.seed + ci)
            boot = np.empty((c.n_boot, m))
            brng = np.random.default_rng(c.seed + 10 + ci)
            for jj in range(m):  # stratified bootstrap within positions
                members = np.flatnonzero(pos == jj)
                if len(members):
                    draw = brng.integers(0, len(members), (c.n_boot, len(members)))
                    boot[:, jj] = hit[members][draw].mean(1)
                else:
                    boot[:, jj] = np.nan
            spread_ci = percentile_ci(np.nanmax(boot, 1) - np.nanmin(boot, 1)) if c.n_boot else (None, None)
            estimates[f"target_top1_spread [{cond}]"] = Estimate(
                float(np.nanmax(rate) - np.nanmin(rate)),
                *spread_ci,
                n,
                p_value=p,
                description=f"highest minus lowest top-1 rate of the target over its {m} listed positions; p: "
                f"equal rates at every position ({method})",
            )
            counts = np.bincount(best, minlength=m)
            tv = 0.5 * np.abs(counts / n - 1.0 / m).sum()
            _stat_u, p_u, method_u = uniform_position_test(best, m, n_resamples=c.n_resamples, seed=c.seed + 20 + ci)
            tv_ci: tuple[float | None, float | None] = (None, None)
            if c.n_boot:
                draw = np.random.default_rng(c.seed + 30 + ci).integers(0, n, (c.n_boot, n))
                bc = np.bincount(
                    (np.arange(c.n_boot)[:, None] * m + best[draw]).ravel(), minlength=c.n_boot * m
                ).reshape(c.n_boot, m)
                tv_ci = percentile_ci(0.5 * np.abs(bc / n - 1.0 / m).sum(1))
            estimates[f"top1_position_tv [{cond}]"] = Estimate(
                tv,
                *tv_ci,
                n,
                p_value=p_u,
                description=f"total-variation distance of the top-1 item's listed position from uniform over {m} "
                f"positions (0 = position-blind); p: uniformity ({method_u})",
            )
            first = int((best == 0).sum())
            estimates[f"top1_listed_first [{cond}]"] = Estimate(
                first / n,
                n=n,
                p_value=float(binomtest(first, n, 1.0 / m).pvalue),
                description=f"share of lists whose top-1 was listed first (chance {1 / m:.3f}); p: binomial test",
            )
            for jj in range(m):
                curve_rows.append(
                    {
                        "position": jj + 1,
                        "condition": cond,
                        "rate": rate[jj],
                        "ci_low": lo[jj],
                        "ci_high": hi[jj],
                        "n_users": int(n_j[jj]),
                        "n_top1": int(s_j[jj]),
                    }
                )
                share_rows.append({"position": jj + 1, "condition": cond, "share": counts[jj] / n})
        overall = estimates["target_top1_rate [single order]"].value
        curve_rows += [
            {
                "position": jj + 1,
                "condition": "no position effect",
                "rate": overall,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n_users": int(n_j[jj]),
                "n_top1": np.nan,
            }
            for jj in range(m)
        ]
        estimates["model_calls [single order]"] = Estimate(n, n=n, description="list requests (prompts) for one order")
        estimates["model_calls [averaged]"] = Estimate(
            n * n_orders, n=n, description=f"list requests (prompts) for {n_orders} cyclic orders"
        )
        estimates["scored_candidates [averaged]"] = Estimate(
            n * m * n_orders, n=n, description="candidate scores computed over all orders (LLM continuations)"
        )
        evidence = {
            "curve": pd.DataFrame(curve_rows),
            "top1_positions": pd.DataFrame(share_rows),
            "per_user": pd.DataFrame(
                {
                    "user": users,
                    "target": target,
                    "target_position": pos + 1,
                    **{f"top1_position [{cond}]": best + 1 for cond, best in outcomes.items()},
                }
            ),
            "cost": pd.DataFrame(
                [
                    {
                        "orders": n_orders,
                        "model_calls": n * n_orders,
                        "seconds": seconds,
                        "ms_per_call": 1000 * seconds / max(n * n_orders, 1),
                    }
                ]
            ),
        }
        if n_orders > 1:
            orders = cyclic_orders(np.full(n, m), n_orders, m)
            positions = np.argsort(orders, axis=-1, kind="stable")
            report = position_bias(scores, positions, np.ones((n, m), bool))
            if report["kendall_tau"] is not None:
                estimates["kendall_tau across orders"] = Estimate(
                    report["kendall_tau"],
                    n=n,
                    description="mean Kendall tau-a between the rankings of the orders "
                    "(1 = the listing order never matters)",
                )
            if report["top1_agreement"] is not None:
                estimates["top1_agreement across orders"] = Estimate(
                    report["top1_agreement"],
                    n=n,
                    description="share of users whose best candidate is the same in every order",
                )
            effect = report["position_effect"]
            evidence["position_effect"] = pd.DataFrame(
                {"position": np.arange(1, len(effect) + 1), "score_deviation": effect}
            )
        plots = (
            Plot(
                "line",
                "curve",
                "position",
                "rate",
                "target ranked first, by its listed position",
                series="condition",
                x_label="listed position of the target",
                y_label="top-1 rate",
            ),
            Plot(
                "bar",
                "top1_positions",
                "position",
                "share",
                "listed position of the top-1 item",
                series="condition",
                y_label="share of lists",
            ),
        )
        warnings = []
        if n_dropped:
            warnings.append(
                f"{n_dropped} users have fewer than {m - 1} unseen items to list as negatives and were left out"
            )
        if not self._listed_by_scores(model):
            warnings.append("the model returns rankings, not scores: averaging uses the mean rank over orders")
        e = estimates
        single, spread = e["top1_position_tv [single order]"], e["target_top1_spread [single order]"]
        summary = (
            f"{n} users, {m} candidates: target top-1 rate {overall:.3f}; spread over positions "
            f"{spread.value:.3f} (p={spread.p_value:.3g}); "
            f"top-1 position TV from uniform {single.value:.3f} (p={single.p_value:.3g})"
        )
        if "averaged" in outcomes:
            summary += (
                f"; averaged over {n_orders} orders: TV {e['top1_position_tv [averaged]'].value:.3f} at "
                f"{n_orders}x the model calls"
            )
        return self._result(
            estimates,
            evidence=evidence,
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={"n_orders": n_orders, "score_scale": scale, "n_users_listed": n, "negatives": c.negatives},
        )

    @staticmethod
    def _listed_by_scores(model) -> bool:
        return has_capability(model, "listed_scores")

    def _thresholds(self, estimates):
        extra = (
            [Threshold(estimate="top1_position_tv [single order]", op="<=", limit=self.config.max_position_tv)]
            if self.config.max_position_tv is not None
            else []
        )
        return [*self.config.thresholds, *extra]
