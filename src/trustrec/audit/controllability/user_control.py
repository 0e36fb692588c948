"""``user_control``
Each sampled user states constraints in the query's free text, one request per kind:
``exclude_genre`` ("no <the user's second most frequent history genre>", else the catalog's
most frequent genre that is not their first), ``include_genre`` ("only <a genre drawn by
catalog frequency among those other than the user's most frequent one>"),
``different`` ("something different": none of the user's most frequent genre),
``year_before`` / ``year_after`` ("only items released before/after <the decade of the
median year of their history>") and ``similar`` ("more like <title of their latest item>"),
plus any configured ``texts``. The control mechanism is the ``control`` arm, named in the
config (a ``control`` arm of :mod:`trustrec._arms`; default ``constrained``:
:func:`trustrec.mitigate.parse_constraint` and
:class:`~trustrec.mitigate.ConstrainedRecommender`); it parses the texts (what it does not
understand is counted and reported). Conditions: ``unconstrained`` (the model's own lists, no
text), ``prompted`` (the text in the query, models that read a prompt only), ``filtered``
(the arm's ``mode="candidates"``: allowed items as the query's candidates, the text still in
the prompt) and ``post_filtered`` (its ``post_filter`` mode). Per condition and kind: **constraint satisfaction** (share of the
returned items that satisfy the request's constraints; requests no item satisfies, and lists
with no item, are left out and counted), the **fill rate** (returned items / K), **accuracy
retained on constraint-compatible targets** (NDCG@K and HR@K against only the targets
that satisfy the request, as a ratio to the unconstrained lists on the same requests; users
with no compatible target are left out) and the **latency of control** (seconds per request
of each condition against the uncontrolled call, in the ``cost`` evidence: timings vary
between runs, so they are not estimates). CIs resample users (a user's requests together).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator, model_validator

from trustrec._arms import ArmSpec, build_arm, check_arm_specs
from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.audit.controllability._common import (
    _accuracy,
    _fixed_set_warning,
    _item_catalog,
    _reads_prompt,
    _recommend,
    _unique_counts,
)
from trustrec.data import QueryBatch, Ragged
from trustrec.eval import (
    cluster_mean_estimate,
    cluster_ratio_estimate,  # re-exported: it lived here
)

__all__ = ["CONSTRAINT_KINDS", "UserControlAudit", "UserControlConfig", "constraint_requests"]


ConstraintKind = Literal["exclude_genre", "include_genre", "year_before", "year_after", "similar", "different"]
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = (
    "exclude_genre",
    "include_genre",
    "year_before",
    "year_after",
    "similar",
    "different",
)
_GROUP_KINDS = {"exclude_genre", "include_genre", "similar", "different"}
_YEAR_KINDS = {"year_before", "year_after"}
_CONDITION = {"candidates": "filtered", "post_filter": "post_filtered"}


# -- user-initiated control ------------------------------------------------------------------------------------
def constraint_requests(
    catalog: Any,  # the control arm's catalog (ControlCatalog for the built-in "constrained")
    histories: Ragged,
    kinds: Sequence[str] = CONSTRAINT_KINDS,
    *,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per kind (see the module docstring), an object array with one request text per history
    row (None where the kind cannot be asked of that user: no group or year column, or no titled
    latest item for ``similar``). Vectorised over users; seeded.

    Parameters
    ----------
    catalog : catalog
        The catalog the constraints are stated over (a ``control`` arm's ``catalog()``:
        ``n_items``, ``membership``, ``group_names``, ``titles``, ``years``).
    histories : Ragged
        The users' histories.
    kinds : sequence of str
        The kinds of request generated (see :data:`CONSTRAINT_KINDS`).
    seed : int
        Seed of the random choices.

    Returns
    -------
    dict of str to ndarray
        Per kind, an object array of request texts (None where the kind cannot be asked).
    """
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
        exclude = np.where(
            (counts[rows, top2] > 0) & (top2 != top1),
            top2,
            np.where(by_freq[0] != top1, by_freq[0], by_freq[min(1, len(by_freq) - 1)]),
        )
        out["exclude_genre"] = "no " + names[exclude]
        out["include_genre"] = "only " + names[include]
        out["different"] = np.full(n, "something different", dtype=object)
        last = np.where(
            histories.lengths > 0,
            histories.values[np.maximum(histories.indptr[1:] - 1, 0)] if len(histories.values) else 0,
            -1,
        )
        titles = np.array(catalog.titles, dtype=object)
        resolvable = np.zeros(n_items, bool)
        for i in np.unique(last[last >= 0]):
            resolvable[i] = bool(str(titles[i]).strip()) and bool(catalog.items_titled(str(titles[i])))
        ok = (last >= 0) & resolvable[np.maximum(last, 0)]
        # numpy's stubs reject None, which np.where takes as an object scalar
        out["similar"] = np.where(ok, "more like " + titles[np.maximum(last, 0)], None)  # type: ignore[call-overload]
    assert catalog.years is not None, "ControlCatalog fills years (NaN where unknown)"
    if catalog.year_column is not None and not np.isnan(catalog.years).all():
        years = catalog.years[histories.values]
        med = pd.Series(years).groupby(histories.row_ids()).median().reindex(range(n)).to_numpy()
        med = np.where(np.isnan(med), np.nanmedian(catalog.years), med)
        decade = (np.floor(med / 10) * 10).astype(np.int64).astype(str).astype(object)
        out["year_before"] = "only items released before " + decade
        out["year_after"] = "only items released after " + decade
    return {k: out.get(k, none) for k in kinds}


