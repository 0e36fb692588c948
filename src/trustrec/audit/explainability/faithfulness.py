"""The explanation-faithfulness audit (``explanation_faithfulness``): attributions and the
deletion test (:mod:`trustrec.audit.explainability.attribution`) and, for LLM recommenders, generated
explanations checked against the catalog (:mod:`trustrec.audit.explainability.explanation_checks`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator, model_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.audit.explainability._session import (
    DELETION_VARIANTS,
    REQUEST_STATUSES,
    Attribution,
    Method,
    _answers,
    _CatalogScorer,
    _model_name,
    _resolve_method,
    _Session,
)
from trustrec.audit.explainability.attribution import (
    EXPLANATION_TEMPLATE,
    explanation_requests,
    generate_explanations,
)
from trustrec.audit.explainability.explanation_checks import check_explanations
from trustrec.data import QueryBatch
from trustrec.errors import ConfigError
from trustrec.eval import mean_estimate, paired_estimate

__all__ = ["ExplanationFaithfulnessAudit", "ExplanationFaithfulnessConfig"]


# -- the audit ------------------------------------------------------------------------------------------------
class ExplanationFaithfulnessConfig(AuditConfig):
    """Settings of the ``explanation_faithfulness`` audit (its ``max_users`` defaults to 200).

    Parameters
    ----------
    method : {"auto", "leave_one_out", "gradient", "likelihood"}
        The attribution (module docstring; ``auto``: likelihood for LLM recommenders, else
        leave-one-out).
    n_explained : int
        The top positions of each list that are explained (at most ``k``).
    items : tuple of str or None
        Raw item ids to explain for every audited user instead (requests for items a user was
        not recommended are counted and reported, not explained); None: the top positions.
    n_cited : int
        History items an explanation cites (the headline deletion step, added to ``steps``).
    steps : tuple of int
        The deletion curve's numbers of removed/kept items.
    n_random : int
        Random draws per pair for the baseline.
    max_history : int or None
        The most recent history items attributed; None: all.
    generate : bool
        Also generate and check natural-language explanations (LLM recommenders).
    max_new_tokens : int
        Tokens generated per explanation at most.
    explanation_template : dict
        Fields of :data:`EXPLANATION_TEMPLATE` to replace.
    attribute_column, year_column : str or None
        Catalog columns the explanation check reads (None: guessed).
    min_title_chars : int
        Titles shorter than this are not searched for in generated explanations.
    batch_size : int
        Queries scored per batch.
    """

    max_users: PositiveInt | None = 200
    method: Method = "auto"
    n_explained: PositiveInt = 1
    items: tuple[str, ...] | None = None
    n_cited: PositiveInt = 3
    steps: tuple[PositiveInt, ...] = (1, 2, 3, 5)
    n_random: PositiveInt = 3
    max_history: PositiveInt | None = 50
    generate: bool = True
    max_new_tokens: PositiveInt = 60
    explanation_template: dict[str, Any] = Field(default_factory=dict)
    attribute_column: str | None = None
    year_column: str | None = None
    min_title_chars: PositiveInt = 4
    batch_size: PositiveInt = 512

    @field_validator("items")
    @classmethod
    def _check_items(cls, values):
        if values is not None and not values:
            raise ValueError("items is empty; give raw item ids or leave it unset (each user's top items)")
        return None if values is None else tuple(str(v) for v in dict.fromkeys(values))

    @field_validator("explanation_template")
    @classmethod
    def _check_template(cls, value):
        from trustrec.models.llm import PromptTemplate

        PromptTemplate.from_dict({**EXPLANATION_TEMPLATE, **value})
        return value

    @model_validator(mode="after")
    def _check(self):
        if self.n_explained > self.k:
            raise ValueError(
                f"n_explained ({self.n_explained}) must be <= k ({self.k}): only top-k items are recommended"
            )
        return self

    def all_steps(self) -> tuple[int, ...]:
        return tuple(sorted({*self.steps, self.n_cited}))


def _per_user(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Mean of ``values`` per query row (NaN ignored; NaN for rows without a value)."""
    ok = ~np.isnan(values)
    sums = np.bincount(rows[ok], weights=values[ok], minlength=n_rows)
    counts = np.bincount(rows[ok], minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@register_audit
class ExplanationFaithfulnessAudit(Audit):
    """Attributions of recommendations to history items, their faithfulness by deletion, and, for
    LLM recommenders, misleading generated explanations (module docstring)."""

    name: ClassVar[str] = "explanation_faithfulness"
    dimension: ClassVar[str] = "explainability"
    description: ClassVar[str] = (
        "which history items drove each recommendation (leave-one-out, gradient x input, "
        "LLM likelihood change); rank drop when the cited items are removed or kept vs "
        "as many random ones (comprehensiveness, sufficiency); misleading generated "
        "explanations checked against the catalog"
    )
    needs: ClassVar[str] = (
        "a model that reads the history and has full-ranking scores (classic, text encoder) or "
        "is an LLM recommender (likelihoods, generated explanations)"
    )
    config: ExplanationFaithfulnessConfig
    config_class = ExplanationFaithfulnessConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        name = _model_name(model)
        if "uses_history" not in getattr(model, "capabilities", ()):
            return f"{name} does not read the user's history, so no history item can explain its recommendations"
        try:
            _resolve_method(model, self.config.method)
        except ConfigError as exc:
            return str(exc).removeprefix("attribute: ")
        return None

    def _requested(self, inputs: AuditInputs) -> np.ndarray:
        c = self.config
        topk = np.asarray(inputs.topk)
        if c.items is None:
            return topk[:, : c.n_explained]
        ds = inputs.dataset
        idx = ds.item_index(list(c.items), missing="ignore")
        unknown = [t for t, i in zip(c.items, idx) if i < 0]
        if unknown:
            raise ConfigError(
                f"{self.name}: items {unknown} are not items of dataset '{ds.name}' "
                f"(e.g. {list(ds.item_ids[:3])}); give raw item ids"
            )
        return np.broadcast_to(np.asarray(idx, np.int64), (len(topk), len(idx))).copy()

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        model, k = inputs.model, c.k
        ds = inputs.dataset
        queries = model._prepare(inputs.queries)
        n = len(queries)
        topk = np.asarray(inputs.topk)[:, :k]
        requested = self._requested(inputs)
        requests = explanation_requests(
            requested, topk, queries.histories, ds.n_items, users=queries.users, item_ids=ds.item_ids
        )
        ok = requests.status == "ok"
        items = np.full(requested.shape, -1, np.int64)
        items[requests.row[ok].to_numpy(), requests.slot[ok].to_numpy()] = requests.item[ok].to_numpy()
        # a free generator is asked about its own top-k; a ranker about the candidates it was shown
        llm: Any = model  # where _answers: an LLM recommender, whose answers_from_candidates is not on Recommender
        universe = topk if _answers(model) and not llm.answers_from_candidates else None
        session = _Session(
            model,
            queries,
            c.method,
            max_history=c.max_history,
            batch_size=c.batch_size,
            universe=universe,
            progress=inputs.progress,
        )
        attribution = session.attribute(items)
        steps = c.all_steps()
        deletion = session.deletion(attribution, steps, c.n_random, c.seed)
        at = steps.index(c.n_cited)
        pair_rows = deletion.row
        per = {v: _per_user(deletion.rank_drop(v)[:, at], pair_rows, n) for v in DELETION_VARIANTS}
        left = {
            v: _per_user(
                np.where(np.isnan(deletion.ranks[v][:, at]), np.nan, (deletion.ranks[v][:, at] > k).astype(np.float64)),
                pair_rows,
                n,
            )
            for v in ("remove_cited", "remove_random")
        }
        m = c.n_cited
        where = (
            "full-catalog rank"
            if isinstance(session.scorer, _CatalogScorer)
            else "rank among the LLM's candidate set by likelihood"
        )
        est: dict[str, Estimate] = {}
        for j, (v, what) in enumerate(
            (
                ("remove_cited", f"removing the {m} cited history items"),
                ("remove_random", (f"removing {m} random attributed history items (mean of {c.n_random} draws)")),
                ("keep_cited", f"keeping only the {m} cited history items"),
                ("keep_random", (f"keeping only {m} random attributed history items (mean of {c.n_random} draws)")),
            )
        ):
            action, source = v.split("_")
            est[f"rank_drop [{action} {source}]"] = mean_estimate(
                per[v],
                n_boot=c.n_boot,
                seed=c.seed + j,
                description=f"mean per-user rank drop ({where} after minus before; > 0 = pushed down) of the explained items "
                f"when {what}",
            )
        est["comprehensiveness"] = paired_estimate(
            per["remove_cited"],
            per["remove_random"],
            n_boot=c.n_boot,
            seed=c.seed + 4,
            test=True,
            description=f"rank drop removing the {m} cited items minus removing {m} random ones, per user (> 0: the "
            "attribution found the items that drive the recommendation; Wilcoxon p)",
        )
        est["sufficiency"] = paired_estimate(
            per["keep_random"],
            per["keep_cited"],
            n_boot=c.n_boot,
            seed=c.seed + 5,
            test=True,
            description=f"rank drop keeping only {m} random items minus keeping only the {m} cited ones, per user (> 0: the "
            "cited items alone hold the recommendation better than random ones; Wilcoxon p)",
        )
        for j, v in enumerate(("remove_cited", "remove_random")):
            source = v.split("_")[1]
            est[f"leaves_top{k} [remove {source}]"] = mean_estimate(
                left[v],
                n_boot=c.n_boot,
                seed=c.seed + 6 + j,
                description=f"share of explained items pushed out of the top-{k} by removing "
                f"{'the ' if source == 'cited' else ''}{m} {source} history items",
            )
        # deletion curves
        curves: dict[str, list[dict[str, Any]]] = {"remove": [], "keep": []}
        for j, steps_m in enumerate(steps):
            for v in DELETION_VARIANTS:
                action, source = v.split("_")
                pu = _per_user(deletion.rank_drop(v)[:, j], pair_rows, n)
                e = mean_estimate(pu, n_boot=c.n_boot, seed=c.seed + 10 + j)
                curves[action].append(
                    {
                        "n_items": steps_m,
                        "variant": f"{action} {source}",
                        "rank_drop": e.value,
                        "ci_low": e.ci_low,
                        "ci_high": e.ci_high,
                        "n_users": e.n,
                    }
                )
        evidence = {"deletion_curve": pd.DataFrame(curves["remove"]), "sufficiency_curve": pd.DataFrame(curves["keep"])}
        plots = [
            Plot(
                "line",
                "deletion_curve",
                "n_items",
                "rank_drop",
                "deletion curve: rank drop when the cited vs random history items are removed",
                series="variant",
                x_label="history items removed",
                y_label="rank drop (> 0 = pushed down)",
            ),
            Plot(
                "line",
                "sufficiency_curve",
                "n_items",
                "rank_drop",
                "sufficiency curve: rank drop when only the cited vs random history items are kept",
                series="variant",
                x_label="history items kept",
                y_label="rank drop (> 0 = pushed down)",
            ),
        ]
        # per-request table
        table = requests.copy()
        cited = attribution.cited_items(m)
        cited_pos = attribution.cited_positions(m)
        r, s = table.row.to_numpy(), table.slot.to_numpy()
        table["cited_items"] = [";".join(ds.item_ids[x[x >= 0]].astype(str)) for x in cited[r, s]]
        table["cited_attributions"] = [
            ";".join(f"{attribution.values[ri, si, p]:.4g}" for p in pos[pos >= 0])
            for ri, si, pos in zip(r, s, cited_pos[r, s])
        ]
        key = pd.DataFrame(
            {
                "row": deletion.row,
                "slot": deletion.slot,
                "base_rank": deletion.base_rank,
                **{f"rank_{v}": deletion.ranks[v][:, at] for v in DELETION_VARIANTS},
                "n_attributed": deletion.n_attributed,
            }
        )
        table = table.merge(key, on=["row", "slot"], how="left")
        warnings: list[str] = []
        counts = requests.status.value_counts().reindex(list(REQUEST_STATUSES), fill_value=0)
        for status in REQUEST_STATUSES[1:]:
            if counts[status]:
                example = requests[requests.status == status].message.iloc[0]
                warnings.append(
                    f"{counts[status]} of {len(requests)} explanation requests not explained ({status}); e.g. {example}"
                )
        short = int(((deletion.n_attributed <= m) & (deletion.n_attributed > 0)).sum())
        if short:
            warnings.append(
                f"{short} explained items have no more than {m} attributed history items and are left out "
                f"of the deletion test at {m} items (removing all of them leaves nothing to compare)"
            )
        settings = {
            "method": session.method,
            "ranking": where,
            "request_counts": {key: int(v) for key, v in counts.items()},
            "n_pairs_explained": len(deletion.row),
            "steps": list(steps),
            "n_pairs_at_n_cited": int((~np.isnan(deletion.ranks["remove_cited"][:, at])).sum()),
        }
        if _answers(model) and c.generate:
            generated, table = self._explanations(model, queries, items, attribution, ds, table, warnings, settings)
            est.update(generated)
        evidence["explanations"] = table
        evidence["attributions"] = _attribution_evidence(attribution, queries, ds, top=m)
        comp, suff = est["comprehensiveness"], est["sufficiency"]
        summary = (
            f"{len(deletion.row)} recommendations of {n} users explained by {session.method}; removing the "
            f"{m} cited history item{'s' if m > 1 else ''}: rank drop "
            f"{_fmt(est['rank_drop [remove cited]'].value)} vs "
            f"{_fmt(est['rank_drop [remove random]'].value)} for {m} random one{'s' if m > 1 else ''} "
            f"(comprehensiveness "
            f"{_fmt(comp.value)}{_p(comp)}); keeping only them: sufficiency {_fmt(suff.value)}{_p(suff)}"
        )
        if "misleading_rate" in est and est["misleading_rate"].value is not None:
            summary += f"; misleading generated explanations {est['misleading_rate'].value:.1%}"
        not_ok = len(requests) - int(counts["ok"])
        if not_ok:
            summary += f"; {not_ok} of {len(requests)} requests not explainable (see warnings)"
        return self._result(
            est, evidence=evidence, plots=tuple(plots), warnings=tuple(warnings), summary=summary, settings=settings
        )

    def _explanations(self, model, queries, items, attribution, ds, table, warnings, settings):
        """Generate explanations for the explained items, check them against the catalog; returns
        the estimates and the per-request table with the checks added."""
        from trustrec.data import guess_item_group_column

        c = self.config
        texts = generate_explanations(
            model, queries, items, template=c.explanation_template, max_new_tokens=c.max_new_tokens
        )
        checks = check_explanations(
            texts,
            items,
            queries.histories,
            ds.items,
            attribute_column=c.attribute_column,
            year_column=c.year_column,
            min_title_chars=c.min_title_chars,
            cited=attribution.cited_items(c.n_cited),
        )
        settings["explanation_check"] = {
            "n_generated": len(checks),
            "attribute_column": c.attribute_column or guess_item_group_column(ds.items),
        }
        n = len(queries)
        rows = checks.row.to_numpy()
        nonempty = ~checks["empty_text"].to_numpy(bool)

        def rate(flags, desc: str, seed: int, base=None) -> Estimate:
            base = nonempty if base is None else base
            x = np.where(base, np.asarray(flags, np.float64), np.nan)
            return mean_estimate(_per_user(x, rows, n), n_boot=c.n_boot, seed=c.seed + seed, description=desc)

        named_hist = checks.n_named_history.to_numpy(np.float64)
        in_cited = checks.n_named_in_cited.to_numpy(np.float64)
        out = {
            "misleading_rate": rate(
                checks.misleading,
                "share of non-empty generated explanations that name an item "
                "outside the history or claim a genre/year no item here has (checked against "
                "the catalog; CI over users)",
                20,
            ),
            "outside_history_citation_rate": rate(
                checks.n_named_outside > 0,
                "share of non-empty explanations naming "
                "a catalog item that is neither in the history nor the "
                "recommended item",
                21,
            ),
            "unsupported_attribute_rate": rate(
                (checks.unsupported_attributes != "") | (checks.unsupported_years != ""),
                "share of non-empty explanations claiming a genre/year that neither "
                "the recommended item nor any history item has",
                22,
            ),
            "item_attribute_mismatch_rate": rate(
                checks.item_mismatch_attributes != "",
                "share of non-empty explanations claiming a genre the recommended "
                "item does not have (it may describe the history)",
                23,
            ),
            "empty_explanation_rate": rate(
                checks["empty_text"],
                "share of generated explanations with no text",
                24,
                base=np.ones(len(checks), bool),
            ),
            "citation_agreement": mean_estimate(
                _per_user(np.where(named_hist > 0, in_cited / np.maximum(named_hist, 1), np.nan), rows, n),
                n_boot=c.n_boot,
                seed=c.seed + 25,
                description=f"of the history items an explanation names, the share the attribution also cites (top {c.n_cited})",
            ),
        }
        checked = checks.drop(columns=["item"]).rename(columns={"text": "explanation"})
        checked["explanation"] = checked["explanation"].str.slice(0, 300)
        if len(checks) and checks["empty_text"].all():
            warnings.append("every generated explanation is empty; misleading rates are not measured")
        return out, table.merge(checked, on=["row", "slot"], how="left")


def _attribution_evidence(attribution: Attribution, queries: QueryBatch, ds, top: int) -> pd.DataFrame:
    frame = attribution.to_frame(top=top)
    frame.insert(1, "user", queries.users[frame.row.to_numpy()])
    frame["item_id"] = ds.item_ids[frame["item"].to_numpy()].astype(str)
    frame["history_item_id"] = ds.item_ids[frame["history_item"].to_numpy()].astype(str)
    return frame


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def _p(e: Estimate) -> str:
    return "" if e.p_value is None else f", p = {e.p_value:.3g}"
