"""``prompt_sensitivity``
For recommenders that read a prompt (capability ``text`` and a ``template`` in their config):
the same users asked under the model's template and under at least five paraphrases that say
the same thing (shipped as data in ``models/llm/assets/prompt-paraphrases/paraphrases.yaml``,
one set for candidate rankers and one for generative models, or given in the config; a
paraphrase must keep the template's slots). Top-K stability: Jaccard@K and rank-biased
overlap (RBO_ext, :func:`~trustrec.eval.rank_biased_overlap`) to the default
template's list and between every pair of templates; accuracy spread: max - min (and the
population std) over templates of mean NDCG@K and HR@K; the share of users whose top-1 is
the same under every template. CIs are seeded bootstraps over users.
"""

from __future__ import annotations

import time
from itertools import combinations
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.audit.controllability._common import (
    _accuracy,
    _fixed_set_warning,
    _reads_prompt,
    _recommend,
    _with_config,
)
from trustrec.errors import ConfigError
from trustrec.eval import (
    cluster_mean_estimate,
    percentile_ci,  # re-exported: it lived here
)

__all__ = ["PromptSensitivityAudit", "PromptSensitivityConfig", "load_paraphrases"]


# -- prompt sensitivity ---------------------------------------------------------------------------------------------
_PARAPHRASE_FIELDS = frozenset(
    {
        "system",
        "user",
        "request",
        "profile",
        "item_line",
        "candidate_line",
        "history_separator",
        "empty_history",
        "answer_prefix",
        "example_block",
        "example_line",
        "example_item_separator",
        "attribute",
        "attribute_separator",
    }
)


def load_paraphrases(kind: Literal["ranker", "generative"]) -> tuple[dict[str, str], ...]:
    """The shipped paraphrase templates (``name`` + template fields) for candidate rankers or
    generative recommenders.

    Parameters
    ----------
    kind : {"ranker", "generative"}
        The prompt kind.

    Returns
    -------
    tuple of dict
        The templates.

    Raises
    ------
    ConfigError
        If ``kind`` has no shipped set.
    """
    from importlib import resources

    from trustrec._safeio import load_yaml

    path = (
        resources.files("trustrec.models.llm")
        .joinpath("assets")
        .joinpath("prompt-paraphrases")
        .joinpath("paraphrases.yaml")
    )
    data = load_yaml(path.read_bytes(), what=str(path))
    if kind not in data:
        raise ConfigError(f"load_paraphrases: kind must be one of {sorted(data)}; got {kind!r}")
    return tuple(dict(p) for p in data[kind])


def _prompt_template(model):
    from trustrec.models.llm import PromptTemplate

    config = model.config
    if callable(getattr(config, "prompt_template", None)):
        return config.prompt_template()
    return PromptTemplate.from_dict(config.template)


class PromptSensitivityConfig(AuditConfig):
    """Settings of the ``prompt_sensitivity`` audit (its ``max_users`` defaults to 100).

    Parameters
    ----------
    paraphrases : tuple of dict or None
        Templates (each a ``name`` plus template fields merged over the model's own template)
        to compare with the default; None: the shipped set for the model's prompt kind.
    rbo_p : float
        RBO persistence (between 0 and 1).
    batch_size : int
        Queries answered per batch.
    min_jaccard : float or None
        Threshold on the mean Jaccard@K to the default; None: no such threshold.
    """

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
                raise ValueError(
                    f"paraphrase {i}: unknown field(s) {sorted(unknown)}; allowed: "
                    f"name, {', '.join(sorted(_PARAPHRASE_FIELDS))}"
                )
            names.append(str(p.get("name", f"paraphrase_{i + 1}")))
        if len(set(names)) != len(names) or "default" in names:
            raise ValueError(f"paraphrase names must be distinct and not 'default'; got {names}")
        return value


