"""History perturbation (``history_perturbation``): how far a model's lists move when a user's
history is perturbed.

Four kinds of edit, each at several budgets (a share of each history, at least one item):
``insert`` (new items, not already in the history, drawn uniformly from the catalog),
``delete``, ``substitute`` (an item replaced by a new one, drawn as for insertion) and
``reorder`` (the chosen items permuted among their positions). ``random`` picks positions
uniformly; ``targeted`` hits what a history-reading model relies on most, **the most recent
positions**: insertions are appended at the end, deletions and substitutions take the newest
items, and reordering moves the newest items to the front (oldest) of the history (at most
``length - 1`` of them); random reordering permutes the chosen items cyclically, so each one
moves. Deletion always leaves at least one item; reordering needs two. See :func:`perturb_histories`.
Stability of the top-K against the unperturbed list: Jaccard@K, rank-biased overlap
(:func:`trustrec.eval.rank_biased_overlap`, extrapolated RBO_ext of Webber et al. 2010, ``p = 0.9``), the
share of users whose top-1 changes, and the NDCG@K drop on the audit's targets.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Plot
from trustrec.audit.robustness._common import _recommend
from trustrec.data import Ragged
from trustrec.errors import ConfigError
from trustrec.eval import mean_estimate, rank_biased_overlap  # RBO re-exported for callers

__all__ = [
    "PERTURBATIONS",
    "HistoryPerturbationAudit",
    "HistoryPerturbationConfig",
    "perturb_histories",
    "rank_biased_overlap",
]

Perturbation = Literal["insert", "delete", "substitute", "reorder"]
PERTURBATIONS: tuple[Perturbation, ...] = ("insert", "delete", "substitute", "reorder")


def _n_changes(lengths: np.ndarray, budget: float, kind: str, n_items: int) -> np.ndarray:
    n = np.maximum(1, np.round(budget * lengths)).astype(np.int64)
    if kind == "insert":
        return np.minimum(n, np.maximum(n_items - lengths, 0))
    if kind == "delete":
        return np.minimum(n, np.maximum(lengths - 1, 0))
    if kind == "reorder":
        return np.where(lengths >= 2, np.clip(n, 2, lengths), 0)
    return np.minimum(n, np.minimum(lengths, np.maximum(n_items - lengths, 0)))


def _chosen_positions(h: Ragged, n: np.ndarray, targeted: bool, rng) -> np.ndarray:
    """Boolean mask over ``h.values``: ``n[i]`` positions of row ``i`` (the newest when
    ``targeted``, else uniform)."""
    rows = h.row_ids()
    pos = np.arange(len(h.values)) - h.indptr[rows]
    if targeted:
        return pos >= (h.lengths - n)[rows]
    keys = rng.random(len(h.values))
    order = np.lexsort((keys, rows))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - h.indptr[rows[order]]
    return rank < n[rows]


def _new_items(h: Ragged, n: np.ndarray, n_items: int, rng, max_rounds: int = 50) -> Ragged:
    """``n[i]`` distinct items per row, none in row ``i`` of ``h``, uniform over the rest of the
    catalog (vectorised rejection sampling)."""
    n_rows = len(h)
    seen = np.unique(h.row_ids() * n_items + h.values)
    picked = np.empty(0, np.int64)  # keys row * n_items + item
    need = n.astype(np.int64).copy()
    for _ in range(max_rounds):
        if not need.any():
            break
        draw = need * 2 + 4
        rows = np.repeat(np.arange(n_rows), draw)
        keys = rows * n_items + rng.integers(0, n_items, len(rows))
        keys = keys[~np.isin(keys, seen) & ~np.isin(keys, picked)]
        keys, first = np.unique(keys, return_index=True)
        keys = keys[np.argsort(first, kind="stable")]  # keep the random draw order
        rows = keys // n_items
        order = np.argsort(rows, kind="stable")
        keys, rows = keys[order], rows[order]
        starts = np.searchsorted(rows, np.arange(n_rows))
        rank = np.arange(len(rows)) - starts[rows]
        take = keys[rank < need[rows]]
        picked = np.concatenate([picked, take])
        need = n - np.bincount(picked // n_items, minlength=n_rows)
    if need.any():  # tiny catalogs: exhaustive fallback
        for i in np.flatnonzero(need):
            have = np.concatenate([h.row(int(i)), picked[picked // n_items == i] % n_items])
            free = np.setdiff1d(np.arange(n_items), have)
            extra = rng.permutation(free)[: need[i]]
            picked = np.concatenate([picked, i * n_items + extra])
    rows = picked // n_items
    return Ragged.from_groups(rows, picked % n_items, n_rows)


def _rebuild(rows: np.ndarray, keys: np.ndarray, values: np.ndarray, n_rows: int) -> Ragged:
    order = np.lexsort((keys, rows))
    counts = np.bincount(rows, minlength=n_rows)
    return Ragged(np.concatenate([[0], np.cumsum(counts)]), values[order])


def perturb_histories(
    histories: Ragged, kind: str, budget: float, *, n_items: int, seed: int = 0, targeted: bool = False
) -> Ragged:
    """Perturbed copies of ``histories`` (chronological rows), vectorised over rows and seeded.

    Each non-empty row gets ``max(1, round(budget * length))`` edits of ``kind`` (module
    docstring), capped so the result stays valid: insertion at most the items not yet in the
    history, deletion at most ``length - 1``, reordering at least 2 items (rows shorter than 2 are
    unchanged). Inserted and substituted items are in-catalog and not already in the row, so no
    duplicate is introduced. Lengths: ``+n`` for insert, ``-n`` for delete, unchanged otherwise.
    Empty rows are unchanged except by insertion.

    Parameters
    ----------
    histories : Ragged
        Chronological histories, one per row.
    kind : str
        The edit, one of :data:`PERTURBATIONS`.
    budget : float
        Share of each row edited, in (0, 1].
    n_items : int
        Number of items in the catalog (inserted and substituted items are drawn from it).
    seed : int
        Seed of the edits.
    targeted : bool
        Edit the newest positions instead of random ones.

    Returns
    -------
    Ragged
        The perturbed histories, row for row.

    Raises
    ------
    ConfigError
        If ``kind`` is unknown or ``budget`` is not in (0, 1].
    """
    if kind not in PERTURBATIONS:
        raise ConfigError(f"perturb_histories: kind must be one of {PERTURBATIONS}, got {kind!r}")
    if not 0 < budget <= 1:
        raise ConfigError(f"perturb_histories: budget must be in (0, 1], got {budget}")
    rng = np.random.default_rng(seed)
    h = histories
    n_rows, lengths = len(h), h.lengths
    n = _n_changes(lengths, budget, kind, n_items)
    if kind == "insert":
        n = np.where(lengths > 0, n, np.minimum(1, n_items))
    else:
        n = np.where(lengths > 0, n, 0)
    rows = h.row_ids()
    pos = (np.arange(len(h.values)) - h.indptr[rows]).astype(np.float64)
    if kind == "insert":
        new = _new_items(h, n, n_items, rng)
        new_rows = new.row_ids()
        if targeted:
            new_pos = lengths[new_rows] + (np.arange(len(new.values)) - new.indptr[new_rows])
        else:  # a random slot among length + 1 gaps
            new_pos = rng.random(len(new.values)) * (lengths[new_rows] + 1) - 0.5
        return _rebuild(
            np.concatenate([rows, new_rows]),
            np.concatenate([pos, new_pos]),
            np.concatenate([h.values, new.values]),
            n_rows,
        )
    if kind == "reorder" and targeted:  # moving the whole history would change nothing
        n = np.minimum(n, np.maximum(lengths - 1, 0))
    chosen = _chosen_positions(h, n, targeted, rng)
    if kind == "delete":
        keep = ~chosen
        counts = np.bincount(rows[keep], minlength=n_rows)
        return Ragged(np.concatenate([[0], np.cumsum(counts)]), h.values[keep])
    values = np.array(h.values, copy=True)
    if kind == "substitute":
        new = _new_items(h, n, n_items, rng)
        # chosen positions are in row order; new items are grouped by row in the same counts
        values[np.flatnonzero(chosen)] = new.values
        return Ragged(h.indptr, values)
    # reorder
    if targeted:  # the newest n items move to the front
        new_pos = np.where(chosen, pos - lengths[rows], pos)
        return _rebuild(rows, new_pos, values, n_rows)
    # a random cyclic permutation of the chosen positions of each row: every chosen item moves
    idx = np.flatnonzero(chosen)
    idx = idx[np.lexsort((rng.random(len(idx)), rows[idx]))]
    r = rows[idx]
    nxt = np.arange(1, len(idx) + 1)
    last = np.r_[r[1:] != r[:-1], True] if len(idx) else np.zeros(0, bool)
    first_of = np.searchsorted(r, r)
    nxt[last] = first_of[last]
    values[idx] = h.values[idx[nxt]] if len(idx) else values[idx]
    return Ragged(h.indptr, values)


class HistoryPerturbationConfig(AuditConfig):
    """Settings of the ``history_perturbation`` audit.

    Parameters
    ----------
    perturbations : tuple of str
        Kinds of edit (see :data:`PERTURBATIONS`).
    targeting : tuple of {"random", "targeted"}
        Where the edits fall: ``random`` positions and/or ``targeted`` (the newest positions).
    budgets : tuple of float
        Shares of each history edited (at least one item), each in (0, 1].
    default_budget : float
        Where the headline estimates are read (added to the sweep).
    rbo_p : float
        The persistence of rank-biased overlap (between 0 and 1).
    max_users : int or None
        A seeded sample of evaluation users (each setting re-asks the model; default 1000).
    batch_size : int
        Queries answered per batch.
    """

    perturbations: tuple[Perturbation, ...] = PERTURBATIONS
    targeting: tuple[Literal["random", "targeted"], ...] = ("random", "targeted")
    budgets: tuple[float, ...] = (0.1, 0.2, 0.4)
    default_budget: float = Field(0.2, gt=0, le=1)
    rbo_p: float = Field(0.9, gt=0, lt=1)
    max_users: PositiveInt | None = 1000
    batch_size: PositiveInt = 512

    @field_validator("budgets")
    @classmethod
    def _check_budgets(cls, values):
        if not values:
            raise ValueError("give at least one budget")
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"budgets are shares of each history and must be in (0, 1]; got {bad}")
        return tuple(sorted({float(v) for v in values}))

    @field_validator("perturbations", "targeting")
    @classmethod
    def _non_empty(cls, values):
        if not values:
            raise ValueError("give at least one value")
        return tuple(dict.fromkeys(values))


@register_audit
class HistoryPerturbationAudit(Audit):
    """Top-K stability under random and targeted edits of the query history (module docstring)."""

    name: ClassVar[str] = "history_perturbation"
    dimension: ClassVar[str] = "robustness"
    description: ClassVar[str] = (
        "top-K stability (Jaccard, RBO, top-1 flips) and NDCG drop when history items "
        "are inserted, deleted, substituted or reordered, random vs targeted"
    )
    needs: ClassVar[str] = "any model (models that ignore the history are stable by construction)"
    config: HistoryPerturbationConfig
    config_class = HistoryPerturbationConfig

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import hits_matrix, jaccard_at_k, ndcg

        c = self.config
        k = c.k
        model, queries, targets = inputs.model, inputs.queries, inputs.eval_set.targets
        n_items = inputs.dataset.n_items
        base = np.asarray(inputs.topk)[:, :k]
        base_ndcg = inputs.evaluation.per_user[f"ndcg@{k}"].to_numpy()
        from trustrec.eval import distinct_counts

        n_rel = distinct_counts(targets)
        budgets = sorted(set(c.budgets) | {c.default_budget})
        rows, estimates = [], {}
        setting = 0
        for kind in c.perturbations:
            for targeting in c.targeting:
                label = f"{kind}/{targeting}"
                for budget in budgets:
                    setting += 1
                    hist = perturb_histories(
                        queries.histories,
                        kind,
                        budget,
                        n_items=n_items,
                        seed=c.seed * 7919 + setting,
                        targeted=targeting == "targeted",
                    )
                    top = _recommend(model, queries.with_histories(hist), k, c.batch_size)
                    per = {
                        "jaccard": jaccard_at_k(base, top),
                        "rbo": rank_biased_overlap(base, top, c.rbo_p),
                        "top1_flip": (base[:, 0] != top[:, 0]).astype(np.float64) if k else np.zeros(len(top)),
                        "ndcg_drop": base_ndcg - ndcg(hits_matrix(top, targets, n_items), n_rel),
                    }
                    row = {
                        "perturbation": label,
                        "kind": kind,
                        "targeting": targeting,
                        "budget": budget,
                        "mean_edits": float(np.abs(hist.lengths - queries.histories.lengths).mean())
                        if kind in ("insert", "delete")
                        else np.nan,
                    }
                    for j, (metric, values) in enumerate(per.items()):
                        e = mean_estimate(
                            values,
                            n_boot=c.n_boot,
                            seed=c.seed + j,
                            description=self._describe(metric, k, kind, targeting, budget),
                        )
                        row.update({metric: e.value, f"{metric}_ci_low": e.ci_low, f"{metric}_ci_high": e.ci_high})
                        if budget == c.default_budget:
                            estimates[f"{self._names[metric].format(k=k)} [{label}]"] = e
                    row["n_users"] = len(queries)
                    rows.append(row)
        table = pd.DataFrame(rows)
        plots = tuple(
            Plot(
                "line",
                "by_budget",
                "budget",
                metric,
                f"{title} vs perturbation budget",
                series="perturbation",
                x_label="share of history edited",
                y_label=title.format(k=k).split(" (")[0],
            )
            for metric, title in (
                ("jaccard", f"Jaccard@{k} to the unperturbed list"),
                ("rbo", f"RBO (p={c.rbo_p:g}) to the unperturbed list"),
                ("ndcg_drop", f"NDCG@{k} drop"),
                ("top1_flip", "share of top-1 flips"),
            )
        )
        at = table[table.budget == c.default_budget]
        worst = at.loc[at.jaccard.idxmin()]
        summary = (
            f"{len(queries)} users, {len(c.perturbations) * len(c.targeting)} perturbations x "
            f"{len(budgets)} budgets; at {c.default_budget:.0%} the least stable is {worst.perturbation}: "
            f"Jaccard@{k} {worst.jaccard:.3f}, RBO {worst.rbo:.3f}, NDCG@{k} drop {worst.ndcg_drop:+.4f}, "
            f"top-1 flips {worst.top1_flip:.1%}"
        )
        return self._result(
            estimates,
            evidence={"by_budget": table},
            plots=plots,
            summary=summary,
            settings={
                "budgets": budgets,
                "targeted_rule": "most recent positions",
                "n_model_calls": setting * len(queries),
            },
        )

    _names: ClassVar[dict] = {
        "jaccard": "jaccard@{k}",
        "rbo": "rbo@{k}",
        "top1_flip": "top1_flip_rate",
        "ndcg_drop": "ndcg@{k}_drop",
    }

    @staticmethod
    def _describe(metric, k, kind, targeting, budget) -> str:
        what = {
            "jaccard": f"mean Jaccard@{k} between the lists before and after",
            "rbo": f"mean extrapolated rank-biased overlap (Webber et al. 2010) of the top-{k} before and after",
            "top1_flip": "share of users whose first item changes",
            "ndcg_drop": f"mean per-user NDCG@{k} before minus after (> 0 = accuracy lost)",
        }[metric]
        where = "the newest positions" if targeting == "targeted" else "random positions"
        return f"{what}, {kind} of {budget:.0%} of each history (at least 1 item) at {where}"
