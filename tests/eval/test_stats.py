"""The one statistics module: each estimate builder against an independent computation, and the
audits building no statistics of their own."""

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import trustrec
from trustrec.eval import (
    WILCOXON_ZERO_METHOD,
    Estimate,
    auc_rows,
    bootstrap_ci,
    cluster_mean_estimate,
    cluster_ratio_estimate,
    macro_ovr_auc,
    mannwhitney_pvalue,
    mean_estimate,
    paired_estimate,
    paired_test,
    percentile_ci,
    rank_biased_overlap,
    roc_auc,
    stratified_bootstrap_rows,
    tpr_at_fpr,
    two_sample_estimate,
    wilcoxon_pvalue,
    wilson_interval,
)

RNG = np.random.default_rng(0)
A = np.round(RNG.random(60), 1)
B = np.where(RNG.random(60) < 0.5, A, np.round(RNG.random(60), 1))  # many equal pairs (zeros)


def _percentile_boot_mean(x, n_boot, seed):
    rng = np.random.default_rng(seed)
    means = np.array([x[rng.integers(0, len(x), len(x))].mean() for _ in range(n_boot)])
    return tuple(np.quantile(means, [0.025, 0.975]))


def test_audit_estimate_is_the_eval_estimate():
    from trustrec.audit import Estimate as AuditEstimate

    assert AuditEstimate is Estimate
    assert Estimate(float("nan"), p_value=float("nan")).to_dict()["value"] is None


def test_mean_estimate_matches_a_plain_bootstrap():
    x = np.concatenate([A, [np.nan, np.nan]])
    e = mean_estimate(x, n_boot=300, seed=4, description="d")
    assert e.value == pytest.approx(A.mean()) and e.n == len(A) and e.description == "d"
    assert (e.ci_low, e.ci_high) == pytest.approx(_percentile_boot_mean(A, 300, 4))
    assert mean_estimate([np.nan], n_boot=10, seed=0).value is None


def test_paired_estimate_difference_ci_and_wilcoxon_convention():
    a, b = A.copy(), B.copy()
    a[3] = np.nan
    e = paired_estimate(a, b, n_boot=200, seed=1, test=True)
    ok = ~np.isnan(a)
    d = a[ok] - b[ok]
    assert e.value == pytest.approx(d.mean()) and e.n == ok.sum()
    assert (e.ci_low, e.ci_high) == pytest.approx(_percentile_boot_mean(d, 200, 1))
    assert (d == 0).sum() > 10  # the case where conventions disagree
    assert WILCOXON_ZERO_METHOD == "wilcox"
    nonzero = d[d != 0]
    assert e.p_value == pytest.approx(stats.wilcoxon(nonzero).pvalue)  # zeros dropped = test on changed users
    assert e.p_value != pytest.approx(stats.wilcoxon(d, zero_method="zsplit").pvalue)
    assert paired_test(b[ok], a[ok]).wilcoxon_pvalue == pytest.approx(e.p_value)
    assert paired_estimate(a, b, n_boot=0, seed=0).p_value is None  # no test unless asked
    assert wilcoxon_pvalue([0.0, 0.0, 0.0]) == 1.0 and wilcoxon_pvalue([0.3]) is None
    with pytest.raises(ValueError):
        paired_estimate(A, B[:5], n_boot=10, seed=0)


def test_two_sample_estimate_against_scipy():
    a, b = A[:25], B[30:]
    e = two_sample_estimate(a, b, n_boot=400, seed=2)
    assert e.value == pytest.approx(a.mean() - b.mean()) and e.n == len(a) + len(b)
    assert e.p_value == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
    rng = np.random.default_rng(2)
    ma = a[rng.integers(0, len(a), (400, len(a)))].mean(1)
    mb = b[rng.integers(0, len(b), (400, len(b)))].mean(1)
    assert (e.ci_low, e.ci_high) == pytest.approx(tuple(np.quantile(ma - mb, [0.025, 0.975])))
    assert mannwhitney_pvalue([1.0, 1.0], [1.0, 1.0]) == 1.0 and mannwhitney_pvalue([1.0], [2.0, 3.0]) is None


def test_cluster_estimates_resample_whole_users():
    users = np.repeat(np.arange(12), 3)
    num = np.round(RNG.random(36), 2)
    den = RNG.integers(1, 4, 36).astype(float)
    e = cluster_ratio_estimate(num, den, users, n_boot=300, seed=5)
    assert e.value == pytest.approx(num.sum() / den.sum()) and e.n == 36
    s_num, s_den = np.bincount(users, num), np.bincount(users, den)
    idx = np.random.default_rng(5).integers(0, 12, (300, 12))
    ratios = s_num[idx].sum(1) / s_den[idx].sum(1)
    assert (e.ci_low, e.ci_high) == pytest.approx(tuple(np.quantile(ratios, [0.025, 0.975])))
    m = cluster_mean_estimate(num, users, n_boot=300, seed=5)
    assert m.value == pytest.approx(num.mean())
    one = cluster_mean_estimate([0.2, 0.4], [7, 7], n_boot=50, seed=0)
    assert one.ci_low == one.ci_high == pytest.approx(0.3)