@register_audit
class PromptSensitivityAudit(Audit):
    """Top-K stability and accuracy spread of an LLM recommender across equivalent prompts."""

    name: ClassVar[str] = "prompt_sensitivity"
    dimension: ClassVar[str] = "controllability"
    description: ClassVar[str] = (
        "top-K stability (Jaccard@K, RBO) and accuracy spread of an LLM recommender over "
        "paraphrased, equivalent prompt templates"
    )
    needs: ClassVar[str] = "a recommender that reads a prompt (an LLM recommender with a template)"
    config: PromptSensitivityConfig
    config_class = PromptSensitivityConfig

    def _paraphrases(self, model) -> list[dict[str, Any]]:
        from trustrec.models.llm import PromptTemplate, template_slots

        own = _prompt_template(model)
        slots = template_slots(own.user)
        chosen = self.config.paraphrases
        if chosen is None:
            chosen = load_paraphrases("ranker" if "candidates" in slots else "generative")
        out = []
        for i, p in enumerate(chosen):
            fields = {key: value for key, value in p.items() if key != "name"}
            merged = {**own.model_dump(), **fields}
            PromptTemplate.from_dict(merged)  # raises ConfigError on a bad slot
            if template_slots(merged["user"]) != slots:
                raise ConfigError(
                    f"{self.name}: paraphrase {p.get('name', i + 1)!r} has user slots "
                    f"{sorted(template_slots(merged['user']))} but the model's prompt has "
                    f"{sorted(slots)}; a paraphrase must say the same things"
                )
            out.append({"name": str(p.get("name", f"paraphrase_{i + 1}")), "fields": fields})
        return out

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        if not _reads_prompt(model):
            name = getattr(model, "name", "") or type(model).__name__
            return f"{name} reads no prompt: only LLM recommenders with a prompt template can be asked differently"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import jaccard_at_k, rank_biased_overlap

        c = self.config
        # an LLM recommender with a prompt (_why_not checked): its config has a template
        model: Any = inputs.model
        queries, k = inputs.queries, c.k
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
            f"jaccard@{k} to default": cluster_mean_estimate(
                jac_default.mean(1),
                users,
                n_boot=c.n_boot,
                seed=c.seed,
                description=f"mean over {t - 1} paraphrases of Jaccard@{k} to the default template's list",
            ),
            "rbo to default": cluster_mean_estimate(
                rbo_default.mean(1),
                users,
                n_boot=c.n_boot,
                seed=c.seed + 1,
                description=f"mean RBO_ext (p={c.rbo_p}) to the default template's list",
            ),
            f"jaccard@{k} pairwise": cluster_mean_estimate(
                jac_pair.mean(1),
                users,
                n_boot=c.n_boot,
                seed=c.seed + 2,
                description=f"mean Jaccard@{k} over all {len(pairs)} pairs of templates",
            ),
            "rbo pairwise": cluster_mean_estimate(
                rbo_pair.mean(1),
                users,
                n_boot=c.n_boot,
                seed=c.seed + 3,
                description=f"mean RBO_ext (p={c.rbo_p}) over all pairs of templates",
            ),
            "top1_agreement": cluster_mean_estimate(
                same_top1,
                users,
                n_boot=c.n_boot,
                seed=c.seed + 4,
                description="share of users whose top-1 is the same under every template",
            ),
        }
        rng = np.random.default_rng(c.seed + 5)
        idx = rng.integers(0, n, (c.n_boot, n)) if c.n_boot and n > 1 else None
        for metric, values in (("ndcg", ndcg), ("hr", hr)):
            means = np.nanmean(values, 0)
            spread_ci: tuple[float | None, float | None] = (None, None)
            std_ci = spread_ci
            if idx is not None:
                boot = np.nanmean(values[idx], 1)  # (n_boot, t)
                spread_ci = percentile_ci(boot.max(1) - boot.min(1))
                std_ci = percentile_ci(boot.std(1))
            estimates[f"{metric}@{k} spread"] = Estimate(
                float(means.max() - means.min()),
                *spread_ci,
                n,
                description=f"best minus worst template's mean {metric.upper()}@{k} "
                f"({names[int(means.argmax())]} vs {names[int(means.argmin())]})",
            )
            estimates[f"{metric}@{k} std"] = Estimate(
                float(means.std()),
                *std_ci,
                n,
                description=f"population std of mean {metric.upper()}@{k} over {t} templates",
            )
        rows = []
        for j, name in enumerate(names):
            row: dict[str, Any] = {"template": name}
            for label, column, seed in (
                ("ndcg", ndcg[:, j], 10),
                ("hr", hr[:, j], 20),
                ("jaccard_to_default", jac_default[:, j - 1] if j else np.ones(n), 30),
                ("rbo_to_default", rbo_default[:, j - 1] if j else np.ones(n), 40),
            ):
                est = cluster_mean_estimate(column, users, n_boot=c.n_boot, seed=c.seed + seed + j, description="")
                row.update({label: est.value, f"{label}_ci_low": est.ci_low, f"{label}_ci_high": est.ci_high})
            row["seconds"] = seconds[j - 1] if j else np.nan
            rows.append(row)
        per_template = pd.DataFrame(rows)
        pairwise = pd.DataFrame(
            {
                "template_a": [names[a] for a, _ in pairs],
                "template_b": [names[b] for _, b in pairs],
                f"jaccard@{k}": jac_pair.mean(0),
                "rbo": rbo_pair.mean(0),
            }
        )
        evidence = {
            "per_template": per_template,
            "pairwise": pairwise,
            "paraphrases": pd.DataFrame(
                {"template": [p["name"] for p in paraphrases], "fields": [str(p["fields"]) for p in paraphrases]}
            ),
        }
        plots = (
            Plot(
                "bar",
                "per_template",
                "template",
                "ndcg",
                f"NDCG@{k} by prompt template (95% CI)",
                ci_low="ndcg_ci_low",
                ci_high="ndcg_ci_high",
                y_label=f"NDCG@{k}",
            ),
            Plot(
                "bar",
                "per_template",
                "template",
                "jaccard_to_default",
                f"Jaccard@{k} to the default template's list",
                ci_low="jaccard_to_default_ci_low",
                ci_high="jaccard_to_default_ci_high",
                y_label="Jaccard",
            ),
        )
        warnings = _fixed_set_warning(model, k, f"Jaccard@{k} is 1 by construction (read RBO and top-1 agreement)")
        if len(paraphrases) < 5:
            warnings.append(
                f"only {len(paraphrases)} paraphrases: the accuracy spread over templates is coarse "
                "(at least five are recommended)"
            )
        e = estimates
        summary = (
            f"{t} templates, {n} users: Jaccard@{k} to default {e[f'jaccard@{k} to default'].value:.3f}, "
            f"RBO {e['rbo to default'].value:.3f}, NDCG@{k} spread {e[f'ndcg@{k} spread'].value:.4f}, "
            f"same top-1 {e['top1_agreement'].value:.3f}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={"templates": names, "n_model_calls": len(paraphrases) * n},
        )

    def _thresholds(self, estimates):
        extra = (
            [Threshold(estimate=f"jaccard@{self.config.k} to default", op=">=", limit=self.config.min_jaccard)]
            if self.config.min_jaccard is not None
            else []
        )
        return [*self.config.thresholds, *extra]
