"""Trade-off curves: table shape, monotone trends on a case built to show them, consistency with
the wrappers, one base ranking for all strengths, errors."""

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.eval import evaluate
from trustrec.mitigate import CalibratedReranker, ExposureReranker, tradeoff_curve, tradeoff_points
from trustrec.models import FitOptions, make_model
from trustrec.testing import PrecomputedScores, toy_dataset

from ._data import genre_toy, popularity_genre_case

QUIET = FitOptions(progress=False)
LAMBDAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.fixture(scope="module")
def case():
    ds, eval_set, table = popularity_genre_case()
    return ds, eval_set, PrecomputedScores(table).fit(ds, QUIET)


def test_calibration_curve_falls_with_strength(case):
    ds, eval_set, model = case
    table = tradeoff_curve(model, eval_set, LAMBDAS, method="calibrated", train=ds, k=6, n_candidates=30, n_boot=50)
    kl = table["miscalibration"].to_numpy()
    assert kl[0] > 1.0 and kl[-1] < 0.05  # all genre A at first; half B at the end
    assert np.all(np.diff(kl) <= 1e-9)


@pytest.mark.parametrize("variant", ["binary", "smooth"])
def test_exposure_curve_rises_with_strength(case, variant):
    ds, eval_set, model = case
    table = tradeoff_curve(
        model, eval_set, LAMBDAS, method="exposure", train=ds, k=6, n_candidates=30, n_boot=50, variant=variant
    )
    a = table["aplt"].to_numpy()
    assert a[-1] > a[0]
    assert np.all(np.diff(a) >= -1e-9)
    assert table["exposure_gini"].iloc[-1] <= table["exposure_gini"].iloc[0]


def test_table_shape_and_columns(case):
    ds, eval_set, model = case
    table = tradeoff_curve(model, eval_set, [0, 0.5], method="exposure", train=ds, k=5, n_boot=20)

    def ci(name):
        return [name, f"{name}_ci_low", f"{name}_ci_high"]

    assert list(table.columns) == (
        ["strength", *ci("ndcg@5"), *ci("recall@5"), *ci("aplt"), "coverage", "exposure_gini", "n_users"]
    )
    assert table["strength"].tolist() == [0.0, 0.5] and (table["n_users"] == len(eval_set)).all()
    assert (table["ndcg@5_ci_low"] <= table["ndcg@5"]).all() and (table["ndcg@5"] <= table["ndcg@5_ci_high"]).all()
    calib = tradeoff_curve(model, eval_set, [0.3], method="calibrated", train=ds, k=5, n_boot=0)
    assert "miscalibration" in calib.columns and "aplt" not in calib.columns and len(calib) == 1


@pytest.mark.parametrize("method, cls", [("calibrated", CalibratedReranker), ("exposure", ExposureReranker)])
def test_curve_matches_the_wrapper_and_the_evaluator(method, cls):
    split = split_leave_one_out(genre_toy(), short_users="train")
    base = make_model("item_knn", k=10).fit(split, QUIET)
    ev = split.eval_set("test")
    table = tradeoff_curve(base, ev, [0.0, 0.5], method=method, train=split, k=5, n_candidates=10, n_boot=0)
    rows = table.set_index("strength")
    for strength in (0.0, 0.5):
        model = cls.from_fitted(base, split, strength=strength, n_candidates=10)
        result = evaluate(model, ev, metrics=["ndcg@5", "recall@5"], n_boot=0, progress=False)
        assert rows.loc[strength, "ndcg@5"] == pytest.approx(result.mean("ndcg@5"))
        assert rows.loc[strength, "recall@5"] == pytest.approx(result.mean("recall@5"))


def test_base_ranks_once_for_all_strengths(case):
    ds, eval_set, model = case
    calls = []
    original = model.recommend

    def counting(queries, k=10, **kw):
        calls.append(k)
        return original(queries, k, **kw)

    model.recommend = counting
    try:
        tradeoff_points(model, eval_set, LAMBDAS, method="calibrated", train=ds, k=5, n_candidates=20)
    finally:
        del model.recommend
    assert calls == [20]


def test_points_carry_per_user_values(case):
    ds, eval_set, model = case
    points = tradeoff_points(model, eval_set, [0, 1], method="calibrated", train=ds, k=5)
    assert [p.strength for p in points] == [0.0, 1.0] and points[0].groups == "genre"
    assert list(points[0].per_user.columns) == ["user", "ndcg@5", "recall@5", "miscalibration"]
    np.testing.assert_array_equal(points[0].per_user["user"], eval_set.queries.users)


def test_errors(case):
    ds, eval_set, model = case
    with pytest.raises(ConfigError, match="method must be one of"):
        tradeoff_curve(model, eval_set, [0], method="fair", train=ds)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        tradeoff_curve(model, eval_set, [0, 1.5], train=ds)
    with pytest.raises(ConfigError, match="at least one strength"):
        tradeoff_curve(model, eval_set, [], train=ds)
    with pytest.raises(ConfigError, match="'strength' is not a parameter"):
        tradeoff_curve(model, eval_set, [0], train=ds, strength=0.5)
    with pytest.raises(ConfigError, match="no_such_field"):
        tradeoff_curve(model, eval_set, [0], train=ds, no_such_field=1)
    with pytest.raises(ConfigError, match="knows 40 items"):
        tradeoff_curve(model, eval_set, [0], train=toy_dataset())
    plain = toy_dataset()
    plain_model = make_model("most_popular").fit(plain, QUIET)
    ev = split_leave_one_out(plain, short_users="train").eval_set("test")
    with pytest.raises(DataError, match="no item group column"):
        tradeoff_curve(plain_model, ev, [0], method="calibrated", train=plain)
    assert len(tradeoff_curve(plain_model, ev, [0, 1], method="exposure", train=plain, n_boot=0)) == 2