def test_intervals():
    r = RNG.normal(size=500)
    assert percentile_ci(r) == pytest.approx(tuple(np.quantile(r, [0.025, 0.975])))
    assert percentile_ci([np.nan, 1.0]) == (None, None)
    assert bootstrap_ci(A, n_boot=200, seed=3) == pytest.approx(_percentile_boot_mean(A, 200, 3))
    lo, hi = wilson_interval(np.array([3, 0]), np.array([10, 5]))
    for j, (k, n) in enumerate(((3, 10), (0, 5))):
        ref = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert (lo[j], hi[j]) == pytest.approx((ref.low, ref.high), abs=1e-6)


def test_stratified_rows_keep_class_sizes():
    y = np.array([True] * 4 + [False] * 9)
    rows = stratified_bootstrap_rows(y, 50, 0)
    assert rows.shape == (50, 13) and (y[rows].sum(1) == 4).all()


def test_grouped_auc_against_sklearn_per_group():
    from sklearn.metrics import roc_auc_score

    from trustrec.eval import grouped_auc

    groups = RNG.integers(0, 12, 300)
    s = np.round(RNG.normal(size=300), 1)  # ties within groups
    y = RNG.random(300) < 0.2 + 0.4 * (s > 0)
    y[groups == 3] = True  # one group with a single label
    out = grouped_auc(s, y, groups)
    assert out["group"].tolist() == sorted(set(groups.tolist()))
    for g, auc, n_pos, n_neg in out.itertuples(index=False):
        m = groups == g
        assert (n_pos, n_neg) == (y[m].sum(), (~y[m]).sum())
        if g == 3:
            assert np.isnan(auc)
        else:
            assert auc == pytest.approx(roc_auc_score(y[m], s[m]))
    with pytest.raises(ValueError, match="must be equal 1-d"):
        grouped_auc(s, y, groups[:-1])


def test_auc_and_tpr_at_fpr_against_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.round(RNG.normal(size=200), 1)  # many ties
    y = RNG.random(200) < 0.3 + 0.2 * (s > 0)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(roc_auc(s, np.ones(200, bool)))
    rows = stratified_bootstrap_rows(y, 5, 1)
    assert auc_rows(s[rows], y[rows]) == pytest.approx([roc_auc_score(y[r], s[r]) for r in rows])
    proba = RNG.dirichlet(np.ones(3), 90)
    codes = RNG.integers(0, 3, 90)
    assert macro_ovr_auc(proba, codes)[0] == pytest.approx(roc_auc_score(codes, proba, multi_class="ovr"))
    f, t, _ = roc_curve(y, s, drop_intermediate=False)
    for fpr in (0.0, 0.01, 0.1, 0.5):
        assert tpr_at_fpr(s, y, fpr) == pytest.approx(t[f <= fpr + 1e-12].max())  # step curve, no interpolation


def test_rank_biased_overlap_against_a_direct_sum():
    def rbo_ext_equal_length(a, b, p):  # Webber et al. 2010 eq. 30, same length
        k = len(a)
        x = [len(set(a[:d]) & set(b[:d])) for d in range(1, k + 1)]
        return (1 - p) / p * sum(x[d - 1] / d * p**d for d in range(1, k + 1)) + x[-1] / k * p**k

    a = np.array([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    b = np.array([[2, 1, 7, 5, 9], [6, 7, 8, 9, 10]])
    got = rank_biased_overlap(a, b, 0.9)
    assert got[0] == pytest.approx(rbo_ext_equal_length(list(a[0]), list(b[0]), 0.9))
    assert got[1] == 0.0
    assert rank_biased_overlap(a, a)[0] == pytest.approx(1.0)
    from trustrec.audit._robustness import rank_biased_overlap as old_home

    assert old_home is rank_biased_overlap


_SRC = Path(trustrec.__file__).parent
# Audits call trustrec.eval's builders (bootstrap_ci, mean_estimate, ...); these are the calls and
# helper names that mean an audit is computing a test, a CI or an AUC by itself again.
_STATS_CALLS = re.compile(
    r"\b(wilcoxon|mannwhitneyu|ttest_rel|ttest_ind|roc_auc_score|roc_curve|"
    r"nanquantile)\(|np\.quantile\("
)
_PRIVATE_BUILDERS = re.compile(
    r"^\s*def _\w*(mean_ci|mean_estimate|ci_estimate|paired|_ci|boot|quantile|auc_rows|"
    r"stratified|cluster_ratio|cluster_mean|gap_estimate)\w*\(",
    re.M,
)


@pytest.mark.parametrize("layer", ["audit", "mitigate"])
def test_audits_build_no_statistics_of_their_own(layer):
    offenders = []
    for path in sorted((_SRC / layer).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {m.group(0).strip()}" for m in _STATS_CALLS.finditer(text)]
        offenders += [f"{path.name}: {m.group(0).strip()}" for m in _PRIVATE_BUILDERS.finditer(text)]
    assert not offenders, "statistics belong in trustrec.eval: " + "; ".join(offenders)


def test_t_interval_equals_hand_computation():
    from trustrec.eval import t_interval

    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653, half = 4.302653 / sqrt(3)
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.302653 / 3**0.5, abs=1e-5)
    assert high == pytest.approx(2 + 4.302653 / 3**0.5, abs=1e-5)
    assert all(np.isnan(t_interval([5.0])))
    with pytest.raises(ValueError, match="NaN"):
        t_interval([1.0, float("nan")])
