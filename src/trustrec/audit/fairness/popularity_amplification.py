"""Does fine-tuning amplify popularity bias? Two views, both over item popularity groups.

``popularity_amplification`` (list level)
    The audited (fine-tuned) model's top-K lists next to a *reference* model's (the base or
    zero-shot model, or any baseline) and next to the training data itself (the users' profiles):
    for each, the popularity lift over the users' profiles, the exposure Gini and the share of
    recommendations in each popularity group (CFT, arXiv 2410.22809, reports recommendations per
    5 popularity groups), with the audited-minus-reference differences of the head-group share
    and of the Gini. The reference is a model spec in the config (``reference``), built and
    fitted on the same training split, as ``cold_start``'s ``compare_with`` and
    ``membership_inference``'s ``reference_spec`` do: the audit framework passes one model, and
    a spec keeps the config serialisable and the run reproducible. Without a reference the
    training data is the baseline of the differences.
``finetune_token_shift`` (token level)
    For a model with its own answer likelihood under the fine-tuned and the untuned base LM
    (the ``sequence_likelihood`` capability: ``answer_losses(queries, targets, base=...)``, e.g.
    :class:`~trustrec.models.llm.GenerativeRecommender`), the shift of the mean per-token
    log-probability of an item's answer, ``Δlog p = answer_losses(base=True) -
    answer_losses(base=False)``, on the sampled users' held-out targets and on a fixed sample of
    catalog items per popularity group (every group represented), by group: which titles
    fine-tuning moved.

Popularity groups (:func:`trustrec.eval.popularity_groups`): items sorted by training
popularity, cut into ``n_groups`` (default 5) groups of equal interaction mass (default; CFT does
not state its rule in our references, and equal mass makes the training data's own share about
``1 / n_groups`` per group, so a list's excess in the head is read directly) or of equal item
counts (``group_rule="items"``). Group 1 is the head, the last group the tail.

Bootstrap CIs resample users (one :func:`trustrec.eval.bootstrap_rows` draw shared by every
source, so the differences are paired), or items for the catalog sample of the token view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, ModelSpecField, fit_spec, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import (
    average_popularity,
    bootstrap_exposure_gini,
    bootstrap_rows,
    cluster_mean_estimate,
    gini,
    group_distribution,
    mean_estimate,
    percentile_ci,
    popularity_groups,
    popularity_lift,
    two_sample_estimate,
)
from trustrec.models import capability_gap

if TYPE_CHECKING:
    from trustrec.data import Ragged

__all__ = [
    "FinetuneTokenShiftAudit",
    "FinetuneTokenShiftConfig",
    "PopularityAmplificationAudit",
    "PopularityAmplificationConfig",
]

SOURCES = ("data", "reference", "audited")
"""The rows of the list-level comparison: the users' profiles, the reference model, the audited model."""


def _group_labels(n_groups: int) -> list[str]:
    return [
        f"{g + 1} (head)" if g == 0 else f"{g + 1} (tail)" if g == n_groups - 1 else str(g + 1) for g in range(n_groups)
    ]


def _membership(groups: np.ndarray, n_groups: int) -> sp.csr_matrix:
    n = len(groups)
    return sp.csr_matrix((np.ones(n), (np.arange(n), groups)), shape=(n, n_groups))


