"""Attribute inference (``attribute_inference``)
Can a sensitive attribute (every user attribute column, e.g. gender, age band, occupation;
grouped as :func:`trustrec.data._groups.user_group_table` does) be predicted from what the
model exposes about a user: its user embedding when it has one (``user_embeddings``), else its
top-K list as a bag of items? A logistic regression (scikit-learn) is cross-validated
(stratified ``n_folds``, seeded); the out-of-fold probabilities give the ROC-AUC (macro
one-vs-rest for more than two values) with a bootstrap CI over users, and the accuracy against
the majority-class accuracy (whose AUC is 0.5 by construction). The same pipeline on
``n_permutations`` seeded shuffles of the labels gives the shuffled-label baseline and the
permutation p-value ``(1 + #{shuffled AUC >= AUC}) / (1 + n_permutations)``. Users whose
attribute is missing are counted and reported, never silently dropped; values held by fewer
than ``min_class_size`` users are merged into ``"(rare)"`` (and if that is still smaller than
the number of folds, those users are left out and counted). With ``minimise`` (an alias of the
``history_minimisation`` arm with that ``mode``) or ``minimisation`` (an ``input_defence`` arm
by name, see :mod:`trustrec._arms`; arms are named, never imported) the model is
asked again with minimised histories (:func:`trustrec.mitigate.minimise_history`: the
``sensitive_items``, else the ``n_sensitive`` items whose consumption most reveals the
attribute in training, dropped from the histories or shown by their generalised text): the
AUC drop and the NDCG cost.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from trustrec._arms import ArmSpec, build_arm, check_arm_specs
from trustrec.audit._base import (
    Audit,
    AuditConfig,
    AuditInputs,
    register_audit,
)
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.audit.privacy._common import (
    _recommend,
)
from trustrec.data import QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.eval import (  # macro_ovr_auc: re-exported, it lived here
    bootstrap_rows,
    macro_ovr_auc,
    paired_estimate,
    percentile_ci,
)
from trustrec.models import has_capability

__all__ = ["AttributeInferenceAudit", "AttributeInferenceConfig"]


# -- attribute inference ---------------------------------------------------------------------------
class AttributeInferenceConfig(AuditConfig):
    """Settings of the ``attribute_inference`` audit.

    Parameters
    ----------
    attributes : tuple of str or None
        User columns to infer; None: every attribute column.
    features : {"auto", "embeddings", "topk"}
        What the attacker reads: ``auto`` (user embeddings when the model has them, else the
        top-K list), ``embeddings`` or ``topk``.
    n_folds : int
        Stratified cross-validation folds (at least 2).
    C : float
        The logistic regression's inverse regularisation.
    n_permutations : int
        Shuffled-label runs (the chance level).
    min_class_size : int
        Attribute values with fewer users merge into ``"(rare)"``.
    minimise : {"drop", "generalise"} or None
        ``drop`` or ``generalise`` the sensitive items in the histories and ask again; None: no
        minimisation (not together with ``minimisation``).
    minimisation : ArmSpec or None
        An input-defence arm by name or ``{"name", "params"}`` instead; None: ``minimise``
        decides.
    sensitive_items : tuple of str or None
        Raw ids of the items minimised; None: the ``n_sensitive`` items most revealing of each
        attribute.
    n_sensitive : int
        Items most revealing of each attribute that are minimised when ``sensitive_items`` is
        None.
    batch_size : int
        Queries answered per batch.
    """

    attributes: tuple[str, ...] | None = None
    features: Literal["auto", "embeddings", "topk"] = "auto"
    n_folds: int = Field(5, ge=2)
    C: PositiveFloat = 1.0
    n_permutations: int = Field(20, ge=0)
    min_class_size: PositiveInt = 10
    minimise: Literal["drop", "generalise"] | None = None
    minimisation: ArmSpec | None = None
    sensitive_items: tuple[str, ...] | None = None
    n_sensitive: PositiveInt = 50
    batch_size: PositiveInt = 512

    @field_validator("minimisation", mode="before")
    @classmethod
    def _check_minimisation(cls, value):
        return None if value is None else check_arm_specs([value], "input_defence")[0]

    @model_validator(mode="after")
    def _one_minimisation(self):
        if self.minimise is not None and self.minimisation is not None:
            raise ValueError("give minimise (the history_minimisation mode) or minimisation (an arm), not both")
        return self

    def minimisation_arm(self) -> ArmSpec | None:
        """The input-defence arm: ``minimisation``, else ``history_minimisation`` with ``minimise``'s mode."""
        if self.minimise is not None:
            return ArmSpec(name="history_minimisation", params={"mode": self.minimise})
        return self.minimisation


