"""Matrix factorisation for missing-not-at-random ratings: naive, IPS and doubly robust (one family).

Target: **binary relevance**, not rating regression. A rated (observed) pair is a positive when its
rating is ``>= positive_threshold`` (4 by default, as on Coat and Yahoo! R3) and an exposed
negative otherwise; the model predicts ``P(relevant | user, item)`` as ``sigmoid(p_u . q_i + b_u +
b_i + b)`` and ranks by the logit. Losses are binary cross-entropy (``e``) over the observed pairs:

``method='naive'``
    the mean of ``e`` over observed pairs (biased towards what users chose to rate).
``method='ips'``
    inverse propensity scoring (Schnabel et al., ICML 2016): each observed pair weighs
    ``w = 1 / p`` with ``p = P(observed)``, so the loss estimates the mean error over *all* pairs.
    The weighted sum is divided by the mean weight of the observed pairs (a constant), so naive
    and IPS share learning rates; the gradient direction is exactly the IPS estimator's.
``method='dr'``
    doubly robust joint learning (Wang et al., ICML 2019): an imputation MF predicts each pair's
    label, hence its error ``e_hat``; the loss ``mean_all(e_hat) + mean_obs(w * (e - e_hat)) /
    mean_obs(w)`` uses uniformly sampled pairs for the first term, and the imputation model is
    fitted to ``mean_obs(w * (e - e_hat)^2)`` at the same steps (each term moves only its own
    model). The correction is self-normalised: it equals DR's ``(1 / n_pairs) * sum_obs(w * (e -
    e_hat))`` when the propensities are calibrated (``sum_obs(1 / p) = n_pairs``) and stays
    stable when they are not.

Propensities (``propensity``), for the observed pairs only (that is all IPS and DR need):

``'given'``
    ``dataset.extras[propensity_extra]``, a user x item matrix (Coat ships the authors' own).
``'popularity'``
    the item's observation rate in train: ``p_ui = n_i / n_users`` (``n_i`` = users who rated
    item i), the maximum-likelihood estimate of an exposure model that depends on the item only.
``'naive_bayes'``
    Schnabel et al.'s naive Bayes estimate from rating distributions:
    ``P(O=1 | r) = P(r | O=1) P(O=1) / P(r)``, with ``P(r | O=1)`` from the train ratings,
    ``P(O=1)`` the train density and ``P(r)`` from a seeded ``mar_share`` (5%) of a
    missing-at-random sample (``dataset.extras[mar_extra]``, the random-exposure test set), with
    add-one smoothing. Only that sample's rating histogram is used — as in the paper, which spent
    5% of the MAR data on it; say so when reporting on the same test set.

Clipping: a NaN, negative or above-1 propensity raises :class:`~trustrec.errors.DataError`;
propensities below ``propensity_clip`` (including 0) are raised to it, and naive-Bayes values
above 1 are lowered to 1. Every fit records what it did in ``propensity_summary_`` (method,
range, how many were clipped), which the runs and the benchmark print.

Data without ratings (implicit feedback) trains only with ``method='naive'``: every interaction
is a positive and ``implicit_negatives`` unobserved pairs per positive are drawn as negatives each
epoch. Users unknown at fit time score by the item biases alone.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, IndexedArray, Interactions, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models._torch import batched

__all__ = ["MF", "MFConfig", "estimate_propensities", "ips_weights"]


class MFConfig(Config):
    """Hyper-parameters of :class:`MF` (see the module docstring for the losses and propensities).

    Parameters
    ----------
    method : {"naive", "ips", "dr"}
        Training loss: naive binary cross-entropy over the observed pairs, inverse propensity
        scoring, or doubly robust joint learning (default ``"naive"``). ``"ips"`` and ``"dr"``
        need explicit ratings.
    propensity : {"given", "popularity", "naive_bayes"}
        How the observation propensities of ``"ips"`` and ``"dr"`` are obtained: the dataset's
        own matrix (``propensity_extra``), the item's observation rate in train, or the naive
        Bayes estimate from rating distributions (default ``"popularity"``). Unused by
        ``"naive"``.
    propensity_extra : str
        Name of the dataset extra holding the user x item propensity matrix, for
        ``propensity="given"`` (default ``"propensities"``).
    mar_extra : str
        Name of the dataset extra holding a rated missing-at-random sample, for
        ``propensity="naive_bayes"`` (default ``"random_exposure_test"``).
    mar_share : float
        Share of the ``mar_extra`` ratings, in ``(0, 1]``, drawn (seeded) to estimate the
        missing-at-random rating distribution for ``propensity="naive_bayes"`` (default 0.05).
    propensity_clip : float
        Lower bound, in ``(0, 1]``, to which smaller propensities (0 included) are raised before
        weighting by ``1 / p`` (default 0.01).
    positive_threshold : float
        A rated pair is a positive when its rating is ``>=`` this value, an exposed negative
        otherwise (default 4.0). Unused on data without ratings.
    implicit_negatives : int
        On data without ratings: unobserved pairs drawn as negatives per positive, each epoch
        (default 4).
    embedding_size : int
        Dimension of the user and item factors (default 16).
    epochs : int
        Training epochs (default 40).
    batch_size : int
        Observed pairs per Adam step (default 256).
    learning_rate : float
        Adam learning rate (default 0.01).
    reg : float
        L2 penalty on the factors used in each batch, divided by the batch's pair count
        (default 1e-2).
    uniform_ratio : int
        For ``method="dr"``: uniformly sampled (user, item) pairs per observed pair in each batch
        (default 1).
    """

    method: Literal["naive", "ips", "dr"] = "naive"
    propensity: Literal["given", "popularity", "naive_bayes"] = "popularity"
    propensity_extra: str = "propensities"  # for propensity='given'
    mar_extra: str = "random_exposure_test"  # for propensity='naive_bayes'
    mar_share: float = Field(0.05, gt=0.0, le=1.0)
    propensity_clip: float = Field(0.01, gt=0.0, le=1.0)
    positive_threshold: float = 4.0
    implicit_negatives: PositiveInt = 4
    embedding_size: PositiveInt = 16
    epochs: PositiveInt = 40
    batch_size: PositiveInt = 256
    learning_rate: PositiveFloat = 0.01
    reg: NonNegativeFloat = 1e-2  # L2 on the factors used in each batch
    uniform_ratio: PositiveInt = 1  # dr: uniformly sampled pairs per observed pair


def ips_weights(propensities, clip: float = 0.01) -> tuple[np.ndarray, int]:
    """``(1 / max(p, clip), n_clipped)`` for observed-pair propensities ``p``.

    NaN, negative or above-1 values raise ``DataError`` (a propensity is a probability); values
    below ``clip`` (0 included) are raised to ``clip`` and counted.

    Parameters
    ----------
    propensities : array-like of float
        Observation probabilities of the observed pairs.
    clip : float
        Lower bound, in ``(0, 1]``, to which smaller propensities are raised (default 0.01).

    Returns
    -------
    weights : numpy.ndarray
        ``1 / max(p, clip)`` per pair (float64).
    n_clipped : int
        How many propensities were below ``clip``.

    Raises
    ------
    ConfigError
        When ``clip`` is not in ``(0, 1]``.
    DataError
        When a propensity is NaN or outside ``[0, 1]``.
    """
    p = np.asarray(propensities, dtype=np.float64)
    if not 0 < clip <= 1:
        raise ConfigError(f"ips_weights: clip must be in (0, 1], got {clip}")
    nan = np.isnan(p)
    if nan.any():
        raise DataError(
            f"ips_weights: {int(nan.sum())} of {p.size} propensities are NaN; a propensity is "
            "the probability that the pair was observed: fill or re-estimate them"
        )
    bad = (p < 0) | (p > 1)
    if bad.any():
        raise DataError(
            f"ips_weights: {int(bad.sum())} propensities lie outside [0, 1] (e.g. "
            f"{p[bad][0]:g}); propensities are probabilities"
        )
    low = p < clip
    return 1.0 / np.where(low, clip, p), int(low.sum())


def _observed(train: Dataset) -> Interactions:
    """Train interactions with each (user, item) pair once (the last rating wins)."""
    inter = train.interactions
    key = inter.user * train.n_items + inter.item
    _, first_rev = np.unique(key[::-1], return_index=True)
    rows = np.sort(len(key) - 1 - first_rev)
    return inter.select(rows)


def estimate_propensities(
    train: Dataset, observed: Interactions, config: MFConfig, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Propensities of the ``observed`` pairs by ``config.propensity`` (before clipping), and a
    JSON-ready summary of how they were obtained.

    Parameters
    ----------
    train : Dataset
        Training data (its ``extras`` for ``"given"`` and ``"naive_bayes"``, its size for the
        density).
    observed : Interactions
        The observed pairs, each (user, item) pair once.
    config : MFConfig
        Which estimate (``propensity``) and its settings (``propensity_extra``, ``mar_extra``,
        ``mar_share``).
    seed : int
        Seed of the ``mar_share`` sample for ``"naive_bayes"`` (default 0).

    Returns
    -------
    propensities : numpy.ndarray
        One float64 propensity per observed pair (naive-Bayes values capped at 1).
    info : dict
        How they were obtained: ``method``, ``source`` and, for ``"naive_bayes"``, the rating
        ``levels``, the ``per_level`` estimates and ``n_above_one``.

    Raises
    ------
    DataError
        When the dataset lacks the user x item matrix ``propensity_extra`` (``"given"``), or
        ratings in train or a rated ``mar_extra`` sample (``"naive_bayes"``).
    """
    method = config.propensity
    n_users, n_items = train.n_users, train.n_items
    info: dict[str, Any] = {"method": method}
    if method == "given":
        extra = train.extras.get(config.propensity_extra)
        if not isinstance(extra, IndexedArray) or extra.axes[:2] != ("user", "item"):
            raise DataError(
                f"MF(propensity='given'): dataset '{train.name}' has no user x item propensity matrix "
                f"{config.propensity_extra!r} (extras: {sorted(train.extras)}); use propensity='popularity' "
                "or 'naive_bayes', or load a dataset that ships propensities (coat)"
            )
        p = np.asarray(extra.array, dtype=np.float64)[observed.user, observed.item]
        info["source"] = f"extras[{config.propensity_extra!r}]"
    elif method == "popularity":
        n_i = np.bincount(observed.item, minlength=n_items).astype(np.float64)
        p = n_i[observed.item] / max(n_users, 1)
        info["source"] = "item observation rate in train: n_i / n_users"
    else:  # naive_bayes
        mar = train.extras.get(config.mar_extra)
        if observed.rating is None:
            raise DataError(
                "MF(propensity='naive_bayes') needs ratings in train (it compares rating "
                "distributions); this training data is implicit"
            )
        if not isinstance(mar, Interactions) or mar.rating is None or len(mar) == 0:
            raise DataError(
                f"MF(propensity='naive_bayes'): dataset '{train.name}' has no rated missing-at-random sample "
                f"{config.mar_extra!r} (extras: {sorted(train.extras)}); use propensity='popularity'"
            )
        rng = np.random.default_rng(seed)
        n_take = max(1, round(config.mar_share * len(mar)))
        sample = mar.rating[rng.choice(len(mar), n_take, replace=False)]
        levels, train_idx = np.unique(observed.rating, return_inverse=True)
        p_r_obs = np.bincount(train_idx, minlength=len(levels)) / len(observed)
        mar_counts = np.array([(sample == v).sum() for v in levels], dtype=np.float64)
        p_r = (mar_counts + 1.0) / (len(sample) + len(levels))  # add-one smoothing
        p_obs = len(observed) / (n_users * n_items)
        per_level = p_r_obs * p_obs / p_r
        info.update(
            source=f"naive Bayes over ratings; P(r) from {n_take} of {len(mar)} ratings of "
            f"extras[{config.mar_extra!r}] (share {config.mar_share:g}, seed {seed})",
            levels=[float(v) for v in levels],
            per_level=[float(v) for v in per_level],
            n_above_one=int((per_level[train_idx] > 1).sum()),
        )
        p = np.minimum(per_level[train_idx], 1.0)
    return p, info


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Factors:
    """One MF's parameters (float64) with Adam state; gradients arrive for the rows a batch used."""

    NAMES = ("user", "item", "user_bias", "item_bias", "bias")

    def __init__(self, n_users: int, n_items: int, d: int, rng: np.random.Generator):
        self.user = rng.normal(0.0, 0.1, (n_users, d))
        self.item = rng.normal(0.0, 0.1, (n_items, d))
        self.user_bias = np.zeros(n_users)
        self.item_bias = np.zeros(n_items)
        self.bias = np.zeros(1)
        self._m = {k: np.zeros_like(getattr(self, k)) for k in self.NAMES}
        self._v = {k: np.zeros_like(getattr(self, k)) for k in self.NAMES}
        self._t = 0

    def logit(self, u, i):
        return (self.user[u] * self.item[i]).sum(1) + self.user_bias[u] + self.item_bias[i] + self.bias[0]

    def grads(self, u, i, g, reg_scale: float) -> dict[str, np.ndarray]:
        """Gradients of ``sum(g * logit(u, i)) + reg_scale * (|user[u]|^2 + |item[i]|^2)``."""
        out = {k: np.zeros_like(getattr(self, k)) for k in self.NAMES}
        pu, qi = self.user[u], self.item[i]
        np.add.at(out["user"], u, g[:, None] * qi + 2 * reg_scale * pu)
        np.add.at(out["item"], i, g[:, None] * pu + 2 * reg_scale * qi)
        out["user_bias"] += np.bincount(u, weights=g, minlength=len(self.user_bias))
        out["item_bias"] += np.bincount(i, weights=g, minlength=len(self.item_bias))
        out["bias"][0] = g.sum()
        return out

    def step(self, grads: dict[str, np.ndarray], lr: float, b1=0.9, b2=0.999, eps=1e-8) -> None:
        self._t += 1
        c1, c2 = 1 - b1**self._t, 1 - b2**self._t
        for k, g in grads.items():
            m, v = self._m[k], self._v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            getattr(self, k)[...] -= lr * (m / c1) / (np.sqrt(v / c2) + eps)


