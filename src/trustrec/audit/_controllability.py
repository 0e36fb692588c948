"""Controllability audits (user constraints, platform rules, prompt sensitivity) and the position
bias of LLM rankers (a fairness audit that lives here because it shares their machinery).

``user_control``
    Each sampled user states constraints in the query's free text, one request per kind:
    ``exclude_genre`` ("no <the user's second most frequent history genre>", else the catalog's
    most frequent genre that is not their first), ``include_genre`` ("only <a genre drawn by
    catalog frequency among those other than the user's most frequent one>"),
    ``different`` ("something different": none of the user's most frequent genre),
    ``year_before`` / ``year_after`` ("only items released before/after <the decade of the
    median year of their history>") and ``similar`` ("more like <title of their latest item>"),
    plus any configured ``texts``. Texts are parsed by
    :func:`trustrec.mitigate.parse_constraint` (what it does not understand is counted and
    reported). Conditions: ``unconstrained`` (the model's own lists, no text), ``prompted``
    (the text in the query, models that read a prompt only), ``filtered``
    (:class:`~trustrec.mitigate.ConstrainedRecommender` ``mode="candidates"``: allowed items as
    the query's candidates, the text still in the prompt) and ``post_filtered`` (its
    ``post_filter`` mode). Per condition and kind: **constraint satisfaction** (share of the
    returned items that satisfy the request's constraints; requests no item satisfies, and lists
    with no item, are left out and counted), the **fill rate** (returned items / K), **accuracy
    retained on constraint-compatible targets** (NDCG@K and HR@K against only the targets
    that satisfy the request, as a ratio to the unconstrained lists on the same requests; users
    with no compatible target are left out) and the **latency of control** (seconds per request
    of each condition against the uncontrolled call, in the ``cost`` evidence: timings vary
    between runs, so they are not estimates). CIs resample users (a user's requests together).

``platform_rules``
    A rule set (blocked items: the configured raw ids, else the ``n_blocked`` most popular
    training items as a stress test; an exposure cap: no item in more than
    ``max_exposure_share`` of the sampled users' lists) checked on the model's lists, then
    enforced by :class:`~trustrec.mitigate.RuleEnforcedRecommender` over all sampled users in
    one call: violations before and after (slots showing a blocked item, slots above a cap),
    accuracy cost (paired NDCG@K / HR@K change with CIs), fill rate and exposure Gini.

``prompt_sensitivity``
    For recommenders that read a prompt (capability ``text`` and a ``template`` in their config):
    the same users asked under the model's template and under at least five paraphrases that say
    the same thing (shipped as data in ``models/llm/assets/prompt-paraphrases/paraphrases.yaml``,
    one set for candidate rankers and one for generative models, or given in the config; a
    paraphrase must keep the template's slots). Top-K stability: Jaccard@K and rank-biased
    overlap (RBO_ext, :func:`~trustrec.eval.rank_biased_overlap`) to the default
    template's list and between every pair of templates; accuracy spread: max - min (and the
    population std) over templates of mean NDCG@K and HR@K; the share of users whose top-1 is
    the same under every template. CIs are seeded bootstraps over users.

``position_bias`` (dimension ``fairness``)
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
from itertools import combinations
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.data import QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.eval._stats import (
    cluster_mean_estimate,
    cluster_ratio_estimate,
    paired_estimate,
    percentile_ci,
    wilson_interval,  # re-exported: it lived here
)
from trustrec.models._protocols import has_capability

__all__ = ["UserControlConfig", "UserControlAudit", "PlatformRulesConfig", "PlatformRulesAudit",
           "PromptSensitivityConfig", "PromptSensitivityAudit", "PositionBiasConfig", "PositionBiasAudit",
           "constraint_requests", "load_paraphrases", "uniform_position_test", "equal_rate_test",
           "wilson_interval", "CONSTRAINT_KINDS"]

CONSTRAINT_KINDS = ("exclude_genre", "include_genre", "year_before", "year_after", "similar", "different")
ConstraintKind = Literal["exclude_genre", "include_genre", "year_before", "year_after", "similar", "different"]
_GROUP_KINDS = {"exclude_genre", "include_genre", "similar", "different"}
_YEAR_KINDS = {"year_before", "year_after"}
_CONDITION = {"candidates": "filtered", "post_filter": "post_filtered"}


# -- shared helpers ------------------------------------------------------------------------------------------
def _recommend(model, queries: QueryBatch, k: int, batch_size: int, *, exclude_seen: bool = True) -> np.ndarray:
    parts = [model.recommend(b, k, exclude_seen=exclude_seen).items for b in queries.batches(batch_size)]
    if not parts:
        return np.empty((0, k), np.int64)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in parts])


def _unique_counts(targets: Ragged, n_items: int) -> np.ndarray:
    keys = np.unique(targets.row_ids() * n_items + targets.values)
    return np.bincount(keys // n_items, minlength=len(targets))


def _accuracy(top: np.ndarray, targets: Ragged, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row NDCG and HR of ``top`` against ``targets`` (NaN for a row with no target)."""
    from trustrec.eval import hit_rate, hits_matrix, ndcg

    hits = hits_matrix(top, targets, n_items)
    n_rel = _unique_counts(targets, n_items)
    return ndcg(hits, n_rel), hit_rate(hits, n_rel)


def _reads_prompt(model) -> bool:
    config = getattr(model, "config", None)
    return "text" in getattr(model, "capabilities", frozenset()) and "template" in type(config).model_fields \
        if config is not None else False


def _with_config(model, **changes):
    """A shallow copy of a fitted ``model`` (fitted state and backend shared, not copied) whose
    config has ``changes``; the model itself is unchanged."""
    import copy

    clone = copy.copy(model)
    clone.config = type(model.config).model_validate({**model.config.model_dump(), **changes})
    return clone


def _fixed_set_warning(model, k: int, what: str) -> list[str]:
    """A ranker that re-orders only its retriever's ``n_candidates`` shows the same top-K set
    whatever it reads when ``k >= n_candidates``."""
    n = getattr(getattr(model, "config", None), "n_candidates", None)
    if isinstance(n, int) and k >= n and callable(getattr(model, "score_candidates", None)):
        return [(f"the model re-orders only its retriever's {n} candidates and k={k} >= {n}: the top-{k} set is "
                 f"the same whatever the prompt says, so {what}; use k < n_candidates")]
    return []


def _item_catalog(inputs: AuditInputs, group_column: str | None, year_column: str | None):
    from trustrec.mitigate._control import ControlCatalog

    ds = inputs.dataset
    return ControlCatalog.from_items(ds.items, n_items=ds.n_items, group_column=group_column, year_column=year_column)


