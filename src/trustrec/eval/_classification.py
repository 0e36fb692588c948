"""Scores against binary labels: ROC-AUC (one sample, row-wise over bootstrap samples, within
groups, macro one-vs-rest), the ROC curve and the true-positive rate at a false-positive rate.

Conventions (one each, used by every audit):

- **AUC ties** count half: AUC is the Mann-Whitney U statistic over ``n_pos * n_neg`` (average
  ranks), equal to ``sklearn.metrics.roc_auc_score``. A sample without both classes gives NaN.
- **TPR at FPR** is read off the empirical (step) ROC curve without interpolation: the largest
  TPR among thresholds whose FPR is at most the target. This never credits an attack with a TPR
  reached only at a higher FPR (a linear interpolation between ROC points would).
- Higher scores mean "positive" everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["auc_rows", "grouped_auc", "macro_ovr_auc", "roc_auc", "roc_points", "tpr_at_fpr"]


def auc_rows(scores: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Row-wise ROC-AUC of scores against boolean labels.

    Parameters
    ----------
    scores : array_like of float, shape (B, n) or (n,)
        Higher = more likely positive.
    labels : array_like of bool, same shape
        True for positives.

    Returns
    -------
    numpy.ndarray, shape (B,)
        Mann-Whitney AUC per row, ties counting half; NaN for a row without both classes.
        Vectorised, so a (n_boot, n) matrix of bootstrap samples is scored in one call.
    """
    from scipy.stats import rankdata

    scores, labels = np.atleast_2d(np.asarray(scores, np.float64)), np.atleast_2d(labels).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"auc_rows: scores has shape {scores.shape}, labels {labels.shape}")
    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(1).astype(np.float64)
    n_neg = labels.shape[1] - n_pos
    u = (ranks * labels).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """ROC-AUC of scores against boolean labels.

    The Mann-Whitney U statistic over ``n_pos * n_neg`` with average ranks, so ties count half;
    equal to ``sklearn.metrics.roc_auc_score``.

    Parameters
    ----------
    scores : array_like of float, shape (n,)
        Higher = more likely positive.
    labels : array_like of bool, shape (n,)
        True for positives.

    Returns
    -------
    float
        The AUC; NaN when either class is absent.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if scores.shape != labels.shape:
        raise ValueError(f"roc_auc: scores has {scores.shape} values, labels {labels.shape}")
    return float(auc_rows(scores[None], labels[None])[0])


def grouped_auc(scores: npt.ArrayLike, labels: npt.ArrayLike, groups: npt.ArrayLike) -> pd.DataFrame:
    """ROC-AUC within each group (per user: the terms of UAUC, the mean per-user AUC over users
    with both labels). Vectorised over groups: average ranks within each group, then the
    Mann-Whitney statistic per group, as :func:`auc_rows` does for one.

    Parameters
    ----------
    scores : array_like of float, shape (n,)
        Higher = more likely positive.
    labels : array_like of bool, shape (n,)
        True for positives.
    groups : array_like, shape (n,)
        The group of each score (e.g. its user).

    Returns
    -------
    pandas.DataFrame
        One row per group, in sorted group order: ``group``, ``auc`` (NaN without both labels),
        ``n_pos``, ``n_neg``.
    """
    import pandas as pd

    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    groups = np.asarray(groups)
    if not scores.shape == labels.shape == groups.shape or scores.ndim != 1:
        raise ValueError(
            f"grouped_auc: scores {scores.shape}, labels {labels.shape} and groups {groups.shape} must be equal 1-d"
        )
    frame = pd.DataFrame({"group": groups, "score": scores, "label": labels})
    frame["rank"] = frame.groupby("group")["score"].rank(method="average")
    frame["pos_rank"] = frame["rank"].where(frame["label"], 0.0)
    out = frame.groupby("group").agg(n_pos=("label", "sum"), n=("label", "size"), pos_rank=("pos_rank", "sum"))
    n_pos = out["n_pos"].to_numpy(np.float64)
    n_neg = out["n"].to_numpy(np.float64) - n_pos
    u = out["pos_rank"].to_numpy() - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return pd.DataFrame(
        {"group": out.index.to_numpy(), "auc": auc, "n_pos": n_pos.astype(np.int64), "n_neg": n_neg.astype(np.int64)}
    )


def macro_ovr_auc(proba: npt.ArrayLike, codes: npt.ArrayLike, rows: npt.ArrayLike | None = None) -> np.ndarray:
    """Macro one-vs-rest ROC-AUC of class probabilities.

    Parameters
    ----------
    proba : array_like, shape (n, C)
        Class probabilities.
    codes : array_like of int, shape (n,)
        True class codes in ``0 .. C-1``.
    rows : array_like of int, shape (B, n), optional
        Index samples (e.g. bootstrap rows); None scores the data as given.

    Returns
    -------
    numpy.ndarray, shape (B,)
        For C = 2 the AUC of column 1; otherwise the mean over classes of each class's
        one-vs-rest AUC, classes absent from a sample left out of its mean.
    """
    proba, codes = np.asarray(proba, np.float64), np.asarray(codes)
    rows = np.arange(len(codes))[None] if rows is None else np.atleast_2d(rows)
    y = codes[rows]
    if proba.shape[1] == 2:
        return auc_rows(proba[rows, 1], y == 1)
    per_class = np.stack([auc_rows(proba[rows, c], y == c) for c in range(proba.shape[1])])
    n_ok = (~np.isnan(per_class)).sum(0)
    return np.where(n_ok > 0, np.nansum(per_class, axis=0) / np.maximum(n_ok, 1), np.nan)


def roc_points(
    scores: npt.ArrayLike, labels: npt.ArrayLike, *, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Points of the empirical ROC curve.

    As ``sklearn.metrics.roc_curve``, from (0, 0) to (1, 1).

    Parameters
    ----------
    scores : array_like of float, shape (n,)
        Higher = more likely positive.
    labels : array_like of bool, shape (n,)
        True for positives.
    drop_intermediate : bool, default True
        Drop thresholds that do not change the curve's shape (``roc_curve``'s option).

    Returns
    -------
    fpr, tpr : numpy.ndarray of float
        False- and true-positive rates at decreasing thresholds.
    """
    from sklearn.metrics import roc_curve

    f, t, _ = roc_curve(np.asarray(labels, bool), np.asarray(scores, np.float64), drop_intermediate=drop_intermediate)
    return f, t


def tpr_at_fpr(scores: npt.ArrayLike, labels: npt.ArrayLike, fpr: float) -> float:
    """True-positive rate at a false-positive rate.

    The largest TPR among the thresholds of the empirical (step) ROC curve whose FPR is at most
    ``fpr``, without interpolation between ROC points (module docstring).

    Parameters
    ----------
    scores : array_like of float, shape (n,)
        Higher = more likely positive.
    labels : array_like of bool, shape (n,)
        True for positives.
    fpr : float
        Largest false-positive rate allowed, in [0, 1].

    Returns
    -------
    float
        The TPR; NaN when either class is absent.
    """
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    f, t = roc_points(scores, labels, drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())
