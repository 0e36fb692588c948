"""GroupMetricFrame against a manual pandas computation, and its edge cases."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trustrec.eval import GroupMetricFrame


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    groups = np.array(["a"] * 60 + ["b"] * 50 + ["c"] * 40 + ["tiny"] * 5 + [None] * 7, dtype=object)
    values = pd.DataFrame(
        {
            "ndcg": rng.random(len(groups)) * np.where(groups == "a", 1.0, 0.5),
            "hr": (rng.random(len(groups)) < 0.3).astype(float),
        }
    )
    values.loc[3, "ndcg"] = np.nan  # a user without a target for this metric
    return values, groups


def test_matches_manual_pandas(frame):
    values, groups = frame
    gmf = GroupMetricFrame(metrics=values, groups=groups, n_boot=200, seed=0, min_group_size=20)
    labels = pd.Series(groups).fillna("(missing)")
    manual = values.groupby(labels.to_numpy()).mean()
    for m in ("ndcg", "hr"):
        pd.testing.assert_series_equal(gmf.by_group[m], manual[m], check_names=False)
        eligible = manual.loc[["a", "b", "c"], m]
        assert gmf.difference()[m] == pytest.approx(eligible.max() - eligible.min())
        assert gmf.ratio()[m] == pytest.approx(eligible.min() / eligible.max())
        samples = [values[m][(labels == g).to_numpy()].dropna() for g in ("a", "b", "c")]
        assert gmf.comparisons.loc[m, "p_value"] == pytest.approx(stats.kruskal(*samples).pvalue)
        assert gmf.overall[m] == pytest.approx(values[m].mean())
    assert gmf.by_group.loc["a", "n_users"] == 60
    assert gmf.n_missing == 7
    assert gmf.group_min()["ndcg"] == pytest.approx(manual.loc[["a", "b", "c"], "ndcg"].min())


def test_small_and_missing_groups_are_flagged_not_compared(frame):
    values, groups = frame
    gmf = GroupMetricFrame(metrics=values, groups=groups, n_boot=100, min_group_size=20)
    t = gmf.table.set_index(["metric", "group"])
    assert t.loc[("ndcg", "tiny"), "too_small"] and np.isnan(t.loc[("ndcg", "tiny"), "ci_low"])
    assert t.loc[("ndcg", "(missing)"), "missing_label"]
    assert gmf.comparisons.loc["ndcg", "n_groups_compared"] == 3
    lo, hi = t.loc[("ndcg", "a"), ["ci_low", "ci_high"]]
    assert lo <= t.loc[("ndcg", "a"), "mean"] <= hi
    row = gmf.comparisons.loc["ndcg"]
    assert row.difference_ci_low <= row.difference <= row.difference_ci_high


def test_two_groups_use_mann_whitney_and_seed_is_repeatable(frame):
    values, groups = frame
    two = np.where(groups == "a", "a", "b")
    g1 = GroupMetricFrame(metrics=values, groups=two, n_boot=100, seed=5)
    g2 = GroupMetricFrame(metrics=values, groups=two, n_boot=100, seed=5)
    assert g1.comparisons.loc["hr", "test"] == "mann-whitney-u"
    pd.testing.assert_frame_equal(g1.table, g2.table)
    order = np.random.default_rng(0).permutation(len(two))
    g3 = GroupMetricFrame(metrics=values.iloc[order], groups=two[order], n_boot=100, seed=5)
    pd.testing.assert_series_equal(g3.by_group["ndcg"], g1.by_group["ndcg"])


def test_single_group_equal_groups_and_errors():
    one = GroupMetricFrame(metrics={"x": np.ones(30)}, groups=["g"] * 30)
    assert one.comparisons.loc["x", "n_groups_compared"] == 1 and np.isnan(one.difference()["x"])
    equal = GroupMetricFrame(metrics={"x": np.ones(60)}, groups=["a"] * 30 + ["b"] * 30)
    assert equal.difference()["x"] == 0 and equal.comparisons.loc["x", "p_value"] == 1.0
    empty_metric = GroupMetricFrame(metrics={"x": np.full(40, np.nan)}, groups=["a"] * 20 + ["b"] * 20)
    assert np.isnan(empty_metric.by_group["x"]).all()
    with pytest.raises(ValueError, match="group labels"):
        GroupMetricFrame(metrics={"x": np.ones(3)}, groups=["a", "b"])
    with pytest.raises(ValueError, match="method"):
        equal.difference("sideways")


def test_ratio_to_overall_counts_a_group_far_above_everyone():
    # overall 0.5; group a 0.9 (overall/a = 0.556), b 0.1 (b/overall = 0.2), c 0.5 (1.0)
    values = np.repeat([0.9, 0.1, 0.5], 20)
    gmf = GroupMetricFrame(metrics={"x": values}, groups=np.repeat(["a", "b", "c"], 20), n_boot=0)
    assert gmf.ratio("to_overall")["x"] == pytest.approx(0.1 / 0.5)
    assert gmf.difference("to_overall")["x"] == pytest.approx(0.4)
    # a small group far above everyone: overall 0.55, a at 1.0 gives 0.55 (worst over overall would say 0.727)
    above = GroupMetricFrame(
        metrics={"x": np.repeat([1.0, 0.4], [20, 60])}, groups=np.repeat(["a", "b"], [20, 60]), n_boot=0
    )
    assert above.overall["x"] == pytest.approx(0.55)
    assert above.ratio("to_overall")["x"] == pytest.approx(0.55)
    zero = GroupMetricFrame(metrics={"x": np.zeros(40)}, groups=np.repeat(["a", "b"], 20), n_boot=0)
    assert np.isnan(zero.ratio("to_overall")["x"])


def test_matches_fairlearn_metric_frame(frame):
    fairlearn = pytest.importorskip("fairlearn.metrics", reason="fairlearn is in the dev extra; not installed here")
    values, groups = frame
    labels = np.where(pd.isna(groups), "none", groups).astype(str)  # fairlearn has no missing-label row
    # min_group_size=1: fairlearn compares every group, trustrec leaves small ones out by default
    ours = GroupMetricFrame(metrics=values, groups=labels, n_boot=0, min_group_size=1)
    for m in ("ndcg", "hr"):
        ok = values[m].notna().to_numpy()
        y = values[m].to_numpy()[ok]
        theirs = fairlearn.MetricFrame(
            metrics=lambda yt, yp: float(np.mean(yp)), y_true=y, y_pred=y, sensitive_features=labels[ok]
        )
        pd.testing.assert_series_equal(
            ours.by_group[m].sort_index(), theirs.by_group.astype(float).sort_index(), check_names=False
        )
        assert ours.overall[m] == pytest.approx(theirs.overall)
        for method in ("between_groups", "to_overall"):
            assert ours.difference(method)[m] == pytest.approx(theirs.difference(method=method))
            assert ours.ratio(method)[m] == pytest.approx(theirs.ratio(method=method))