# -- user-initiated control ------------------------------------------------------------------------------------
def constraint_requests(catalog, histories: Ragged, kinds=CONSTRAINT_KINDS, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Per kind (see the module docstring), an object array with one request text per history
    row (None where the kind cannot be asked of that user: no group or year column, or no titled
    latest item for ``similar``). Vectorised over users; seeded."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n, n_items = len(histories), catalog.n_items
    m = catalog.membership
    names = np.array([g.lower() for g in catalog.group_names], dtype=object)
    none = np.full(n, None, dtype=object)
    out: dict[str, np.ndarray] = {}
    h = sp.csr_matrix((np.ones(len(histories.values)), (histories.row_ids(), histories.values)), shape=(n, n_items))
    if m.shape[1]:
        counts = np.asarray((h @ sp.csr_matrix(m, dtype=np.float64)).todense())
        order = np.argsort(-counts, axis=1, kind="stable")
        rows = np.arange(n)
        freq = m.sum(0).astype(np.float64)
        top1, top2 = order[:, 0], order[:, min(1, m.shape[1] - 1)]
        has1 = counts[rows, top1] > 0
        # "only <g>": g drawn by catalog frequency among the groups other than the user's top one
        weights = np.tile(freq, (n, 1))
        if m.shape[1] > 1:
            weights[rows[has1], top1[has1]] = 0
        cum = np.cumsum(weights, 1)
        include = np.minimum((cum < rng.random(n)[:, None] * cum[:, -1:]).sum(1), m.shape[1] - 1)
        by_freq = np.argsort(-freq, kind="stable")
        exclude = np.where((counts[rows, top2] > 0) & (top2 != top1), top2,
                           np.where(by_freq[0] != top1, by_freq[0], by_freq[min(1, len(by_freq) - 1)]))
        out["exclude_genre"] = "no " + names[exclude]
        out["include_genre"] = "only " + names[include]
        out["different"] = np.full(n, "something different", dtype=object)
        last = np.where(histories.lengths > 0, histories.values[np.maximum(histories.indptr[1:] - 1, 0)]
                        if len(histories.values) else 0, -1)
        titles = np.array(catalog.titles, dtype=object)
        resolvable = np.zeros(n_items, bool)
        for i in np.unique(last[last >= 0]):
            resolvable[i] = bool(str(titles[i]).strip()) and bool(catalog.items_titled(str(titles[i])))
        ok = (last >= 0) & resolvable[np.maximum(last, 0)]
        out["similar"] = np.where(ok, "more like " + titles[np.maximum(last, 0)], None)
    if catalog.year_column is not None and not np.isnan(catalog.years).all():
        years = catalog.years[histories.values]
        med = pd.Series(years).groupby(histories.row_ids()).median().reindex(range(n)).to_numpy()
        med = np.where(np.isnan(med), np.nanmedian(catalog.years), med)
        decade = (np.floor(med / 10) * 10).astype(np.int64).astype(str).astype(object)
        out["year_before"] = "only items released before " + decade
        out["year_after"] = "only items released after " + decade
    return {k: out.get(k, none) for k in kinds}


class UserControlConfig(AuditConfig):
    """``kinds``: the generated requests (module docstring); ``texts``: requests asked of every
    user in addition; ``modes``: the enforcement modes measured (none: only the model's own lists,
    unconstrained and prompted); ``n_candidates``: the ``post_filter`` depth;
    ``item_group_column`` / ``year_column``: catalog columns (None: guessed);
    ``min_satisfaction``: threshold on every controlled condition's satisfaction (prompted
    included: an LLM that ignores a request fails it)."""

    kinds: tuple[ConstraintKind, ...] = CONSTRAINT_KINDS
    texts: tuple[str, ...] = ()
    modes: tuple[Literal["candidates", "post_filter"], ...] = ("candidates", "post_filter")
    n_candidates: PositiveInt = 100
    item_group_column: str | None = None
    year_column: str | None = None
    min_similarity: float = Field(0.5, gt=0, le=1)
    max_users: PositiveInt | None = 100
    batch_size: PositiveInt = 256
    min_satisfaction: float | None = Field(0.95, ge=0, le=1)

    @model_validator(mode="after")
    def _something_to_ask(self):
        if not self.kinds and not self.texts:
            raise ValueError("give at least one request: kinds or texts")
        if len(set(self.kinds)) != len(self.kinds) or len(set(self.modes)) != len(self.modes):
            raise ValueError("kinds and modes must not repeat")
        return self


@register_audit
class UserControlAudit(Audit):
    """Natural-language constraints from users: satisfaction, accuracy on compatible targets and
    latency, for the model as is, prompted, and with constraint filtering (module docstring)."""

    name: ClassVar[str] = "user_control"
    dimension: ClassVar[str] = "controllability"
    description: ClassVar[str] = ("user constraints in the query text ('no horror', 'before 1980', 'more like X', "
                                  "'something different'): satisfaction, accuracy kept, latency of filtering")
    needs: ClassVar[str] = "an items table with a genre/category and/or year column (or configured texts)"
    config_class = UserControlConfig

    def _kinds(self, catalog) -> tuple[list[str], list[str]]:
        usable, skipped = [], []
        for kind in self.config.kinds:
            ok = (catalog.membership.shape[1] > 0) if kind in _GROUP_KINDS else (catalog.year_column is not None)
            (usable if ok else skipped).append(kind)
        return usable, skipped

    def _why_not(self, inputs: AuditInputs) -> str | None:
        c = self.config
        if inputs.dataset.items is None and not c.texts:
            return f"dataset {inputs.dataset.name!r} has no items table to state constraints over"
        catalog = _item_catalog(inputs, c.item_group_column, c.year_column)
        if not self._kinds(catalog)[0] and not c.texts:
            return (f"dataset {inputs.dataset.name!r} has no item group (genre, category) or year column for the "
                    f"requests {list(c.kinds)}; set item_group_column / year_column or give texts")
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.mitigate._control import ConstrainedRecommender, allowed_items

        c = self.config
        model, queries, k = inputs.model, inputs.queries, c.k
        n_items = inputs.dataset.n_items
        settings = {"n_candidates": c.n_candidates, "item_group_column": c.item_group_column,
                    "year_column": c.year_column, "min_similarity": c.min_similarity}
        parser = ConstrainedRecommender.from_fitted(model, inputs.split, **settings)
        wrappers = {mode: ConstrainedRecommender.from_fitted(model, inputs.split, mode=mode, **settings)
                    for mode in c.modes}
        catalog = parser.catalog()
        kinds, skipped_kinds = self._kinds(catalog)
        requests = constraint_requests(catalog, queries.histories, kinds, seed=c.seed)
        for text in c.texts:
            requests[text] = np.full(len(queries), text, dtype=object)
        labels = list(requests)
        table = np.stack([requests[lab] for lab in labels]) if labels else np.empty((0, len(queries)), object)
        kind_idx, uidx = np.nonzero(table != None)          # elementwise on an object array: asked pairs
        order = np.lexsort((kind_idx, uidx))                 # a user's requests together
        kind_idx, uidx = kind_idx[order], uidx[order]
        texts = table[kind_idx, uidx]
        kind = np.array(labels, dtype=object)[kind_idx]
        n_not_asked = int((table == None).sum())
        asked = QueryBatch(queries.users[uidx], queries.histories.take(uidx), None, tuple(texts))
        parsed = parser.parse(list(texts), catalog)

        lists: dict[str, np.ndarray] = {"unconstrained": inputs.topk[:, :k][uidx]}
        cost_rows = []
        t0 = time.perf_counter()
        uncontrolled = _recommend(model, asked, k, c.batch_size)
        base_seconds = time.perf_counter() - t0
        cost_rows.append({"condition": "prompted" if _reads_prompt(model) else "uncontrolled",
                          "seconds": base_seconds})
        if _reads_prompt(model):
            lists["prompted"] = uncontrolled
        for mode, wrapper in wrappers.items():
            t0 = time.perf_counter()
            lists[_CONDITION[mode]] = _recommend(wrapper, asked, k, c.batch_size)
            seconds = time.perf_counter() - t0
            cost_rows.append({"condition": _CONDITION[mode], "seconds": seconds})

        # what each list satisfies, and accuracy on the targets compatible with each request
        n_rows = len(asked)
        conditions = list(lists)
        sat = {cond: np.full(n_rows, np.nan) for cond in conditions}
        fill = {cond: np.full(n_rows, np.nan) for cond in conditions}
        acc = {cond: (np.full(n_rows, np.nan), np.full(n_rows, np.nan)) for cond in conditions}
        n_allowed = np.zeros(n_rows, np.int64)
        n_compatible = np.zeros(n_rows, np.int64)
        targets = inputs.eval_set.targets.take(uidx)
        n_con = np.array([len(p.constraints) for p in parsed], np.int64)
        for start in range(0, n_rows, c.batch_size):
            sl = np.arange(start, min(start + c.batch_size, n_rows))
            allowed = allowed_items([parsed[i] for i in sl], catalog, asked.histories.take(sl))
            n_allowed[sl] = allowed.sum(1)
            tgt = targets.take(sl)
            keep = allowed[tgt.row_ids(), tgt.values]
            lengths = np.bincount(tgt.row_ids()[keep], minlength=len(sl))
            compatible = Ragged(np.concatenate([[0], np.cumsum(lengths)]), tgt.values[keep])
            n_compatible[sl] = _unique_counts(compatible, n_items)
            measurable = (n_con[sl] > 0) & (n_allowed[sl] > 0)
            for cond in conditions:
                items = lists[cond][sl]
                valid = items >= 0
                ok = allowed[np.arange(len(sl))[:, None], np.where(valid, items, 0)] & valid
                returned = valid.sum(1)
                sat[cond][sl] = np.where(measurable & (returned > 0), ok.sum(1) / np.maximum(returned, 1), np.nan)
                fill[cond][sl] = returned / k
                nd, hr = _accuracy(items, compatible, n_items)
                acc[cond][0][sl], acc[cond][1][sl] = nd, hr
        unsatisfiable = (n_con > 0) & (n_allowed == 0)

        # estimates
        estimates: dict[str, Estimate] = {}
        users = uidx
        controlled = [cond for cond in conditions if cond != "unconstrained"]
        for j, cond in enumerate(conditions):
            estimates[f"satisfaction@{k} [{cond}]"] = cluster_mean_estimate(
                sat[cond], users, n_boot=c.n_boot, seed=c.seed + j,
                description=f"share of returned items satisfying the request's constraints ({_describe(cond)}); "
                            "unsatisfiable requests and empty lists left out")
        for j, cond in enumerate(controlled):
            for metric, pos in (("ndcg", 0), ("hr", 1)):
                estimates[f"{metric}@{k} retained [{cond}]"] = cluster_ratio_estimate(
                    acc[cond][pos], acc["unconstrained"][pos], users, n_boot=c.n_boot, seed=c.seed + 10 + j,
                    description=f"mean {metric.upper()}@{k} on constraint-compatible targets, {cond} / unconstrained "
                                "lists of the same requests")
            estimates[f"fill@{k} [{cond}]"] = cluster_mean_estimate(
                fill[cond], users, n_boot=c.n_boot, seed=c.seed + 20 + j, description=f"returned items / {k}")
        estimates["unsatisfiable_share"] = cluster_mean_estimate(
            unsatisfiable.astype(float), users, n_boot=c.n_boot, seed=c.seed + 30,
            description="share of requests whose constraints no item satisfies")
        understood = np.array([p.structured and p.complete for p in parsed], dtype=float)
        estimates["understood_share"] = cluster_mean_estimate(
            understood, users, n_boot=c.n_boot, seed=c.seed + 31,
            description="share of request texts parsed completely into constraints")
        per_kind_rows = []
        for li, lab in enumerate(labels):
            rows = kind == lab
            if not rows.any():
                continue
            for j, cond in enumerate(conditions):
                est = cluster_mean_estimate(
                    sat[cond][rows], users[rows], n_boot=c.n_boot, seed=c.seed + 100 + li * 10 + j,
                    description=f"satisfaction of '{lab}' requests ({_describe(cond)})")
                estimates[f"satisfaction@{k} [{cond}, {lab}]"] = est
                nd = acc[cond][0][rows]
                per_kind_rows.append({
                    "kind": lab, "condition": cond, "satisfaction": est.value, "ci_low": est.ci_low,
                    "ci_high": est.ci_high, "n_requests": int(rows.sum()), "n_measured": est.n,
                    "n_unsatisfiable": int(unsatisfiable[rows].sum()), "fill": float(np.nanmean(fill[cond][rows])),
                    f"ndcg@{k}_compatible": float(np.nanmean(nd)) if (~np.isnan(nd)).any() else np.nan,
                    "n_compatible_users": int((~np.isnan(nd)).sum())})
        cost = pd.DataFrame(cost_rows)
        cost["n_requests"] = n_rows
        cost["ms_per_request"] = 1000 * cost.seconds / max(n_rows, 1)
        cost["overhead"] = cost.seconds / base_seconds if base_seconds > 0 else np.nan
        request_table = pd.DataFrame({
            "user": asked.users, "kind": kind, "text": texts, "constraints": [p.describe() for p in parsed],
            "unparsed": [" | ".join(p.unparsed) for p in parsed], "n_allowed": n_allowed,
            "unsatisfiable": unsatisfiable, "n_compatible_targets": n_compatible,
            **{f"satisfaction_{cond}": sat[cond] for cond in conditions}})
        evidence = {"satisfaction": pd.DataFrame(per_kind_rows), "requests": request_table, "cost": cost}
        plots = (Plot("bar", "satisfaction", "kind", "satisfaction", f"constraint satisfaction@{k} by request kind",
                      series="condition", ci_low="ci_low", ci_high="ci_high", y_label="share of items satisfying"),
                 Plot("bar", "cost", "condition", "ms_per_request", "latency of control",
                      y_label="ms per request"))

        warnings = _fixed_set_warning(model, k, "prompting cannot change satisfaction@K") if "prompted" in lists \
            else []
        if skipped_kinds:
            warnings.append(f"requests {skipped_kinds} not asked: the catalog has no "
                            + ("group column" if set(skipped_kinds) & _GROUP_KINDS else "year column"))
        if n_not_asked:
            warnings.append(f"{n_not_asked} (user, request) pairs not asked (e.g. 'similar' for a user whose latest "
                            "item has no title the parser can find)")
        if unsatisfiable.any():
            example = texts[np.flatnonzero(unsatisfiable)[0]]
            warnings.append(f"{int(unsatisfiable.sum())} of {n_rows} requests have constraints that no item satisfies "
                            f"(e.g. {example!r}): their controlled lists are empty and they are left out of "
                            "satisfaction")
        not_understood = np.flatnonzero(understood == 0)
        if len(not_understood):
            p = parsed[not_understood[0]]
            warnings.append(f"{len(not_understood)} request texts were not fully understood (e.g. {p.text!r}: "
                            f"{'; '.join(p.unparsed) or 'no constraint found'}); see the requests evidence")
        e = estimates
        best = controlled[-1] if controlled else "unconstrained"
        parts = [f"{cond} {e[f'satisfaction@{k} [{cond}]'].value:.3f}" for cond in conditions
                 if e[f"satisfaction@{k} [{cond}]"].value is not None]
        summary = f"satisfaction@{k}: " + ", ".join(parts)
        ret = e.get(f"ndcg@{k} retained [{best}]")
        if ret is not None and ret.value is not None:
            summary += f"; NDCG@{k} on compatible targets x{ret.value:.2f} ({best})"
        if len(cost) > 1 and base_seconds > 0:
            summary += "; latency " + ", ".join(f"{r.condition} x{r.overhead:.2f}" for r in cost.iloc[1:].itertuples())
        return self._result(estimates, evidence=evidence, plots=plots, warnings=tuple(warnings), summary=summary,
                            settings={"conditions": conditions, "requests": labels, "n_requests": n_rows,
                                      "group_column": catalog.group_column, "year_column": catalog.year_column,
                                      "reads_prompt": _reads_prompt(model)})

    def _thresholds(self, estimates):
        extra = []
        if self.config.min_satisfaction is not None:
            extra = [Threshold(estimate=name, op=">=", limit=self.config.min_satisfaction)
                     for name in estimates if name.startswith(f"satisfaction@{self.config.k} [")
                     and "," not in name and "[unconstrained]" not in name]
        return [*self.config.thresholds, *extra]


def _describe(condition: str) -> str:
    return {"unconstrained": "the model's lists without the request",
            "prompted": "the request in the prompt, no filtering",
            "filtered": "allowed items as the query's candidates, the request still in the query",
            "post_filtered": "the model's deeper list with violators dropped"}.get(condition, condition)


# -- system-initiated control -------------------------------------------------------------------------------------
class PlatformRulesConfig(AuditConfig):
    """``blocked_items``: raw item ids (None: the ``n_blocked`` most popular training items);
    ``max_exposure_share``: the cap (None: none); ``n_candidates``: enforcement depth;
    ``max_violation_share``: threshold on the enforced lists' share of violating slots."""

    blocked_items: tuple[str, ...] | None = None
    n_blocked: NonNegativeInt = 10
    max_exposure_share: float | None = Field(0.05, gt=0, le=1)
    n_candidates: PositiveInt = 100
    max_violation_share: float | None = Field(0.0, ge=0, le=1)


@register_audit
class PlatformRulesAudit(Audit):
    """Platform rules (blocked items, exposure caps): violations of the model's lists, and after
    enforcement by a wrapper, with the accuracy it costs (module docstring)."""

    name: ClassVar[str] = "platform_rules"
    dimension: ClassVar[str] = "controllability"
    description: ClassVar[str] = ("platform rules (blocked items, per-item exposure caps): violations before and "
                                  "after enforcement, accuracy cost")
    needs: ClassVar[str] = "any model"
    config_class = PlatformRulesConfig

    def _blocked_ids(self, inputs: AuditInputs) -> list[str]:
        c = self.config
        if c.blocked_items is not None:
            return list(c.blocked_items)
        pop = inputs.item_popularity
        order = np.lexsort((np.arange(len(pop)), -pop))[:c.n_blocked]
        return [str(x) for x in inputs.dataset.item_ids[order]]

    def _why_not(self, inputs: AuditInputs) -> str | None:
        c = self.config
        if c.max_exposure_share is None and not self._blocked_ids(inputs):
            return "no rule to check: no blocked items and no exposure cap"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import gini
        from trustrec.mitigate._control import RuleEnforcedRecommender

        c = self.config
        k, n_items = c.k, inputs.dataset.n_items
        ids = self._blocked_ids(inputs)
        wrapper = RuleEnforcedRecommender.from_fitted(inputs.model, inputs.split, blocked_items=tuple(ids),
                                                      max_exposure_share=c.max_exposure_share,
                                                      n_candidates=c.n_candidates)
        rules = wrapper.rules
        before = inputs.topk[:, :k]
        t0 = time.perf_counter()
        after = wrapper.recommend(inputs.queries, k).items             # one call: the caps cover every user
        seconds = time.perf_counter() - t0
        vb, va = rules.violations(before, n_items), rules.violations(after, n_items)
        users = inputs.queries.users
        targets = inputs.eval_set.targets
        nd_b, hr_b = _accuracy(before, targets, n_items)
        nd_a, hr_a = _accuracy(after, targets, n_items)
        estimates: dict[str, Estimate] = {}
        for label, v, top in (("base", vb, before), ("enforced", va, after)):
            per_list = v["blocked_per_list"].astype(float)
            estimates[f"violation_share [{label}]"] = Estimate(
                v["violating_slots"] / max(v["slots"], 1), n=v["slots"],
                description="slots showing a blocked item or above an item's exposure cap, over all slots")
            estimates[f"lists_with_blocked [{label}]"] = cluster_mean_estimate(
                (per_list > 0).astype(float), users, n_boot=c.n_boot, seed=c.seed,
                description=f"share of lists showing at least one of the {len(rules.blocked)} blocked items")
            estimates[f"items_over_cap [{label}]"] = Estimate(
                v["items_over_cap"], n=n_items, description=f"items in more than {v['cap']} lists (the cap)"
                if v["cap"] is not None else "no cap set")
            estimates[f"exposure_gini [{label}]"] = Estimate(
                gini(np.bincount(top[top >= 0], minlength=n_items)), n=len(top),
                description="Gini of recommendation counts over the catalog")
        for metric, b, a, seed in (("ndcg", nd_b, nd_a, 1), ("hr", hr_b, hr_a, 2)):
            estimates[f"{metric}@{k} change"] = paired_estimate(
                a, b, n_boot=c.n_boot, seed=c.seed + seed, test=True,
                description=f"enforced minus base {metric.upper()}@{k} per user (Wilcoxon p)")
            estimates[f"{metric}@{k} retained"] = cluster_ratio_estimate(
                a, b, users, n_boot=c.n_boot, seed=c.seed + seed,
                description=f"mean {metric.upper()}@{k} enforced / base")
        estimates[f"fill@{k} [enforced]"] = cluster_mean_estimate(
            (after >= 0).sum(1) / k, users, n_boot=c.n_boot, seed=c.seed + 3,
            description=f"returned items / {k} after enforcement")
        kinds = ("blocked_slots", "excess_slots", "items_over_cap", "lists_with_blocked")
        violations = pd.DataFrame([{"violation": kind, "condition": label, "count": v[kind]}
                                   for label, v in (("base", vb), ("enforced", va)) for kind in kinds])
        exposure = np.bincount(before[before >= 0], minlength=n_items)
        top_items = np.argsort(-exposure, kind="stable")[:20]
        exposure_table = pd.DataFrame({
            "item": top_items, "item_id": inputs.dataset.item_ids[top_items].astype(str),
            "base": exposure[top_items], "enforced": np.bincount(after[after >= 0], minlength=n_items)[top_items],
            "blocked": np.isin(top_items, rules.blocked), "cap": -1 if vb["cap"] is None else vb["cap"]})
        cost = pd.DataFrame([{"condition": "enforced", "seconds": seconds, "n_users": len(after),
                              "ms_per_user": 1000 * seconds / max(len(after), 1)}])
        evidence = {"violations": violations, "exposure": exposure_table, "cost": cost,
                    "per_user": pd.DataFrame({"user": users, "blocked_base": vb["blocked_per_list"],
                                              "blocked_enforced": va["blocked_per_list"], f"ndcg@{k}_base": nd_b,
                                              f"ndcg@{k}_enforced": nd_a})}
        plots = (Plot("bar", "violations", "violation", "count",
                      "platform rule violations before and after enforcement", series="condition", y_label="count"),)
        warnings = []
        unknown = list(wrapper.unknown_blocked_)
        if unknown:
            warnings.append(f"{len(unknown)} blocked ids are not in the catalog and were skipped: {unknown[:5]}")
        short = int(((after >= 0).sum(1) < min(k, n_items)).sum())
        if short:
            warnings.append(f"{short} of {len(after)} enforced lists are shorter than {k}: the rules left too few "
                            f"items in the base's top {wrapper.depth(k)}")
        e = estimates
        summary = (f"violating slots {e['violation_share [base]'].value:.3f} -> "
                   f"{e['violation_share [enforced]'].value:.3f} ({len(rules.blocked)} blocked, cap {vb['cap']}); "
                   f"NDCG@{k} retained x{e[f'ndcg@{k} retained'].value:.3f}"
                   if e[f"ndcg@{k} retained"].value is not None else
                   f"violating slots {e['violation_share [base]'].value:.3f} -> "
                   f"{e['violation_share [enforced]'].value:.3f}")
        return self._result(estimates, evidence=evidence, plots=plots, warnings=tuple(warnings), summary=summary,
                            settings={"blocked_items": ids, "cap": vb["cap"], "n_blocked_in_catalog":
                                      len(rules.blocked)})

    def _thresholds(self, estimates):
        extra = ([Threshold(estimate="violation_share [enforced]", op="<=", limit=self.config.max_violation_share)]
                 if self.config.max_violation_share is not None else [])
        return [*self.config.thresholds, *extra]


# -- prompt sensitivity ---------------------------------------------------------------------------------------------
_PARAPHRASE_FIELDS = frozenset({"system", "user", "request", "profile", "item_line", "candidate_line",
                                "history_separator", "empty_history", "answer_prefix", "example_block",
                                "example_line", "example_item_separator", "attribute", "attribute_separator"})


def load_paraphrases(kind: Literal["ranker", "generative"]) -> tuple[dict[str, str], ...]:
    """The shipped paraphrase templates (``name`` + template fields) for candidate rankers or
    generative recommenders."""
    from importlib import resources

    from trustrec._safeio import load_yaml

    path = resources.files("trustrec.models.llm").joinpath("assets", "prompt-paraphrases", "paraphrases.yaml")
    data = load_yaml(path.read_bytes(), what=str(path))
    if kind not in data:
        raise ConfigError(f"load_paraphrases: kind must be one of {sorted(data)}; got {kind!r}")
    return tuple(dict(p) for p in data[kind])


def _prompt_template(model):
    from trustrec.models.llm._prompts import PromptTemplate

    config = model.config
    if callable(getattr(config, "prompt_template", None)):
        return config.prompt_template()
    return PromptTemplate.from_dict(config.template)


class PromptSensitivityConfig(AuditConfig):
    """``paraphrases``: templates (each a ``name`` plus template fields merged over the model's
    own template) to compare with the default; None: the shipped set for the model's prompt kind;
    ``rbo_p``: RBO persistence; ``min_jaccard``: threshold on the mean Jaccard@K to the default."""

    paraphrases: tuple[dict[str, str], ...] | None = None
    max_users: PositiveInt | None = 100
    rbo_p: float = Field(0.9, gt=0, lt=1)
    batch_size: PositiveInt = 64
    min_jaccard: float | None = Field(0.5, ge=0, le=1)

    @field_validator("paraphrases")
    @classmethod
    def _check_paraphrases(cls, value):
        if value is None:
            return value
        if not value:
            raise ValueError("give at least one paraphrase (or None for the shipped set)")
        names = []
        for i, p in enumerate(value):
            unknown = set(p) - _PARAPHRASE_FIELDS - {"name"}
            if unknown:
                raise ValueError(f"paraphrase {i}: unknown field(s) {sorted(unknown)}; allowed: "
                                 f"name, {', '.join(sorted(_PARAPHRASE_FIELDS))}")
            names.append(str(p.get("name", f"paraphrase_{i + 1}")))
        if len(set(names)) != len(names) or "default" in names:
            raise ValueError(f"paraphrase names must be distinct and not 'default'; got {names}")
        return value


@register_audit
class PromptSensitivityAudit(Audit):
    """Top-K stability and accuracy spread of an LLM recommender across equivalent prompts."""

    name: ClassVar[str] = "prompt_sensitivity"
    dimension: ClassVar[str] = "controllability"
    description: ClassVar[str] = ("top-K stability (Jaccard@K, RBO) and accuracy spread of an LLM recommender over "
                                  "paraphrased, equivalent prompt templates")
    needs: ClassVar[str] = "a recommender that reads a prompt (an LLM recommender with a template)"
    config_class = PromptSensitivityConfig

    def _paraphrases(self, model) -> list[dict[str, str]]:
        from trustrec.models.llm._prompts import PromptTemplate, template_slots

        own = _prompt_template(model)
        slots = template_slots(own.user)
        chosen = self.config.paraphrases
        if chosen is None:
            chosen = load_paraphrases("ranker" if "candidates" in slots else "generative")
        out = []
        for i, p in enumerate(chosen):
            fields = {key: value for key, value in p.items() if key != "name"}
            merged = {**own.model_dump(), **fields}
            PromptTemplate.from_dict(merged)                 # raises ConfigError on a bad slot
            if template_slots(merged["user"]) != slots:
                raise ConfigError(f"{self.name}: paraphrase {p.get('name', i + 1)!r} has user slots "
                                  f"{sorted(template_slots(merged['user']))} but the model's prompt has "
                                  f"{sorted(slots)}; a paraphrase must say the same things")
            out.append({"name": str(p.get("name", f"paraphrase_{i + 1}")), "fields": fields})
        return out

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        if not _reads_prompt(model):
            name = getattr(model, "name", "") or type(model).__name__
            return f"{name} reads no prompt: only LLM recommenders with a prompt template can be asked differently"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import rank_biased_overlap
        from trustrec.eval import jaccard_at_k

        c = self.config
        model, queries, k = inputs.model, inputs.queries, c.k
        n_items = inputs.dataset.n_items
        paraphrases = self._paraphrases(model)
        names = ["default"] + [p["name"] for p in paraphrases]
        lists = [inputs.topk[:, :k]]
        seconds = []
        for p in paraphrases:
            variant = _with_config(model, template={**model.config.template, **p["fields"]})
            t0 = time.perf_counter()
            lists.append(_recommend(variant, queries, k, c.batch_size)[:, :k])
            seconds.append(time.perf_counter() - t0)
        n, t = len(queries), len(names)
        targets = inputs.eval_set.targets
        ndcg = np.empty((n, t))
        hr = np.empty((n, t))
        for j, top in enumerate(lists):
            ndcg[:, j], hr[:, j] = _accuracy(top, targets, n_items)
        jac_default = np.stack([jaccard_at_k(lists[0], lists[j]) for j in range(1, t)], 1)
        rbo_default = np.stack([rank_biased_overlap(lists[0], lists[j], c.rbo_p) for j in range(1, t)], 1)
        pairs = list(combinations(range(t), 2))
        jac_pair = np.stack([jaccard_at_k(lists[a], lists[b]) for a, b in pairs], 1)
        rbo_pair = np.stack([rank_biased_overlap(lists[a], lists[b], c.rbo_p) for a, b in pairs], 1)
        first = np.stack([top[:, 0] for top in lists], 1)
        same_top1 = (first == first[:, :1]).all(1).astype(float)
        users = queries.users
        estimates: dict[str, Estimate] = {
            f"jaccard@{k} to default": cluster_mean_estimate(jac_default.mean(1), users, n_boot=c.n_boot, seed=c.seed,
                                             description=f"mean over {t - 1} paraphrases of Jaccard@{k} to the "
                                                         "default template's list"),
            "rbo to default": cluster_mean_estimate(rbo_default.mean(1), users, n_boot=c.n_boot, seed=c.seed + 1,
                                     description=f"mean RBO_ext (p={c.rbo_p}) to the default template's list"),
            f"jaccard@{k} pairwise": cluster_mean_estimate(jac_pair.mean(1), users, n_boot=c.n_boot, seed=c.seed + 2,
                                           description=f"mean Jaccard@{k} over all {len(pairs)} pairs of templates"),
            "rbo pairwise": cluster_mean_estimate(rbo_pair.mean(1), users, n_boot=c.n_boot, seed=c.seed + 3,
                                   description=f"mean RBO_ext (p={c.rbo_p}) over all pairs of templates"),
            "top1_agreement": cluster_mean_estimate(same_top1, users, n_boot=c.n_boot, seed=c.seed + 4,
                                    description="share of users whose top-1 is the same under every template"),
        }
        rng = np.random.default_rng(c.seed + 5)
        idx = rng.integers(0, n, (c.n_boot, n)) if c.n_boot and n > 1 else None
        for metric, values in (("ndcg", ndcg), ("hr", hr)):
            means = np.nanmean(values, 0)
            spread_ci = std_ci = (None, None)
            if idx is not None:
                boot = np.nanmean(values[idx], 1)                       # (n_boot, t)
                spread_ci = percentile_ci(boot.max(1) - boot.min(1))
                std_ci = percentile_ci(boot.std(1))
            estimates[f"{metric}@{k} spread"] = Estimate(
                float(means.max() - means.min()), *spread_ci, n,
                description=f"best minus worst template's mean {metric.upper()}@{k} "
                            f"({names[int(means.argmax())]} vs {names[int(means.argmin())]})")
            estimates[f"{metric}@{k} std"] = Estimate(float(means.std()), *std_ci, n,
                                                      description=f"population std of mean {metric.upper()}@{k} "
                                                                  f"over {t} templates")
        rows = []
        for j, name in enumerate(names):
            row = {"template": name}
            for label, values, seed in (("ndcg", ndcg[:, j], 10), ("hr", hr[:, j], 20),
                                        ("jaccard_to_default", jac_default[:, j - 1] if j else np.ones(n), 30),
                                        ("rbo_to_default", rbo_default[:, j - 1] if j else np.ones(n), 40)):
                est = cluster_mean_estimate(values, users, n_boot=c.n_boot, seed=c.seed + seed + j, description="")
                row.update({label: est.value, f"{label}_ci_low": est.ci_low, f"{label}_ci_high": est.ci_high})
            row["seconds"] = seconds[j - 1] if j else np.nan
            rows.append(row)
        per_template = pd.DataFrame(rows)
        pairwise = pd.DataFrame({"template_a": [names[a] for a, _ in pairs], "template_b": [names[b] for _, b in pairs],
                                 f"jaccard@{k}": jac_pair.mean(0), "rbo": rbo_pair.mean(0)})
        evidence = {"per_template": per_template, "pairwise": pairwise,
                    "paraphrases": pd.DataFrame({"template": [p["name"] for p in paraphrases],
                                                 "fields": [str(p["fields"]) for p in paraphrases]})}
        plots = (Plot("bar", "per_template", "template", "ndcg", f"NDCG@{k} by prompt template (95% CI)",
                      ci_low="ndcg_ci_low", ci_high="ndcg_ci_high", y_label=f"NDCG@{k}"),
                 Plot("bar", "per_template", "template", "jaccard_to_default",
                      f"Jaccard@{k} to the default template's list", ci_low="jaccard_to_default_ci_low",
                      ci_high="jaccard_to_default_ci_high", y_label="Jaccard"))
        warnings = _fixed_set_warning(model, k, f"Jaccard@{k} is 1 by construction (read RBO and top-1 agreement)")
        if len(paraphrases) < 5:
            warnings.append(f"only {len(paraphrases)} paraphrases: the accuracy spread over templates is coarse "
                            "(at least five are recommended)")
        e = estimates
        summary = (f"{t} templates, {n} users: Jaccard@{k} to default {e[f'jaccard@{k} to default'].value:.3f}, "
                   f"RBO {e['rbo to default'].value:.3f}, NDCG@{k} spread {e[f'ndcg@{k} spread'].value:.4f}, "
                   f"same top-1 {e['top1_agreement'].value:.3f}")
        return self._result(estimates, evidence=evidence, plots=plots, warnings=tuple(warnings), summary=summary,
                            settings={"templates": names, "n_model_calls": len(paraphrases) * n})

    def _thresholds(self, estimates):
        extra = ([Threshold(estimate=f"jaccard@{self.config.k} to default", op=">=", limit=self.config.min_jaccard)]
                 if self.config.min_jaccard is not None else [])
        return [*self.config.thresholds, *extra]


# -- position bias -------------------------------------------------------------------------------------------------
def uniform_position_test(positions, n_positions: int, *, n_resamples: int = 2000,
                          seed: int = 0) -> tuple[float, float, str]:
    """Chi-square goodness of fit of ``positions`` (0-based) to the uniform distribution over
    ``n_positions``: (statistic, p-value, method). When an expected count is under 5 the p-value
    is a Monte Carlo exact test (``n_resamples`` multinomial draws under uniformity)."""
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


def equal_rate_test(positions, success, n_positions: int, *, n_resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, str]:
    """Chi-square test that the success rate is the same at every position (the 2 x positions
    table of successes and failures): (statistic, p-value, method); a permutation test
    (``n_resamples`` shuffles of the outcomes) when an expected count is under 5."""
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

    def statistic(s_j):                                   # s_j: (..., m) successes per position
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
    """``n_candidates``: list length (target + negatives); ``negatives``: ``retrieved`` or
    ``random``; ``n_permutations``: orders averaged by the mitigation (None: the ranker's own when
    above 1, else the list length); ``n_resamples``: draws of the exact tests;
    ``max_position_tv``: threshold on the single-order top-1 position's distance from uniform."""

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
    description: ClassVar[str] = ("LLM ranker position bias: the target's top-1 rate by listed position, tests "
                                  "against uniformity, permutation averaging and its cost in model calls")
    needs: ClassVar[str] = ("a ranker that reads an ordered candidate list (LLM ranker, or capability "
                            "ordered_candidates)")
    config_class = PositionBiasConfig

    @staticmethod
    def _listed(model) -> bool:
        return has_capability(model, "listed_scores") or has_capability(model, "ordered_candidates")

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        if not self._listed(model):
            name = getattr(model, "name", "") or type(model).__name__
            return (f"{name} does not read an ordered candidate list: it scores items on their own, so the order "
                    "of a list cannot reach it (position bias concerns LLM rankers)")
        m = self.config.n_candidates
        free = inputs.dataset.n_items - inputs.queries.histories.lengths - 1
        if not (free >= m - 1).any():
            return (f"no user has {m - 1} unseen items besides the target to list as negatives; lower "
                    "n_candidates")
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
            out[sl] = np.argsort(-score, axis=1, kind="stable")[:, :m - 1]
        return rng.permuted(out, axis=1)

    def _scores(self, model, queries: QueryBatch, lists: np.ndarray, n_orders: int) -> tuple[np.ndarray, str]:
        """``scores[q, p, c]`` of candidate ``lists[q, c]`` in cyclic order ``p`` (order 0 = as
        listed): the ranker's scores, or minus the rank a model gives when asked with the list as
        the query's candidates."""
        from trustrec.models.llm._ranker import cyclic_orders

        bs = self.config.batch_size
        n, m = lists.shape
        if has_capability(model, "listed_scores"):
            parts = [model.score_listed(queries[s:s + bs], lists[s:s + bs], n_orders) for s in range(0, n, bs)]
            return np.concatenate(parts), "llm scores"
        orders = cyclic_orders(np.full(n, m), n_orders, m)
        scores = np.empty((n, n_orders, m))
        indptr = np.arange(0, n * m + 1, m)
        for p in range(n_orders):
            shown = np.take_along_axis(lists, orders[:, p, :], 1)
            top = _recommend(model, queries.with_candidates(Ragged(indptr, shown.ravel())), m, bs,
                             exclude_seen=False)[:, :m]
            eq = top[:, :, None] == lists[:, None, :]                      # (q, rank, candidate)
            scores[:, p, :] = -np.where(eq.any(1), eq.argmax(1), m)
        return scores, "minus rank"

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from scipy.stats import binomtest

        from trustrec.models.llm._ranker import cyclic_orders, position_bias

        c = self.config
        model, m = inputs.model, c.n_candidates
        rng = np.random.default_rng(c.seed)
        free = inputs.dataset.n_items - inputs.queries.histories.lengths - 1
        rows = np.flatnonzero(free >= m - 1)
        n_dropped = len(inputs.queries) - len(rows)
        targets = inputs.eval_set.targets
        target = targets.values[targets.indptr[rows]]                 # each user's first target
        n = len(rows)
        pos = rng.permutation(np.arange(n) % m)                       # stratified uniform positions
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
                hit.astype(float), users, n_boot=c.n_boot, seed=c.seed + ci,
                description=f"share of users whose target is ranked first among {m} listed candidates (HR@1)")
            _stat, p, method = equal_rate_test(pos, hit, m, n_resamples=c.n_resamples, seed=c.seed + ci)
            boot = np.empty((c.n_boot, m))
            brng = np.random.default_rng(c.seed + 10 + ci)
            for jj in range(m):                                        # stratified bootstrap within positions
                members = np.flatnonzero(pos == jj)
                if len(members):
                    draw = brng.integers(0, len(members), (c.n_boot, len(members)))
                    boot[:, jj] = hit[members][draw].mean(1)
                else:
                    boot[:, jj] = np.nan
            spread_ci = percentile_ci(np.nanmax(boot, 1) - np.nanmin(boot, 1)) if c.n_boot else (None, None)
            estimates[f"target_top1_spread [{cond}]"] = Estimate(
                float(np.nanmax(rate) - np.nanmin(rate)), *spread_ci, n, p_value=p,
                description=f"highest minus lowest top-1 rate of the target over its {m} listed positions; p: "
                            f"equal rates at every position ({method})")
            counts = np.bincount(best, minlength=m)
            tv = 0.5 * np.abs(counts / n - 1.0 / m).sum()
            _stat_u, p_u, method_u = uniform_position_test(best, m, n_resamples=c.n_resamples, seed=c.seed + 20 + ci)
            tv_ci = (None, None)
            if c.n_boot:
                draw = np.random.default_rng(c.seed + 30 + ci).integers(0, n, (c.n_boot, n))
                bc = np.bincount((np.arange(c.n_boot)[:, None] * m + best[draw]).ravel(),
                                 minlength=c.n_boot * m).reshape(c.n_boot, m)
                tv_ci = percentile_ci(0.5 * np.abs(bc / n - 1.0 / m).sum(1))
            estimates[f"top1_position_tv [{cond}]"] = Estimate(
                tv, *tv_ci, n, p_value=p_u,
                description=f"total-variation distance of the top-1 item's listed position from uniform over {m} "
                            f"positions (0 = position-blind); p: uniformity ({method_u})")
            first = int((best == 0).sum())
            estimates[f"top1_listed_first [{cond}]"] = Estimate(
                first / n, n=n, p_value=float(binomtest(first, n, 1.0 / m).pvalue),
                description=f"share of lists whose top-1 was listed first (chance {1 / m:.3f}); p: binomial test")
            for jj in range(m):
                curve_rows.append({"position": jj + 1, "condition": cond, "rate": rate[jj], "ci_low": lo[jj],
                                   "ci_high": hi[jj], "n_users": int(n_j[jj]), "n_top1": int(s_j[jj])})
                share_rows.append({"position": jj + 1, "condition": cond, "share": counts[jj] / n})
        overall = estimates["target_top1_rate [single order]"].value
        curve_rows += [{"position": jj + 1, "condition": "no position effect", "rate": overall, "ci_low": np.nan,
                        "ci_high": np.nan, "n_users": int(n_j[jj]), "n_top1": np.nan} for jj in range(m)]
        estimates["model_calls [single order]"] = Estimate(n, n=n, description="list requests (prompts) for one order")
        estimates["model_calls [averaged]"] = Estimate(
            n * n_orders, n=n, description=f"list requests (prompts) for {n_orders} cyclic orders")
        estimates["scored_candidates [averaged]"] = Estimate(
            n * m * n_orders, n=n, description="candidate scores computed over all orders (LLM continuations)")
        evidence = {"curve": pd.DataFrame(curve_rows), "top1_positions": pd.DataFrame(share_rows),
                    "per_user": pd.DataFrame({"user": users, "target": target, "target_position": pos + 1,
                                              **{f"top1_position [{cond}]": best + 1
                                                 for cond, best in outcomes.items()}}),
                    "cost": pd.DataFrame([{"orders": n_orders, "model_calls": n * n_orders, "seconds": seconds,
                                           "ms_per_call": 1000 * seconds / max(n * n_orders, 1)}])}
        if n_orders > 1:
            orders = cyclic_orders(np.full(n, m), n_orders, m)
            positions = np.argsort(orders, axis=-1, kind="stable")
            report = position_bias(scores, positions, np.ones((n, m), bool))
            if report["kendall_tau"] is not None:
                estimates["kendall_tau across orders"] = Estimate(
                    report["kendall_tau"], n=n, description="mean Kendall tau-a between the rankings of the orders "
                                                            "(1 = the listing order never matters)")
            if report["top1_agreement"] is not None:
                estimates["top1_agreement across orders"] = Estimate(
                    report["top1_agreement"], n=n, description="share of users whose best candidate is the same "
                                                               "in every order")
            effect = report["position_effect"]
            evidence["position_effect"] = pd.DataFrame({"position": np.arange(1, len(effect) + 1),
                                                        "score_deviation": effect})
        plots = (Plot("line", "curve", "position", "rate", "target ranked first, by its listed position",
                      series="condition", x_label="listed position of the target", y_label="top-1 rate"),
                 Plot("bar", "top1_positions", "position", "share", "listed position of the top-1 item",
                      series="condition", y_label="share of lists"))
        warnings = []
        if n_dropped:
            warnings.append(f"{n_dropped} users have fewer than {m - 1} unseen items to list as negatives and were "
                            "left out")
        if not self._listed_by_scores(model):
            warnings.append("the model returns rankings, not scores: averaging uses the mean rank over orders")
        e = estimates
        single, spread = e["top1_position_tv [single order]"], e["target_top1_spread [single order]"]
        summary = (f"{n} users, {m} candidates: target top-1 rate {overall:.3f}; spread over positions "
                   f"{spread.value:.3f} (p={spread.p_value:.3g}); "
                   f"top-1 position TV from uniform {single.value:.3f} (p={single.p_value:.3g})")
        if "averaged" in outcomes:
            summary += (f"; averaged over {n_orders} orders: TV {e['top1_position_tv [averaged]'].value:.3f} at "
                        f"{n_orders}x the model calls")
        return self._result(estimates, evidence=evidence, plots=plots, warnings=tuple(warnings), summary=summary,
                            settings={"n_orders": n_orders, "score_scale": scale, "n_users_listed": n,
                                      "negatives": c.negatives})

    @staticmethod
    def _listed_by_scores(model) -> bool:
        return has_capability(model, "listed_scores")

    def _thresholds(self, estimates):
        extra = ([Threshold(estimate="top1_position_tv [single order]", op="<=", limit=self.config.max_position_tv)]
                 if self.config.max_position_tv is not None else [])
        return [*self.config.thresholds, *extra]
