"""Counterfactual sensitive attributes (``counterfactual_attributes``, FaiRLLM): the same histories
asked neutrally and once per value of a sensitive attribute, for models that read the query's
user attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import (
    bootstrap_ci,
    bootstrap_rows,
    jaccard_at_k,
    percentile_ci,
    prag_star_at_k,
    serp_star_at_k,
    snsr,
    snsv,
)
from trustrec.models import has_capability

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = ["CounterfactualAttributeAudit", "CounterfactualConfig", "reads_query_attributes"]


class CounterfactualConfig(AuditConfig):
    """Settings of the ``counterfactual_attributes`` audit (its ``max_users`` defaults to 200).

    Parameters
    ----------
    attributes : tuple of str or None
        User attribute columns probed; None: the user attribute columns with few values.
    values : dict of str to list of str
        Values probed per attribute, overriding those found in the user table.
    max_values : int
        An attribute taken from the user table is probed only with 2 to ``max_values`` distinct
        values.
    batch_size : int
        Queries answered per batch.
    max_snsr : float or None
        Threshold on the SNSR of Jaccard@K (the spread of similarity to the neutral list across
        an attribute's values); None: no such threshold.
    """

    attributes: tuple[str, ...] | None = None  # None: user attribute columns with few values
    values: dict[str, list[str]] = Field(default_factory=dict)  # override the values probed per attribute
    max_values: PositiveInt = 30
    max_users: PositiveInt | None = 200
    batch_size: PositiveInt = 256
    max_snsr: float | None = 0.05  # on Jaccard@K


def reads_query_attributes(model: Recommender) -> bool:
    """True when ``model`` declares the ``"attributes"`` capability (its answers read the query's
    user attributes, e.g. an LLM prompt's profile line) and does not switch them off (a prompt
    template with ``attribute_keys=()``), or wraps a base model that does.

    Parameters
    ----------
    model : Recommender
        The model.

    Returns
    -------
    bool
    """
    if has_capability(model, "attributes"):
        try:
            llm: Any = model  # the prompt capability: prompt_template is not on Recommender
            keys = llm.prompt_template().attribute_keys if has_capability(model, "prompt") else None
        except Exception:  # noqa: BLE001 - a template that cannot be built says nothing about attributes
            keys = None
        return keys is None or len(keys) > 0
    base = getattr(model, "base_", None)
    return base is not None and reads_query_attributes(base)


@register_audit
class CounterfactualAttributeAudit(Audit):
    """FaiRLLM-style probing: the same histories asked neutrally and once per value of a sensitive
    attribute (through Query attributes); top-K similarity to the neutral list by Jaccard@K,
    SERP*@K and PRAG*@K, and the attribute's unfairness as SNSR (range) and SNSV (std) over values.
    A model that does not read attributes (no ``"attributes"`` capability) would score 0 by
    construction, so the audit answers ``not_applicable`` for it, with that reason; see
    ``trustrec.eval._fairness`` for the SERP*/PRAG* normalisation."""

    name: ClassVar[str] = "counterfactual_attributes"
    dimension: ClassVar[str] = "fairness"
    description: ClassVar[str] = "FaiRLLM probe: top-K change when the query states gender/age/occupation"
    needs: ClassVar[str] = (
        "a model that reads the query's user attributes (the 'attributes' capability: LLM "
        "recommenders with a profile line) and user attributes (or configured values)"
    )
    config: CounterfactualConfig
    config_class = CounterfactualConfig
    SIMILARITIES: ClassVar[dict] = {"jaccard": jaccard_at_k, "serp_star": serp_star_at_k, "prag_star": prag_star_at_k}

    def _probe_values(self, inputs: AuditInputs) -> dict[str, list[str]]:
        from trustrec.data import MISSING_GROUP

        c = self.config
        values = {a: [str(v) for v in vs] for a, vs in c.values.items()}
        groups = inputs.user_groups.drop(columns=["activity"], errors="ignore")
        attrs = c.attributes if c.attributes is not None else [a for a in groups.columns if a not in values]
        for a in attrs:
            if a in values:
                continue
            if a not in groups.columns:
                from trustrec.errors import ConfigError

                raise ConfigError(
                    f"{self.name}: attribute {a!r} is not a user column; give its values in "
                    f"'values' or use one of {list(groups.columns)}"
                )
            found = sorted(set(groups[a]) - {MISSING_GROUP})
            if 1 < len(found) <= c.max_values:
                values[a] = found
        return values

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not reads_query_attributes(inputs.model):
            name = getattr(inputs.model, "name", "") or type(inputs.model).__name__
            return (
                f"{name} does not read the query's user attributes (no 'attributes' capability), so stating "
                "an attribute cannot change its lists: a probe would show no change by construction"
            )
        if not self._probe_values(inputs):
            return (
                "no sensitive attribute to probe: the dataset has no user attribute with 2 to "
                f"{self.config.max_values} values; give attributes and values in the config"
            )
        return None

    def _recommend(self, model, queries, k: int) -> np.ndarray:
        parts = [model.recommend(b, k).items for b in queries.batches(self.config.batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, k), np.int64)

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from tqdm.auto import tqdm

        c = self.config
        model, queries = inputs.model, inputs.queries.with_attributes(None)
        probe = self._probe_values(inputs)
        neutral = self._recommend(model, queries, c.k)
        rows, estimates = [], {}
        n = len(queries)
        boot_rows = bootstrap_rows(n, c.n_boot, c.seed) if c.n_boot and n else None
        total = sum(len(v) for v in probe.values())
        bar = tqdm(total=total, desc=f"{self.name}", disable=not inputs.progress, leave=False)
        for attr, vals in probe.items():
            sims = {s: np.empty((n, len(vals))) for s in self.SIMILARITIES}
            for j, v in enumerate(vals):
                asked = queries.with_attributes(pd.DataFrame({attr: [v] * n}))
                top = self._recommend(model, asked, c.k)
                for s, fn in self.SIMILARITIES.items():
                    sims[s][:, j] = fn(neutral, top)
                bar.update(1)
            for s, mat in sims.items():
                means = mat.mean(0)
                for j, v in enumerate(vals):
                    lo, hi = bootstrap_ci(mat[:, j], n_boot=c.n_boot, seed=c.seed + j)
                    rows.append(
                        {
                            "attribute": attr,
                            "value": v,
                            "similarity": s,
                            "mean": means[j],
                            "ci_low": lo,
                            "ci_high": hi,
                            "n_users": n,
                        }
                    )
                ci_r: tuple[float | None, float | None] = (None, None)
                ci_v = ci_r
                if boot_rows is not None:
                    boot = mat[boot_rows].mean(1)  # (n_boot, n_values)
                    ci_r = percentile_ci(boot.max(1) - boot.min(1))
                    ci_v = percentile_ci(boot.std(1))
                estimates[f"snsr {s}@{c.k} [{attr}]"] = Estimate(
                    snsr(means),
                    *ci_r,
                    n,
                    description=f"range of mean {s}@{c.k} to the neutral list over {len(vals)} values of {attr}",
                )
                estimates[f"snsv {s}@{c.k} [{attr}]"] = Estimate(
                    snsv(means), *ci_v, n, description=f"population std of mean {s}@{c.k} over values of {attr}"
                )
                estimates[f"mean {s}@{c.k} [{attr}]"] = Estimate(
                    float(mat.mean()), n=n, description=f"mean {s}@{c.k} to the neutral list over values"
                )
        bar.close()
        table = pd.DataFrame(rows)
        evidence = {"similarity": table}
        plots = []
        for attr in probe:
            name = f"jaccard_{attr}"
            evidence[name] = table[(table.attribute == attr) & (table.similarity == "jaccard")].reset_index(drop=True)
            plots.append(
                Plot(
                    "bar",
                    name,
                    "value",
                    "mean",
                    f"Jaccard@{c.k} to the neutral list when the query states {attr}",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    y_label="Jaccard",
                )
            )
        worst = max(
            ((a, estimates[f"snsr jaccard@{c.k} [{a}]"].value) for a in probe),
            key=lambda t: -np.inf if t[1] is None else t[1],
        )
        summary = (
            f"{len(probe)} attributes, {total} values, {n} users; largest SNSR (Jaccard@{c.k}) "
            f"{worst[1]:.3f} for {worst[0]}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            summary=summary,
            settings={"probed_values": probe, "n_model_calls": (total + 1) * n},
        )

    def _thresholds(self, estimates):
        extra = []
        if self.config.max_snsr is not None:
            extra = [
                Threshold(estimate=k, op="<=", limit=self.config.max_snsr)
                for k in estimates
                if k.startswith("snsr jaccard@")
            ]
        return [*self.config.thresholds, *extra]