def _weights(rows: np.ndarray, n: int) -> np.ndarray:
    """(n_boot, n) multiplicity of each user in each bootstrap resample."""
    n_boot = len(rows)
    flat = (rows + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _weighted_means(w: np.ndarray, values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per resample, the mean of ``values`` (rows: users) over the users with ``ok``."""
    den = w[:, ok].sum(1)
    num = w[:, ok] @ values[ok]
    den = den.reshape(-1, *([1] * (num.ndim - 1)))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _user_item(rows: np.ndarray | Ragged, n_items: int) -> sp.csr_matrix:
    """(n_users, n_items) counts of each user's items: a top-K matrix (-1 = none) or a Ragged."""
    if hasattr(rows, "indptr"):
        users, items = rows.row_ids(), np.asarray(rows.values, np.int64)  # type: ignore[union-attr]
        n = len(rows)
    else:
        top = np.asarray(rows)
        valid = top >= 0
        users, items, n = np.nonzero(valid)[0], top[valid], len(top)
    return sp.csr_matrix((np.ones(len(items)), (users, items)), shape=(n, n_items))


class PopularityAmplificationConfig(AuditConfig):
    """Settings of the ``popularity_amplification`` audit.

    Parameters
    ----------
    reference : dict or None
        The reference model (``{"name": ..., "params": {...}}``), built and fitted on the same
        training split with the audit's seed and measured on the same users: the base or
        zero-shot model the audited fine-tuned model is compared with. None: no reference model;
        the differences are taken against the training data (the users' profiles).
    n_groups : int
        Number of popularity groups (default 5, as CFT reports; between 2 and 20).
    group_rule : {"interactions", "items"}
        Cut the items, sorted by training popularity, into groups of equal interaction mass
        (default) or of equal item counts (:func:`trustrec.eval.popularity_groups`).
    max_head_share_increase : float or None
        Flag when the head group's share of the audited lists exceeds the reference's (or the
        profiles', without a reference) by more than this (default 0.05: five more slots in a
        hundred go to the head group); None: no such threshold.
    max_gini_increase : float or None
        Flag when the audited exposure Gini exceeds the reference's (or the profiles') by more
        than this; None (default): reported, not judged (a Gini also moves with list diversity,
        not only with popularity).
    """

    reference: ModelSpecField = None
    n_groups: int = Field(5, ge=2, le=20)
    group_rule: Literal["interactions", "items"] = "interactions"
    max_head_share_increase: float | None = Field(0.05, ge=0)
    max_gini_increase: float | None = Field(None, ge=0)


@register_audit
class PopularityAmplificationAudit(Audit):
    """Popularity amplification of the audited model against a reference model and the training
    data: popularity lift, exposure Gini and the share of recommendations per popularity group,
    with the audited-minus-reference differences of the head share and of the Gini."""

    name: ClassVar[str] = "popularity_amplification"
    dimension: ClassVar[str] = "fairness"
    requires: ClassVar[str] = "lists"  # reads only the top-K lists of the evaluation queries
    description: ClassVar[str] = (
        "share of recommendations per popularity group, popularity lift and exposure Gini of the "
        "audited model vs a reference (base) model and the training data"
    )
    needs: ClassVar[str] = "any model; a reference model spec (the base model) for the comparison that matters"
    config: PopularityAmplificationConfig
    config_class = PopularityAmplificationConfig

    def _reference_topk(self, inputs: AuditInputs, warnings: list[str]) -> tuple[str, np.ndarray | None]:
        from trustrec.models import ModelSpec

        c = self.config
        if c.reference is None:
            warnings.append("no reference model given: the differences are taken against the training data")
            return "", None
        spec = ModelSpec.model_validate(c.reference)
        try:
            model, _ = fit_spec(spec, inputs.split, seed=c.seed, progress=inputs.progress)
        except Exception as exc:  # noqa: BLE001  # a missing extra or offline LLM: report, do not crash the audit
            warnings.append(
                f"reference {spec.name} not measured ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); the differences are taken against the training data"
            )
            return spec.name, None
        ref = AuditInputs(
            model,
            inputs.split,
            part=inputs.part,
            k=inputs.k,
            max_users=c.max_users,
            seed=c.seed,
            progress=inputs.progress,
        )
        if not np.array_equal(ref.queries.users, inputs.queries.users):
            raise RuntimeError("popularity_amplification: the reference was measured on other users")
        return spec.name, ref.topk[:, : c.k]

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        warnings: list[str] = []
        n_items = inputs.dataset.n_items
        pop = inputs.item_popularity.astype(np.float64)
        groups = popularity_groups(pop, c.n_groups, c.group_rule)
        membership = _membership(groups, c.n_groups)
        labels = _group_labels(c.n_groups)
        histories = inputs.queries.histories
        ref_name, ref_top = self._reference_topk(inputs, warnings)
        lists: dict[str, Any] = {"data": histories, "audited": inputs.topk[:, : c.k]}
        if ref_top is not None:
            lists["reference"] = ref_top
        baseline = "reference" if ref_top is not None else "data"
        n_users = len(inputs.queries)
        w = _weights(bootstrap_rows(n_users, c.n_boot, c.seed), n_users)
        hist_pop = average_popularity(histories.to_padded(max(int(histories.lengths.max(initial=0)), 1), -1), pop)
        hist_ok = ~np.isnan(hist_pop)
        hist_boot = _weighted_means(w, hist_pop, hist_ok)
        point: dict[str, dict[str, Any]] = {}
        boot: dict[str, dict[str, np.ndarray]] = {}
        for source, rows in lists.items():
            shares = group_distribution(rows, membership)
            filled = shares.sum(1) > 0
            ui = _user_item(rows, n_items)
            if source == "data":
                rec_pop, rec_ok, rec_boot = hist_pop, hist_ok, hist_boot
            else:
                rec_pop = average_popularity(rows, pop)
                rec_ok = ~np.isnan(rec_pop)
                rec_boot = _weighted_means(w, rec_pop, rec_ok)
            point[source] = {
                "shares": shares[filled].mean(0) if filled.any() else np.full(c.n_groups, np.nan),
                "gini": gini(np.asarray(ui.sum(0)).ravel()),
                "lift": popularity_lift(
                    np.array([rec_pop[rec_ok].mean() if rec_ok.any() else np.nan]),
                    np.array([hist_pop[hist_ok].mean() if hist_ok.any() else np.nan]),
                )[0],
                "n": int(filled.sum()),
            }
            boot[source] = {
                "shares": _weighted_means(w, shares, filled),
                "gini": bootstrap_exposure_gini(w, ui),
                "lift": popularity_lift(rec_boot, hist_boot),
            }
        estimates: dict[str, Estimate] = {}
        for source in lists:
            p, b = point[source], boot[source]
            who = "the users' profiles (training data)" if source == "data" else f"the {source} model's top-{c.k}"
            if source == "reference":
                who += f" ({ref_name})"
            estimates[f"head_share_{source}"] = Estimate(
                p["shares"][0],
                *percentile_ci(b["shares"][:, 0]),
                p["n"],
                description=f"share of {who} in the head popularity group (mean over users)",
            )
            estimates[f"gini_{source}"] = Estimate(
                p["gini"], *percentile_ci(b["gini"]), n_users, description=f"exposure Gini of {who} over the catalog"
            )
            if source != "data":
                estimates[f"popularity_lift_{source}"] = Estimate(
                    p["lift"],
                    *percentile_ci(b["lift"]),
                    n_users,
                    description=f"popularity lift of {who} over the users' profiles (ratio of means)",
                )
        against = f"the reference ({ref_name})" if baseline == "reference" else "the training data (profiles)"
        diffs = {
            "head_share_increase": ("shares", baseline, f"head-group share, audited minus {against}"),
            "gini_increase": ("gini", baseline, f"exposure Gini, audited minus {against}"),
            "head_share_over_data": ("shares", "data", "head-group share, audited minus the training data (profiles)"),
        }
        for name, (key, base, description) in diffs.items():
            a, b = point["audited"][key], point[base][key]
            ra, rb = boot["audited"][key], boot[base][key]
            if key == "shares":
                a, b, ra, rb = a[0], b[0], ra[:, 0], rb[:, 0]
            estimates[name] = Estimate(a - b, *percentile_ci(ra - rb), n_users, description=description)
        catalog = np.bincount(groups, minlength=c.n_groups) / max(n_items, 1)
        interactions = np.bincount(groups, pop, minlength=c.n_groups) / max(pop.sum(), 1e-300)
        frames = []
        for source in lists:
            lo, hi = (np.asarray(x) for x in zip(*[percentile_ci(col) for col in boot[source]["shares"].T]))
            frames.append(
                pd.DataFrame(
                    {
                        "source": source,
                        "group": labels,
                        "n_items": np.bincount(groups, minlength=c.n_groups),
                        "catalog_share": catalog,
                        "interaction_share": interactions,
                        "share": point[source]["shares"],
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
            )
        summary_rows = pd.DataFrame(
            {
                "source": list(lists),
                "popularity_lift": [0.0 if s == "data" else point[s]["lift"] for s in lists],
                "gini": [point[s]["gini"] for s in lists],
                "head_share": [point[s]["shares"][0] for s in lists],
                "tail_share": [point[s]["shares"][-1] for s in lists],
            }
        )
        evidence = {"group_shares": pd.concat(frames, ignore_index=True), "sources": summary_rows}
        plots = (
            Plot(
                "bar",
                "group_shares",
                "group",
                "share",
                "share of recommendations per popularity group",
                series="source",
                x_label="popularity group (1 = head)",
                y_label="share of list slots",
            ),
        )
        empty = [labels[g] for g in range(c.n_groups) if not (groups == g).any()]
        if empty:
            warnings.append(f"empty popularity groups (one item holds more than a group's mass): {', '.join(empty)}")
        e = estimates
        summary = (
            f"head-group share {e['head_share_audited'].value:.3f} vs {e[f'head_share_{baseline}'].value:.3f} "
            f"({baseline}), Gini {e['gini_audited'].value:.3f} vs {e[f'gini_{baseline}'].value:.3f}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "baseline": baseline,
                "reference_model": ref_name or None,
                "group_rule": c.group_rule,
                "group_sizes": np.bincount(groups, minlength=c.n_groups).tolist(),
            },
        )

    def _thresholds(self, estimates: dict[str, Estimate]) -> list[Threshold]:
        c = self.config
        extra = []
        if c.max_head_share_increase is not None:
            extra.append(Threshold(estimate="head_share_increase", op="<=", limit=c.max_head_share_increase))
        if c.max_gini_increase is not None:
            extra.append(Threshold(estimate="gini_increase", op="<=", limit=c.max_gini_increase))
        return [*c.thresholds, *extra]


# -- token level ------------------------------------------------------------------------------------
class FinetuneTokenShiftConfig(AuditConfig):
    """Settings of the ``finetune_token_shift`` audit.

    Parameters
    ----------
    max_users : int or None
        Users sampled (seeded) whose held-out targets are scored (default 200: every pair costs
        two LM passes); None: every user with a target.
    items_per_group : int
        Catalog items sampled (seeded, without replacement) from each popularity group, each
        scored as the answer to a sampled user's query, so every group is represented even when
        few targets fall in it (default 20; a smaller group gives all its items).
    n_groups : int
        Number of popularity groups (default 5; between 2 and 20).
    group_rule : {"interactions", "items"}
        Groups of equal interaction mass (default) or of equal item counts
        (:func:`trustrec.eval.popularity_groups`).
    max_head_tail_gap : float or None
        Flag when fine-tuning raised the head group's catalog titles more than the tail group's:
        mean Δlog p per token (nats) of the head minus that of the tail, on the catalog sample,
        above this (default 0.1: the head titles' per-token probability grew ``e^0.1`` ≈ 1.105
        times more than the tail's). A breach that the Mann-Whitney test does not find
        significant only warns. None: no such threshold.
    """

    max_users: int | None = Field(200, gt=0)
    items_per_group: int = Field(20, gt=0)
    n_groups: int = Field(5, ge=2, le=20)
    group_rule: Literal["interactions", "items"] = "interactions"
    max_head_tail_gap: float | None = Field(0.1, ge=0)


def _sample_per_group(groups: np.ndarray, n_groups: int, per_group: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``per_group`` items of each group, drawn without replacement; sorted by group."""
    perm = rng.permutation(len(groups))
    perm = perm[np.argsort(groups[perm], kind="stable")]
    g = groups[perm]
    starts = np.searchsorted(g, np.arange(n_groups))
    rank = np.arange(len(g)) - starts[g]
    return perm[rank < per_group]


@register_audit
class FinetuneTokenShiftAudit(Audit):
    """Which titles fine-tuning moved: the shift of the mean per-token log-probability of item
    answers, fine-tuned minus base LM, by item popularity group, on held-out targets and on a
    fixed sample of catalog items per group, with the head-minus-tail difference."""

    name: ClassVar[str] = "finetune_token_shift"
    dimension: ClassVar[str] = "fairness"
    description: ClassVar[str] = (
        "Δlog p per answer token (fine-tuned minus base LM) by item popularity group, head minus tail"
    )
    needs: ClassVar[str] = (
        "a model with its answer likelihood under the fine-tuned and the base LM "
        "(sequence_likelihood: answer_losses(..., base=True)), e.g. llm_generative"
    )
    config: FinetuneTokenShiftConfig
    config_class = FinetuneTokenShiftConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        gap = capability_gap(inputs.model, "sequence_likelihood")
        if gap is not None:
            return f"{gap}: no answer likelihood under a fine-tuned and a base LM to compare"
        return None

    def _shift(self, inputs: AuditInputs, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        llm: Any = inputs.model  # the sequence_likelihood capability: answer_losses is not on Recommender
        queries = inputs.queries[rows]
        tuned = np.asarray(llm.answer_losses(queries, items, base=False), np.float64)
        base = np.asarray(llm.answer_losses(queries, items, base=True), np.float64)
        return {"tuned_loss": tuned, "base_loss": base, "delta": base - tuned}

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        warnings: list[str] = []
        pop = inputs.item_popularity.astype(np.float64)
        groups = popularity_groups(pop, c.n_groups, c.group_rule)
        labels = _group_labels(c.n_groups)
        rng = np.random.default_rng(c.seed)
        targets = inputs.eval_set.targets
        t_rows, t_items = targets.row_ids(), np.asarray(targets.values, np.int64)
        c_items = _sample_per_group(groups, c.n_groups, c.items_per_group, rng)
        c_rows = rng.integers(0, len(inputs.queries), len(c_items))
        samples = {
            "targets": (t_rows, t_items, self._shift(inputs, t_rows, t_items)),
            "catalog": (c_rows, c_items, self._shift(inputs, c_rows, c_items)),
        }
        estimates: dict[str, Estimate] = {}
        frames = []
        per_pair = []
        for sample, (rows, items, s) in samples.items():
            g = groups[items]
            delta = s["delta"]
            unit = "users" if sample == "targets" else "items"
            group_est = []
            for k in range(c.n_groups):  # one estimate per group (n_groups, not users or items)
                m = g == k
                desc = f"mean Δlog p per answer token, {sample} in popularity group {labels[k]}"
                if sample == "targets":
                    est = cluster_mean_estimate(delta[m], rows[m], n_boot=c.n_boot, seed=c.seed + k, description=desc)
                else:
                    est = mean_estimate(delta[m], n_boot=c.n_boot, seed=c.seed + k, description=desc)
                group_est.append(est)
                estimates[f"delta_logp_{sample}_g{k + 1}"] = est
            head, tail = g == 0, g == c.n_groups - 1
            estimates[f"head_minus_tail_{sample}"] = two_sample_estimate(
                delta[head],
                delta[tail],
                n_boot=c.n_boot,
                seed=c.seed + c.n_groups,
                description=f"mean Δlog p per token of head-group {sample} minus tail-group {sample} "
                f"(bootstrap over {unit}; Mann-Whitney p-value)",
            )
            counts = np.bincount(g, minlength=c.n_groups)
            frames.append(
                pd.DataFrame(
                    {
                        "sample": sample,
                        "group": labels,
                        "n": counts,
                        "delta_logp": [e.value for e in group_est],
                        "ci_low": [e.ci_low for e in group_est],
                        "ci_high": [e.ci_high for e in group_est],
                        "tuned_logp": -np.bincount(g, np.nan_to_num(s["tuned_loss"]), c.n_groups)
                        / np.maximum(counts, 1),
                        "base_logp": -np.bincount(g, np.nan_to_num(s["base_loss"]), c.n_groups) / np.maximum(counts, 1),
                    }
                )
            )
            per_pair.append(
                pd.DataFrame(
                    {
                        "sample": sample,
                        "user": inputs.queries.users[rows],
                        "item": items,
                        "group": g + 1,
                        "tuned_loss": s["tuned_loss"],
                        "base_loss": s["base_loss"],
                        "delta_logp": delta,
                    }
                )
            )
            missing = [labels[k] for k in range(c.n_groups) if counts[k] == 0]
            if missing:
                warnings.append(f"no {sample} in popularity group(s) {', '.join(missing)}")
        table = pd.concat(frames, ignore_index=True)
        plots = (
            Plot(
                "bar",
                "groups",
                "group",
                "delta_logp",
                "Δlog p per answer token (fine-tuned minus base) by popularity group",
                series="sample",
                x_label="popularity group (1 = head)",
                y_label="Δ mean log-prob per token (nats)",
            ),
        )
        gap = estimates["head_minus_tail_catalog"].value
        summary = (
            "head minus tail Δlog p per token: "
            + (f"{gap:+.3f}" if gap is not None else "not measured")
            + " nats (catalog sample)"
        )
        return self._result(
            estimates,
            evidence={"groups": table, "per_pair": pd.concat(per_pair, ignore_index=True)},
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "group_rule": c.group_rule,
                "group_sizes": np.bincount(groups, minlength=c.n_groups).tolist(),
                "n_target_pairs": len(t_items),
                "n_catalog_items": len(c_items),
            },
        )

    def _thresholds(self, estimates: dict[str, Estimate]) -> list[Threshold]:
        c = self.config
        extra = []
        if c.max_head_tail_gap is not None:
            extra.append(Threshold(estimate="head_minus_tail_catalog", op="<=", limit=c.max_head_tail_gap))
        return [*c.thresholds, *extra]