@register_model
class MF(Recommender):
    """Binary-relevance matrix factorisation trained naively, with IPS or doubly robust (see the
    module docstring for the losses, the propensity estimates and the clipping). Plain numpy with
    hand-written gradients and Adam: on Coat-sized data a fit takes well under a second.

    Parameters
    ----------
    config : MFConfig, mapping or None
        Hyper-parameters (see :class:`MFConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "mf"
    config_class = MFConfig
    config: MFConfig
    capabilities = frozenset({"score", "stochastic_training"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:

        cfg = self.config
        rng = options.rng()
        obs = _observed(train)
        implicit = obs.rating is None
        if implicit and cfg.method != "naive":
            raise DataError(
                f"MF(method={cfg.method!r}) needs explicit ratings: its loss weighs the exposed (rated) "
                "pairs, positives and negatives; this training data has no ratings. Use method='naive' "
                "(sampled negatives) or load the ratings"
            )
        y = np.ones(len(obs)) if obs.rating is None else (obs.rating >= cfg.positive_threshold).astype(np.float64)
        summary: dict[str, Any] = {
            "method": cfg.method,
            "n_observed": len(obs),
            "positive_share": float(y.mean()),
            "target": (
                "implicit: interactions are positives, sampled pairs negatives"
                if implicit
                else f"binary relevance: rating >= {cfg.positive_threshold:g}"
            ),
        }
        w = np.ones(len(obs))
        if cfg.method != "naive":
            p, info = estimate_propensities(train, obs, cfg, seed=int(rng.integers(2**31)))
            w, n_clipped = ips_weights(p, cfg.propensity_clip)
            summary.update(
                propensity=info,
                clip=cfg.propensity_clip,
                n_clipped=n_clipped,
                p_min=float(p.min()),
                p_mean=float(p.mean()),
                p_max=float(p.max()),
                weight_max=float(w.max()),
            )
        w = w / w.mean()
        n_users, n_items = train.n_users, train.n_items
        pred = _Factors(n_users, n_items, cfg.embedding_size, rng)
        imp = _Factors(n_users, n_items, cfg.embedding_size, rng) if cfg.method == "dr" else None
        self.propensity_summary_ = summary
        self._publish(pred)
        keys = obs.user * n_items + obs.item
        from trustrec.models.training import EpochLoop, early_stopping_from, progress_from

        def train_epoch(epoch: int) -> float:
            u_all, i_all, y_all, w_all = obs.user, obs.item, y, w
            if implicit:
                u_all, i_all, y_all, w_all = self._with_negatives(obs, keys, rng, n_users, n_items)
            total = 0.0
            for rows in batched(len(u_all), cfg.batch_size, rng):
                total += self._step(
                    pred, imp, u_all[rows], i_all[rows], y_all[rows], w_all[rows], rng, n_users, n_items
                ) * len(rows)
            return total / max(len(u_all), 1)

        validator = options.validator

        def score() -> float:  # called only with a validator (early_stopping_from)
            self._publish(pred)
            assert validator is not None
            return validator(self)

        def restore(state) -> None:
            for k, v in state.items():
                getattr(pred, k)[...] = v

        stopper = early_stopping_from(
            options, score, snapshot=lambda: {k: getattr(pred, k).copy() for k in _Factors.NAMES}, restore=restore
        )
        loop = EpochLoop(train_epoch, cfg.epochs, [stopper, progress_from(options, f"fit {self.name}")]).run()
        self._publish(pred)
        self.history_ = {
            "loss": loop.losses,
            "valid": [[e, s] for e, s in stopper.scores] if stopper else [],
            "best_epoch": (stopper.best_epoch if stopper else 0) or loop.epochs_run,
            "epochs_run": loop.epochs_run,
        }

    def _publish(self, pred: _Factors) -> None:
        self.user_factors_ = pred.user
        self.item_factors_ = pred.item
        self.item_bias_ = pred.item_bias + pred.bias[0]

    def _with_negatives(self, obs, keys, rng, n_users, n_items):
        n_neg = self.config.implicit_negatives * len(obs)
        users = rng.integers(0, n_users, n_neg)
        items = rng.integers(0, n_items, n_neg)
        for _ in range(5):  # resample the few "negatives" that are in fact interactions
            clash = np.isin(users * n_items + items, keys)
            if not clash.any():
                break
            items[clash] = rng.integers(0, n_items, int(clash.sum()))
        return (
            np.concatenate([obs.user, users]),
            np.concatenate([obs.item, items]),
            np.concatenate([np.ones(len(obs)), np.zeros(n_neg)]),
            np.ones(len(obs) + n_neg),
        )

    def _step(self, pred: _Factors, imp: _Factors | None, u, i, y, w, rng, n_users, n_items) -> float:
        cfg = self.config
        b = len(u)
        f = pred.logit(u, i)
        err = _softplus(f) - y * f  # BCE with logits
        if imp is None:  # naive / ips
            g = w * (_sigmoid(f) - y) / b
            pred.step(pred.grads(u, i, g, cfg.reg / b), cfg.learning_rate)
            return float((w * err).mean())
        m = b * cfg.uniform_ratio
        ua, ia = rng.integers(0, n_users, m), rng.integers(0, n_items, m)
        fa = pred.logit(ua, ia)
        sa = _sigmoid(imp.logit(ua, ia))  # imputed labels, held fixed
        go = imp.logit(u, i)
        so = _sigmoid(go)
        e_hat_obs = _softplus(f) - so * f
        e_hat_all = _softplus(fa) - sa * fa
        loss = float(e_hat_all.mean() + (w * (err - e_hat_obs)).mean())
        # prediction model: d/df of mean_a(e_hat) + mean_o(w * (e - e_hat)); the sigmoid terms cancel
        g_obs = w * (so - y) / b
        g_all = (_sigmoid(fa) - sa) / m
        grads = pred.grads(
            np.concatenate([u, ua]), np.concatenate([i, ia]), np.concatenate([g_obs, g_all]), cfg.reg / (b + m)
        )
        # imputation model: mean_o(w * (e - e_hat)^2) with the prediction held fixed;
        # d e_hat / d so = -f and d so / d go = so * (1 - so)
        g_imp = w * 2.0 * (e_hat_obs - err) * (-f) * so * (1.0 - so) / b
        pred.step(grads, cfg.learning_rate)
        imp.step(imp.grads(u, i, g_imp, cfg.reg / b), cfg.learning_rate)
        return loss + float((w * (err - e_hat_obs) ** 2).mean())

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        user = np.zeros((len(queries), self.item_factors_.shape[1]))
        known = queries.users >= 0
        user[known] = self.user_factors_[queries.users[known]]
        return user @ self.item_factors_.T + self.item_bias_