def _cv_proba(x, codes: np.ndarray, n_classes: int, n_folds: int, C: float, seed: int, dense: bool) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=C, max_iter=2000)
    if dense:
        clf = make_pipeline(StandardScaler(), clf)
    from threadpoolctl import threadpool_limits

    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    # one BLAS thread: these fits are small (users x items); on a busy 2-core machine two threads
    # made a 21-class fit on ml-100k 45x slower (45 s instead of 1 s)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = cross_val_predict(clf, x, codes, cv=cv, method="predict_proba")
    if proba.shape[1] != n_classes:  # a class absent from some training fold
        raise DataError("attribute inference: a class is missing from a training fold")
    return proba


@register_audit
class AttributeInferenceAudit(Audit):
    """Sensitive-attribute inference from user embeddings or top-K lists (module docstring)."""

    name: ClassVar[str] = "attribute_inference"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = (
        "sensitive-attribute inference (gender, age band, occupation) from user embeddings "
        "or top-K lists: cross-validated AUC vs majority and shuffled-label baselines; "
        "history minimisation as the mitigation"
    )
    needs: ClassVar[str] = "user attribute columns; any model (user embeddings used when it has them)"
    config: AttributeInferenceConfig
    config_class = AttributeInferenceConfig

    def _attributes(self, inputs: AuditInputs) -> list[str]:
        groups = inputs.user_groups
        found = [col for col in groups.columns if col != "activity"]
        if self.config.attributes is None:
            return found
        users = inputs.dataset.users
        unknown = [a for a in self.config.attributes if a not in users.columns or a in ("user_id",)]
        if unknown:
            raise ConfigError(
                f"{self.name}: attributes {unknown} are not user columns of '{inputs.dataset.name}'; "
                f"columns: {[col for col in users.columns if col != 'user_id']}"
            )
        return list(self.config.attributes)

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not self._attributes(inputs):
            return "the dataset has no user attribute columns to infer"
        if self._use_embeddings(inputs.model) is None:
            return (
                f"features='embeddings' but {type(inputs.model).__name__} has no user embeddings; "
                "use features='topk' or 'auto'"
            )
        if len(inputs.eval_set) < 2 * self.config.n_folds:
            return f"fewer than {2 * self.config.n_folds} users to cross-validate on"
        return None

    def _use_embeddings(self, model) -> bool | None:
        has = has_capability(model, "user_embeddings")
        if self.config.features == "embeddings":
            return True if has else None
        return has and self.config.features == "auto"

    def _features(self, model, queries: QueryBatch, top: np.ndarray | None, embeddings: bool):
        import scipy.sparse as sp

        if embeddings:
            return np.asarray(model.user_embeddings(queries), np.float64), True
        if top is None:
            top = _recommend(model, queries, self.config.k, self.config.batch_size)
        rows = np.repeat(np.arange(len(top)), top.shape[1])
        items = top.ravel()
        ok = items >= 0
        x = sp.csr_matrix((np.ones(int(ok.sum())), (rows[ok], items[ok])), shape=(len(top), model.n_items_))
        return x, False

    def _labels(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
        """(rows kept, class codes, class names, counts) after merging rare values."""
        from trustrec.data import MISSING_GROUP

        c = self.config
        values = np.asarray(values, dtype=object)
        missing = values == MISSING_GROUP
        counts = pd.Series(values[~missing]).value_counts()
        rare = set(counts[counts < c.min_class_size].index)
        merged = np.where(np.isin(values, list(rare)), "(rare)", values) if rare else values
        keep = ~missing
        n_rare_excluded = 0
        if rare and (merged[keep] == "(rare)").sum() < c.n_folds:
            drop = merged == "(rare)"
            n_rare_excluded = int(drop.sum())
            keep &= ~drop
        names = sorted(set(merged[keep]))
        codes = np.searchsorted(np.asarray(names, dtype=object), merged[keep]) if names else np.empty(0, int)
        info = {"n_missing": int(missing.sum()), "n_rare_values": len(rare), "n_rare_excluded": n_rare_excluded}
        return np.flatnonzero(keep), np.asarray(codes, np.int64), names, info

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.data import MISSING_GROUP, user_group_table

        c = self.config
        k = c.k
        model, queries, ds = inputs.model, inputs.queries, inputs.dataset
        embeddings = bool(self._use_embeddings(model))
        feats, dense = self._features(
            model, queries, None if embeddings else np.asarray(inputs.topk)[:, :k], embeddings
        )
        groups = inputs.user_groups
        if c.attributes is not None:
            extra = [a for a in c.attributes if a not in groups.columns]
            if extra:
                table = user_group_table(ds.users, inputs.train_counts, list(extra))
                groups = groups.assign(**{a: table[a].to_numpy()[queries.users] for a in extra})
        attributes = self._attributes(inputs)
        what = (
            f"{'user embeddings' if embeddings else f'top-{k} lists (bag of items)'} of {len(queries)} users, "
            f"logistic regression, {c.n_folds}-fold stratified CV"
        )
        estimates, rows, bars, warnings = {}, [], [], []
        base_ndcg = inputs.evaluation.per_user[f"ndcg@{k}"].to_numpy() if c.minimisation_arm() else None
        full_groups = None
        for j, attr in enumerate(attributes):
            keep, codes, names, info = self._labels(groups[attr].to_numpy())
            seed = c.seed + 31 * j
            row = {
                "attribute": attr,
                "n_users": len(queries),
                "n_labelled": len(keep),
                **info,
                "n_classes": len(names),
                "features": "embeddings" if embeddings else f"top-{k}",
            }
            if info["n_missing"]:
                warnings.append(
                    f"{attr}: {info['n_missing']} of {len(queries)} users have no value; counted, not "
                    "used to train or score the classifier"
                )
            if info["n_rare_excluded"]:
                warnings.append(
                    f"{attr}: {info['n_rare_excluded']} users hold values too rare to cross-validate "
                    f"(fewer than {c.n_folds} even merged); left out and counted"
                )
            class_counts = np.bincount(codes, minlength=len(names))
            if len(names) < 2 or class_counts.min() < c.n_folds:
                warnings.append(f"{attr}: fewer than 2 values with at least {c.n_folds} users; not measured")
                estimates[f"auc [{attr}]"] = Estimate(
                    None, n=len(keep), description=f"not measured: fewer than 2 usable values of {attr}"
                )
                rows.append(row)
                continue
            x = feats[keep]
            proba = _cv_proba(x, codes, len(names), c.n_folds, c.C, seed, dense)
            auc = float(macro_ovr_auc(proba, codes)[0])
            boot_rows = bootstrap_rows(len(codes), c.n_boot, seed + 1) if c.n_boot > 0 else None
            boot = macro_ovr_auc(proba, codes, boot_rows) if boot_rows is not None else np.empty(0)
            prng = np.random.default_rng(seed + 2)
            shuffled = np.array(
                [
                    float(
                        macro_ovr_auc(_cv_proba(x, perm_codes, len(names), c.n_folds, c.C, seed, dense), perm_codes)[0]
                    )
                    for perm_codes in (prng.permutation(codes) for _ in range(c.n_permutations))
                ]
            )
            p_value = (1 + int((shuffled >= auc).sum())) / (1 + len(shuffled)) if len(shuffled) else None
            lo, hi = percentile_ci(boot)
            kind = "binary" if len(names) == 2 else f"macro one-vs-rest over {len(names)} values"
            missing_note = f"; {info['n_missing']} users without a value counted, not used" if info["n_missing"] else ""
            estimates[f"auc [{attr}]"] = Estimate(
                auc,
                lo,
                hi,
                len(keep),
                p_value,
                description=f"out-of-fold ROC-AUC ({kind}) of predicting {attr} from {what}; p-value: permutation "
                f"test over {len(shuffled)} label shuffles{missing_note}",
            )
            s_lo, s_hi = percentile_ci(shuffled) if len(shuffled) >= 2 else (None, None)
            estimates[f"auc_shuffled [{attr}]"] = Estimate(
                float(shuffled.mean()) if len(shuffled) else None,
                s_lo,
                s_hi,
                len(shuffled),
                description="the same pipeline on shuffled labels: mean AUC and the 2.5-97.5% range of the shuffles",
            )
            pred = proba.argmax(1)
            acc = float((pred == codes).mean())
            majority = float(class_counts.max() / class_counts.sum())
            estimates[f"accuracy [{attr}]"] = Estimate(
                acc, n=len(keep), description=f"out-of-fold accuracy of the {attr} classifier"
            )
            estimates[f"majority_accuracy [{attr}]"] = Estimate(
                majority,
                n=len(keep),
                description=f"share of the most common {attr} value (the majority baseline; its AUC is 0.5)",
            )
            row.update(
                auc=auc,
                auc_ci_low=lo,
                auc_ci_high=hi,
                p_value=p_value,
                auc_shuffled=float(shuffled.mean()) if len(shuffled) else np.nan,
                accuracy=acc,
                majority_accuracy=majority,
            )
            bars += [
                {"attribute": attr, "predictor": "model", "auc": auc, "ci_low": lo, "ci_high": hi},
                {
                    "attribute": attr,
                    "predictor": "shuffled labels",
                    "auc": float(shuffled.mean()) if len(shuffled) else np.nan,
                    "ci_low": s_lo,
                    "ci_high": s_hi,
                },
                {"attribute": attr, "predictor": "majority", "auc": 0.5, "ci_low": None, "ci_high": None},
            ]
            if c.minimisation_arm() is not None:
                if full_groups is None:
                    full_groups = user_group_table(ds.users, inputs.train_counts, attributes)
                self._minimised(
                    inputs,
                    attr,
                    full_groups[attr].to_numpy(),
                    keep,
                    codes,
                    names,
                    proba,
                    boot_rows,
                    base_ndcg,
                    embeddings,
                    seed,
                    estimates,
                    row,
                    warnings,
                    MISSING_GROUP,
                )
            rows.append(row)
        evidence = {"by_attribute": pd.DataFrame(rows)}
        plots = []
        if bars:
            evidence["auc_by_predictor"] = pd.DataFrame(bars)
            plots.append(
                Plot(
                    "bar",
                    "auc_by_predictor",
                    "attribute",
                    "auc",
                    "attribute inference AUC vs baselines",
                    series="predictor",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    y_label="ROC-AUC",
                )
            )
        measured = [(r["attribute"], r["auc"]) for r in rows if "auc" in r]
        summary = f"{what}: " + (
            ", ".join(f"{a} AUC {v:.3f}" for a, v in measured) if measured else "no attribute could be measured"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={"attributes": attributes, "features": "embeddings" if embeddings else f"top-{k}"},
        )

    def _minimised(
        self,
        inputs,
        attr,
        all_labels,
        keep,
        codes,
        names,
        proba,
        boot_rows,
        base_ndcg,
        embeddings,
        seed,
        estimates,
        row,
        warnings,
        missing_group,
    ):
        from trustrec.eval import distinct_counts, hits_matrix, ndcg

        c = self.config
        defence = build_arm(c.minimisation_arm(), "input_defence")[1]
        ds, model, queries = inputs.dataset, inputs.model, inputs.queries
        if c.sensitive_items is not None:
            mask = defence.sensitive_mask(ds, list(c.sensitive_items), f"{self.name}: sensitive_items")
            how = f"{int(mask.sum())} given sensitive items"
        else:
            labels = np.where(all_labels == missing_group, None, all_labels)
            mask = defence.sensitive_mask(
                ds, defence.revealing_items(inputs.split.train, labels, ds.n_items, c.n_sensitive)
            )
            how = f"the {int(mask.sum())} items most revealing of {attr} (chi-square on training data)"
        try:
            m_model, m_queries = defence.apply(model, queries, mask, items=ds.items)
        except ConfigError as exc:
            msg = f"history minimisation not applied: {exc}"
            if msg not in warnings:
                warnings.append(msg)
            return
        removed = mask[queries.histories.values].mean() if len(queries.histories.values) else 0.0
        top = None if embeddings else _recommend(m_model, m_queries, c.k, c.batch_size)
        feats, dense = self._features(m_model, m_queries, top, embeddings)
        proba_m = _cv_proba(feats[keep], codes, len(names), c.n_folds, c.C, seed, dense)
        auc_m = float(macro_ovr_auc(proba_m, codes)[0])
        label = f"{attr}, minimised"
        lo = hi = None
        d_lo = d_hi = None
        if boot_rows is not None:
            b_m = macro_ovr_auc(proba_m, codes, boot_rows)
            lo, hi = percentile_ci(b_m)
            d_lo, d_hi = percentile_ci(macro_ovr_auc(proba, codes, boot_rows) - b_m)
        what = f"{defence.label} {how} ({removed:.1%} of history items)"
        estimates[f"auc [{label}]"] = Estimate(
            auc_m, lo, hi, len(keep), description=f"attribute-inference AUC after history minimisation: {what}"
        )
        estimates[f"auc_drop [{label}]"] = Estimate(
            row["auc"] - auc_m,
            d_lo,
            d_hi,
            len(keep),
            description=f"AUC before minus after minimisation (paired bootstrap); {what}",
        )
        if top is None:
            top = _recommend(m_model, m_queries, c.k, c.batch_size)
        after = ndcg(hits_matrix(top, inputs.eval_set.targets, ds.n_items), distinct_counts(inputs.eval_set.targets))
        estimates[f"ndcg@{c.k}_cost [{label}]"] = paired_estimate(
            base_ndcg,
            after,
            n_boot=c.n_boot,
            seed=seed + 5,
            description=f"NDCG@{c.k} with full histories minus with minimised ones (accuracy cost); {what}",
        )
        row.update(
            auc_minimised=auc_m,
            history_share_removed=float(removed),
            n_sensitive_items=int(mask.sum()),
            ndcg_cost=float(np.nanmean(base_ndcg - after)),
        )
