"""MF naive / IPS / DR: IPS weights and propensity estimates against manual computations, the
hand-written gradients against finite differences of the documented losses, clipping and bad
input, and the conformance suite for each method."""

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, IndexedArray, Interactions, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.models import FitOptions, make_model
from trustrec.models.classic import MF
from trustrec.models.classic._mf import (
    MFConfig,
    _Factors,
    _observed,
    estimate_propensities,
    ips_weights,
)
from trustrec.testing import RecommenderChecks, toy_dataset


def rated_toy(seed: int = 0) -> Dataset:
    """The conformance toy dataset with ratings 1-5, a propensity matrix and a MAR sample."""
    ds = toy_dataset(seed=seed)
    rng = np.random.default_rng(seed)
    inter = ds.interactions
    rating = np.where(inter.item % 3 == inter.user % 3, 5.0, rng.integers(1, 4, len(inter)).astype(float))
    users = np.repeat(np.arange(ds.n_users), 4)
    items = rng.integers(0, ds.n_items, len(users))
    mar = Interactions(users, items, np.zeros(len(users)), rng.integers(1, 6, len(users)).astype(float))
    prop = IndexedArray(rng.uniform(0.02, 0.5, (ds.n_users, ds.n_items)), ("user", "item"))
    base = ds.with_interactions(Interactions(inter.user, inter.item, inter.timestamp, rating))
    return Dataset(
        base.name, base.interactions, base.items, base.users, extras={"random_exposure_test": mar, "propensities": prop}
    )


# -- IPS weights and propensities --------------------------------------------------------------------
def test_ips_weights_match_manual_computation():
    p = np.array([0.5, 0.25, 0.1, 0.02, 0.0, 0.004, 1.0])
    w, n_clipped = ips_weights(p, clip=0.01)
    np.testing.assert_allclose(w, [2.0, 4.0, 10.0, 50.0, 100.0, 100.0, 1.0])
    assert n_clipped == 2
    with pytest.raises(DataError, match="1 of 2 propensities are NaN"):
        ips_weights([0.5, np.nan])
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        ips_weights([0.5, 1.5])
    with pytest.raises(ConfigError, match="clip must be in"):
        ips_weights([0.5], clip=0)


def test_propensity_estimates_match_manual_computation():
    ds = rated_toy()
    obs = _observed(ds)
    # given: the matrix entries of the observed pairs
    p, info = estimate_propensities(ds, obs, MFConfig(method="ips", propensity="given"))
    np.testing.assert_allclose(p, ds.extras["propensities"].array[obs.user, obs.item])
    # popularity: the share of users who rated the item
    p, _ = estimate_propensities(ds, obs, MFConfig(method="ips", propensity="popularity"))
    n_i = np.array([len(np.unique(obs.user[obs.item == i])) for i in range(ds.n_items)])
    np.testing.assert_allclose(p, n_i[obs.item] / ds.n_users)
    # naive Bayes on the whole MAR sample: P(r | O) P(O) / P(r), add-one smoothed P(r)
    p, info = estimate_propensities(ds, obs, MFConfig(method="ips", propensity="naive_bayes", mar_share=1.0))
    mar = ds.extras["random_exposure_test"].rating
    levels = np.unique(obs.rating)
    density = len(obs) / (ds.n_users * ds.n_items)
    for r in levels:
        expect = (np.mean(obs.rating == r) * density) / ((np.sum(mar == r) + 1) / (len(mar) + len(levels)))
        np.testing.assert_allclose(p[obs.rating == r], min(expect, 1.0))
    assert info["levels"] == [float(v) for v in levels]


def test_observed_pairs_once_last_rating_wins():
    frame = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["x", "x", "y"], "timestamp": [0, 1, 2], "rating": [1.0, 5.0, 3.0]}
    )
    obs = _observed(Dataset.from_frame(frame, name="dup"))
    assert len(obs) == 2 and sorted(obs.rating.tolist()) == [3.0, 5.0]


# -- gradients against finite differences of the documented losses ------------------------------------
def _capture_step(monkeypatch):
    captured = []
    monkeypatch.setattr(_Factors, "step", lambda self, grads, lr, **kw: captured.append((self, grads)))
    return captured