class UserControlConfig(AuditConfig):
    """Settings of the ``user_control`` audit (its ``max_users`` defaults to 100).

    Parameters
    ----------
    kinds : tuple of str
        The generated requests (module docstring).
    texts : tuple of str
        Requests asked of every user in addition (at least one of ``kinds`` and ``texts``).
    modes : tuple of {"candidates", "post_filter"}
        The enforcement modes measured (none: only the model's own lists, unconstrained and
        prompted).
    n_candidates : int
        The ``post_filter`` depth.
    item_group_column, year_column : str or None
        Catalog columns (None: guessed).
    min_similarity : float
        Passed to the control arm: for the built-in ``constrained``, the least Jaccard
        similarity of item groups to the named item that a ``similar`` request allows.
    batch_size : int
        Queries answered per batch.
    min_satisfaction : float or None
        Threshold on every controlled condition's satisfaction (prompted included: an LLM that
        ignores a request fails it); None: no such threshold.
    control : ArmSpec
        The control mechanism, a ``control`` arm by name (or ``{"name", "params"}``).
    """

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
    control: ArmSpec = ArmSpec(name="constrained")

    @field_validator("control", mode="before")
    @classmethod
    def _check_control(cls, value):
        return check_arm_specs([value], "control")[0]

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
    description: ClassVar[str] = (
        "user constraints in the query text ('no horror', 'before 1980', 'more like X', "
        "'something different'): satisfaction, accuracy kept, latency of filtering"
    )
    needs: ClassVar[str] = "an items table with a genre/category and/or year column (or configured texts)"
    config: UserControlConfig
    config_class = UserControlConfig

    def _kinds(self, catalog) -> tuple[list[str], list[str]]:
        usable: list[str] = []
        skipped: list[str] = []
        for kind in self.config.kinds:
            ok = (catalog.membership.shape[1] > 0) if kind in _GROUP_KINDS else (catalog.year_column is not None)
            (usable if ok else skipped).append(kind)
        return usable, skipped

    def _why_not(self, inputs: AuditInputs) -> str | None:
        c = self.config
        if inputs.dataset.items is None and not c.texts:
            return f"dataset {inputs.dataset.name!r} has no items table to state constraints over"
        catalog = _item_catalog(inputs, build_arm(c.control, "control")[1], c.item_group_column, c.year_column)
        if not self._kinds(catalog)[0] and not c.texts:
            return (
                f"dataset {inputs.dataset.name!r} has no item group (genre, category) or year column for the "
                f"requests {list(c.kinds)}; set item_group_column / year_column or give texts"
            )
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        control = build_arm(c.control, "control")[1]
        model, queries, k = inputs.model, inputs.queries, c.k
        n_items = inputs.dataset.n_items
        settings = {
            "n_candidates": c.n_candidates,
            "item_group_column": c.item_group_column,
            "year_column": c.year_column,
            "min_similarity": c.min_similarity,
        }
        parser = control.constrain(model, inputs.split, **settings)
        wrappers = {mode: control.constrain(model, inputs.split, mode=mode, **settings) for mode in c.modes}
        catalog = parser.catalog()
        kinds, skipped_kinds = self._kinds(catalog)
        requests = constraint_requests(catalog, queries.histories, kinds, seed=c.seed)
        for text in c.texts:
            requests[text] = np.full(len(queries), text, dtype=object)
        labels = list(requests)
        table = np.stack([requests[lab] for lab in labels]) if labels else np.empty((0, len(queries)), object)
        kind_idx, uidx = np.nonzero(table != None)  # noqa: E711  # elementwise on an object array: asked pairs
        order = np.lexsort((kind_idx, uidx))  # a user's requests together
        kind_idx, uidx = kind_idx[order], uidx[order]
        texts = table[kind_idx, uidx]
        kind = np.array(labels, dtype=object)[kind_idx]
        n_not_asked = int((table == None).sum())  # noqa: E711  # elementwise on an object array
        asked = QueryBatch(queries.users[uidx], queries.histories.take(uidx), None, tuple(texts))
        parsed = parser.parse(list(texts), catalog)

        lists: dict[str, np.ndarray] = {"unconstrained": inputs.topk[:, :k][uidx]}
        cost_rows = []
        t0 = time.perf_counter()
        uncontrolled = _recommend(model, asked, k, c.batch_size)
        base_seconds = time.perf_counter() - t0
        cost_rows.append({"condition": "prompted" if _reads_prompt(model) else "uncontrolled", "seconds": base_seconds})
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
            allowed = control.allowed([parsed[i] for i in sl], catalog, asked.histories.take(sl))
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
                sat[cond],
                users,
                n_boot=c.n_boot,
                seed=c.seed + j,
                description=f"share of returned items satisfying the request's constraints ({_describe(cond)}); "
                "unsatisfiable requests and empty lists left out",
            )
        for j, cond in enumerate(controlled):
            for metric, pos in (("ndcg", 0), ("hr", 1)):
                estimates[f"{metric}@{k} retained [{cond}]"] = cluster_ratio_estimate(
                    acc[cond][pos],
                    acc["unconstrained"][pos],
                    users,
                    n_boot=c.n_boot,
                    seed=c.seed + 10 + j,
                    description=f"mean {metric.upper()}@{k} on constraint-compatible targets, {cond} / unconstrained "
                    "lists of the same requests",
                )
            estimates[f"fill@{k} [{cond}]"] = cluster_mean_estimate(
                fill[cond], users, n_boot=c.n_boot, seed=c.seed + 20 + j, description=f"returned items / {k}"
            )
        estimates["unsatisfiable_share"] = cluster_mean_estimate(
            unsatisfiable.astype(float),
            users,
            n_boot=c.n_boot,
            seed=c.seed + 30,
            description="share of requests whose constraints no item satisfies",
        )
        understood = np.array([p.structured and p.complete for p in parsed], dtype=float)
        estimates["understood_share"] = cluster_mean_estimate(
            understood,
            users,
            n_boot=c.n_boot,
            seed=c.seed + 31,
            description="share of request texts parsed completely into constraints",
        )
        per_kind_rows = []
        for li, lab in enumerate(labels):
            rows = kind == lab
            if not rows.any():
                continue
            for j, cond in enumerate(conditions):
                est = cluster_mean_estimate(
                    sat[cond][rows],
                    users[rows],
                    n_boot=c.n_boot,
                    seed=c.seed + 100 + li * 10 + j,
                    description=f"satisfaction of '{lab}' requests ({_describe(cond)})",
                )
                estimates[f"satisfaction@{k} [{cond}, {lab}]"] = est
                nd = acc[cond][0][rows]
                per_kind_rows.append(
                    {
                        "kind": lab,
                        "condition": cond,
                        "satisfaction": est.value,
                        "ci_low": est.ci_low,
                        "ci_high": est.ci_high,
                        "n_requests": int(rows.sum()),
                        "n_measured": est.n,
                        "n_unsatisfiable": int(unsatisfiable[rows].sum()),
                        "fill": float(np.nanmean(fill[cond][rows])),
                        f"ndcg@{k}_compatible": float(np.nanmean(nd)) if (~np.isnan(nd)).any() else np.nan,
                        "n_compatible_users": int((~np.isnan(nd)).sum()),
                    }
                )
        cost = pd.DataFrame(cost_rows)
        cost["n_requests"] = n_rows
        cost["ms_per_request"] = 1000 * cost.seconds / max(n_rows, 1)
        cost["overhead"] = cost.seconds / base_seconds if base_seconds > 0 else np.nan
        request_table = pd.DataFrame(
            {
                "user": asked.users,
                "kind": kind,
                "text": texts,
                "constraints": [p.describe() for p in parsed],
                "unparsed": [" | ".join(p.unparsed) for p in parsed],
                "n_allowed": n_allowed,
                "unsatisfiable": unsatisfiable,
                "n_compatible_targets": n_compatible,
                **{f"satisfaction_{cond}": sat[cond] for cond in conditions},
            }
        )
        evidence = {"satisfaction": pd.DataFrame(per_kind_rows), "requests": request_table, "cost": cost}
        plots = (
            Plot(
                "bar",
                "satisfaction",
                "kind",
                "satisfaction",
                f"constraint satisfaction@{k} by request kind",
                series="condition",
                ci_low="ci_low",
                ci_high="ci_high",
                y_label="share of items satisfying",
            ),
            Plot("bar", "cost", "condition", "ms_per_request", "latency of control", y_label="ms per request"),
        )

        warnings = _fixed_set_warning(model, k, "prompting cannot change satisfaction@K") if "prompted" in lists else []
        if skipped_kinds:
            warnings.append(
                f"requests {skipped_kinds} not asked: the catalog has no "
                + ("group column" if set(skipped_kinds) & _GROUP_KINDS else "year column")
            )
        if n_not_asked:
            warnings.append(
                f"{n_not_asked} (user, request) pairs not asked (e.g. 'similar' for a user whose latest "
                "item has no title the parser can find)"
            )
        if unsatisfiable.any():
            example = texts[np.flatnonzero(unsatisfiable)[0]]
            warnings.append(
                f"{int(unsatisfiable.sum())} of {n_rows} requests have constraints that no item satisfies "
                f"(e.g. {example!r}): their controlled lists are empty and they are left out of "
                "satisfaction"
            )
        not_understood = np.flatnonzero(understood == 0)
        if len(not_understood):
            p = parsed[not_understood[0]]
            warnings.append(
                f"{len(not_understood)} request texts were not fully understood (e.g. {p.text!r}: "
                f"{'; '.join(p.unparsed) or 'no constraint found'}); see the requests evidence"
            )
        e = estimates
        best = controlled[-1] if controlled else "unconstrained"
        parts = [
            f"{cond} {e[f'satisfaction@{k} [{cond}]'].value:.3f}"
            for cond in conditions
            if e[f"satisfaction@{k} [{cond}]"].value is not None
        ]
        summary = f"satisfaction@{k}: " + ", ".join(parts)
        ret = e.get(f"ndcg@{k} retained [{best}]")
        if ret is not None and ret.value is not None:
            summary += f"; NDCG@{k} on compatible targets x{ret.value:.2f} ({best})"
        if len(cost) > 1 and base_seconds > 0:
            summary += "; latency " + ", ".join(f"{r.condition} x{r.overhead:.2f}" for r in cost.iloc[1:].itertuples())
        return self._result(
            estimates,
            evidence=evidence,
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "conditions": conditions,
                "requests": labels,
                "n_requests": n_rows,
                "group_column": catalog.group_column,
                "year_column": catalog.year_column,
                "reads_prompt": _reads_prompt(model),
            },
        )

    def _thresholds(self, estimates):
        extra = []
        if self.config.min_satisfaction is not None:
            extra = [
                Threshold(estimate=name, op=">=", limit=self.config.min_satisfaction)
                for name in estimates
                if name.startswith(f"satisfaction@{self.config.k} [")
                and "," not in name
                and "[unconstrained]" not in name
            ]
        return [*self.config.thresholds, *extra]


def _describe(condition: str) -> str:
    return {
        "unconstrained": "the model's lists without the request",
        "prompted": "the request in the prompt, no filtering",
        "filtered": "allowed items as the query's candidates, the request still in the query",
        "post_filtered": "the model's deeper list with violators dropped",
    }.get(condition, condition)