def _numeric_grad(loss, params: _Factors, name: str, idx, eps=1e-6):
    arr = getattr(params, name)
    old = arr[idx]
    arr[idx] = old + eps
    up = loss()
    arr[idx] = old - eps
    down = loss()
    arr[idx] = old
    return (up - down) / (2 * eps)


def _sp(x):
    return np.logaddexp(0, x)


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("method", ["naive", "ips"])
def test_pointwise_gradients(monkeypatch, method):
    rng = np.random.default_rng(0)
    model = MF(method=method, embedding_size=3, reg=0.05)
    pred = _Factors(6, 5, 3, rng)
    u, i = rng.integers(0, 6, 8), rng.integers(0, 5, 8)
    y, w = (rng.random(8) < 0.4).astype(float), rng.uniform(0.5, 3, 8)
    captured = _capture_step(monkeypatch)
    model._step(pred, None, u, i, y, w, rng, 6, 5)
    ((_, grads),) = captured
    b = len(u)

    def loss():
        f = pred.logit(u, i)
        reg = 0.05 / b * ((pred.user[u] ** 2).sum() + (pred.item[i] ** 2).sum())
        return np.mean(w * (_sp(f) - y * f)) + reg

    for name, idx in (("user", (u[0], 1)), ("item", (i[2], 0)), ("item_bias", i[3]), ("user_bias", u[4]), ("bias", 0)):
        assert grads[name][idx] == pytest.approx(_numeric_grad(loss, pred, name, idx), rel=1e-5, abs=1e-8)


def test_doubly_robust_gradients(monkeypatch):
    rng = np.random.default_rng(1)
    model = MF(method="dr", embedding_size=3, reg=0.02, uniform_ratio=2)
    pred, imp = _Factors(6, 5, 3, rng), _Factors(6, 5, 3, rng)
    u, i = rng.integers(0, 6, 7), rng.integers(0, 5, 7)
    y, w = (rng.random(7) < 0.4).astype(float), rng.uniform(0.5, 3, 7)
    captured = _capture_step(monkeypatch)
    state = np.random.default_rng(5)
    model._step(pred, imp, u, i, y, w, state, 6, 5)
    ua = np.random.default_rng(5).integers(0, 6, 14)  # the uniform pairs _step drew
    ia = np.random.default_rng(5)
    ia.integers(0, 6, 14)
    ia = ia.integers(0, 5, 14)
    (g_pred_owner, g_pred), (g_imp_owner, g_imp) = captured
    assert g_pred_owner is pred and g_imp_owner is imp
    b, m = 7, 14

    def loss_pred():  # imputed labels held fixed
        f, fa = pred.logit(u, i), pred.logit(ua, ia)
        so, sa = _sig(imp.logit(u, i)), _sig(imp.logit(ua, ia))
        e, e_hat, e_hat_all = _sp(f) - y * f, _sp(f) - so * f, _sp(fa) - sa * fa
        reg = 0.02 / (b + m) * ((pred.user[np.r_[u, ua]] ** 2).sum() + (pred.item[np.r_[i, ia]] ** 2).sum())
        return e_hat_all.mean() + np.mean(w * (e - e_hat)) + reg

    def loss_imp():  # prediction held fixed
        f = pred.logit(u, i)
        so = _sig(imp.logit(u, i))
        e, e_hat = _sp(f) - y * f, _sp(f) - so * f
        reg = 0.02 / b * ((imp.user[u] ** 2).sum() + (imp.item[i] ** 2).sum())
        return np.mean(w * (e - e_hat) ** 2) + reg

    for name, idx in (("user", (u[0], 2)), ("item", (ia[1], 1)), ("item_bias", i[3]), ("bias", 0)):
        assert g_pred[name][idx] == pytest.approx(_numeric_grad(loss_pred, pred, name, idx), rel=1e-5, abs=1e-8)
    for name, idx in (("user", (u[1], 0)), ("item", (i[2], 2)), ("user_bias", u[5]), ("bias", 0)):
        assert g_imp[name][idx] == pytest.approx(_numeric_grad(loss_imp, imp, name, idx), rel=1e-5, abs=1e-8)


# -- fitting, clipping, bad input -----------------------------------------------------------------------
def test_ips_records_clipping_and_learns():
    ds = rated_toy()
    arr = ds.extras["propensities"].array.copy()
    arr[ds.interactions.user[:5], ds.interactions.item[:5]] = 0.0  # zero propensities: clipped, counted
    ds0 = Dataset(
        ds.name,
        ds.interactions,
        ds.items,
        ds.users,
        extras={**ds.extras, "propensities": IndexedArray(arr, ("user", "item"))},
    )
    model = make_model("mf", method="ips", propensity="given", epochs=30).fit(ds0, FitOptions(progress=False))
    summary = model.propensity_summary_
    obs = _observed(ds0)
    assert summary["n_clipped"] == int((arr[obs.user, obs.item] < 0.01).sum()) >= 1
    assert summary["clip"] == 0.01 and summary["p_min"] == 0.0
    assert summary["weight_max"] == pytest.approx(100.0)
    # learnt the block structure: positives (item % 3 == user % 3) outrank the others on average
    from trustrec.data import QueryBatch, Ragged

    scores = model.score(QueryBatch(np.arange(ds.n_users), Ragged(np.zeros(ds.n_users + 1, int), np.empty(0, int))))
    liked = (np.arange(ds.n_items)[None, :] % 3) == (np.arange(ds.n_users)[:, None] % 3)
    assert scores[liked].mean() > scores[~liked].mean()
    arr[0, ds.interactions.item[ds.interactions.user == 0][0]] = np.nan
    bad = Dataset(
        ds.name,
        ds.interactions,
        ds.items,
        ds.users,
        extras={**ds.extras, "propensities": IndexedArray(arr, ("user", "item"))},
    )
    with pytest.raises(DataError, match="NaN"):
        make_model("mf", method="ips", propensity="given", epochs=1).fit(bad, FitOptions(progress=False))


def test_bad_input():
    implicit = toy_dataset()
    with pytest.raises(DataError, match="needs explicit ratings"):
        MF(method="dr").fit(implicit, FitOptions(progress=False))
    plain = rated_toy().with_interactions(rated_toy().interactions)
    no_extras = Dataset(plain.name, plain.interactions, plain.items, plain.users)
    with pytest.raises(DataError, match="no user x item propensity matrix 'propensities'"):
        MF(method="ips", propensity="given").fit(no_extras, FitOptions(progress=False))
    with pytest.raises(DataError, match="no rated missing-at-random sample"):
        MF(method="ips", propensity="naive_bayes").fit(no_extras, FitOptions(progress=False))
    with pytest.raises(ConfigError, match="method"):
        MF(method="magic")
    with pytest.raises(ConfigError, match="mar_share"):
        MF(mar_share=0)


def test_methods_differ_and_are_seeded():
    ds = rated_toy()
    split = split_leave_one_out(ds, short_users="train")
    out = {}
    for method in ("naive", "ips", "dr"):
        a = MF(method=method, epochs=5).fit(split, FitOptions(seed=1, progress=False))
        b = MF(method=method, epochs=5).fit(split, FitOptions(seed=1, progress=False))
        np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
        out[method] = a.item_factors_
    assert not np.allclose(out["naive"], out["ips"]) and not np.allclose(out["ips"], out["dr"])


# -- conformance --------------------------------------------------------------------------------------
class TestMFNaiveImplicit(RecommenderChecks):
    component = MF
    configs: ClassVar[list[dict[str, Any]]] = [{"epochs": 3, "embedding_size": 8}]


class _Rated(RecommenderChecks):
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = rated_toy()
        return ds, split_leave_one_out(ds, short_users="train")


class TestMFIPS(_Rated):
    component = MF
    configs: ClassVar[list[dict[str, Any]]] = [
        {"method": "ips", "propensity": "given", "epochs": 3, "embedding_size": 8}
    ]


class TestMFDR(_Rated):
    component = MF
    configs: ClassVar[list[dict[str, Any]]] = [
        {"method": "dr", "propensity": "popularity", "epochs": 3, "embedding_size": 8}
    ]
