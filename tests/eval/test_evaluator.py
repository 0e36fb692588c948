import numpy as np
import pytest

from trustrec.data import EvalSet, QueryBatch, Ragged, split_leave_one_out
from trustrec.eval import bootstrap_ci, evaluate, evaluate_split, paired_test
from trustrec.models import FitOptions, make_model, topk_from_scores
from trustrec.models._base import FitOptions as _FO
from trustrec.testing import PrecomputedScores, toy_dataset


def slow_reference(scores, histories, targets, k):
    """One user at a time, plain Python: the definitions, no vectorisation."""
    out = {"ndcg": [], "hr": [], "recall": [], "mrr": []}
    for s, hist, tgt in zip(scores, histories, targets):
        ranked = sorted((i for i in range(len(s)) if i not in set(hist)), key=lambda i: (-s[i], i))[:k]
        rel = set(tgt)
        gains = [1.0 if i in rel else 0.0 for i in ranked]
        dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(rel), k)))
        out["ndcg"].append(dcg / idcg)
        out["hr"].append(float(any(gains)))
        out["recall"].append(sum(gains) / len(rel))
        first = next((r for r, g in enumerate(gains) if g), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_equals_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 60, 40, 10
    scores = rng.integers(0, 8, size=(n_users, n_items)).astype(float)  # many ties on purpose
    hist = [rng.choice(n_items, rng.integers(0, 15), replace=False) for _ in range(n_users)]
    tgt = [rng.choice(np.setdiff1d(np.arange(n_items), h), rng.integers(1, 4), replace=False) for h in hist]
    model = PrecomputedScores(scores)
    model.fit(toy_dataset(n_users=n_users, n_items=n_items, n_inter=300), _FO(progress=False))
    es = EvalSet(QueryBatch(np.arange(n_users), Ragged.from_rows(hist)), Ragged.from_rows(tgt), "test")
    res = evaluate(
        model, es, metrics=["ndcg@10", "hr@10", "recall@10", "mrr@10"], batch_size=7, n_boot=50, progress=False
    )
    ref = slow_reference(scores, hist, tgt, k)
    for name in ref:
        np.testing.assert_allclose(res.per_user[f"{name}@10"], ref[name], atol=1e-12)


def test_seen_items_are_masked_and_can_be_unmasked():
    scores = np.array([[5.0, 4.0, 3.0, 2.0]])
    model = PrecomputedScores(scores)
    model.fit(toy_dataset(n_users=3, n_items=4, n_inter=20), _FO(progress=False))
    es = EvalSet(QueryBatch(np.array([0]), Ragged.from_rows([[0]])), Ragged.from_rows([[1]]), "test")
    assert evaluate(model, es, metrics=["mrr@2"], n_boot=0, progress=False).mean("mrr@2") == 1.0
    res = evaluate(model, es, metrics=["mrr@2"], n_boot=0, exclude_seen=False, progress=False)
    assert res.mean("mrr@2") == 0.5


def test_k_larger_than_catalog_and_counts():
    from trustrec.data import drop_duplicates

    ds = drop_duplicates(toy_dataset())  # no repeats: every target is unseen, so a full list finds it
    split = split_leave_one_out(ds, short_users="train")
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    res = evaluate_split(model, split, metrics=["hr@1000", "coverage@1000"], n_boot=10, progress=False)
    assert res.per_user["list_length"].max() <= ds.n_items
    assert res.counts["n_short_lists"] == res.counts["n_users_evaluated"]  # lists shorter than 1000
    assert res.mean("hr@1000") == 1.0


def test_empty_histories_are_counted_not_crashing():
    ds = toy_dataset()
    model = make_model("sasrec", epochs=1, max_len=5, embedding_size=8, inner_size=16).fit(
        ds, FitOptions(progress=False)
    )
    es = EvalSet(QueryBatch(np.array([0, 1]), Ragged.from_rows([[], [1, 2]])), Ragged.from_rows([[3], [4]]), "test")
    res = evaluate(model, es, n_boot=10, progress=False)
    assert res.counts["n_empty_history"] == 1 and res.counts["n_no_recommendation"] == 1
    assert res.per_user.loc[0, "ndcg@10"] == 0.0


def test_sampled_metrics_are_labelled_and_differ():
    ds = toy_dataset()
    split = split_leave_one_out(ds, short_users="train")
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    full = evaluate_split(model, split, metrics=["hr@5"], n_boot=0, progress=False)
    sampled = evaluate_split(model, split, metrics=["hr@5"], n_boot=0, sampled_negatives=5, progress=False)
    assert "hr@5 (sampled-5)" in sampled.summary.index and sampled.settings["protocol"] == "sampled"
    assert sampled.mean("hr@5 (sampled-5)") >= full.mean("hr@5")  # 6 candidates, top 5: easier


def test_bootstrap_ci_seeded_and_sane():
    x = np.random.default_rng(0).normal(1.0, 1.0, 500)
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3)
    assert a == b and a[0] < x.mean() < a[1]
    assert bootstrap_ci(np.random.default_rng(1).permutation(x), seed=3) != (np.nan, np.nan)
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.5]) == (0.5, 0.5)


def test_paired_test_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.random(100)
    b = a + rng.normal(0.05, 0.1, 100)
    res = paired_test(a, b)
    assert res.t_pvalue == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert res.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(b - a).pvalue)
    assert res.diff == pytest.approx((b - a).mean())
    with pytest.raises(ValueError):
        paired_test(a, b[:5])


def test_topk_tie_rule_is_lowest_index():
    s = np.array([[1.0, 2.0, 2.0, 2.0, 0.5]])
    assert topk_from_scores(s, 2).items.tolist() == [[1, 2]]
    assert topk_from_scores(s, 4).items.tolist() == [[1, 2, 3, 0]]


@pytest.mark.realdata
def test_most_popular_matches_independent_reference(ml100k):
    """REFERENCES.md: ml-100k LOO by time, seen masked, full ranking: NDCG@10 0.0449, HR@10 0.0859."""
    split = split_leave_one_out(ml100k)
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    res = evaluate_split(model, split, metrics=["ndcg@10", "hr@10"], n_boot=100, progress=False)
    assert round(res.mean("ndcg@10"), 4) == 0.0449
    assert round(res.mean("hr@10"), 4) == 0.0859


@pytest.mark.realdata
def test_ild_on_ml100k_from_the_genre_column(ml100k):
    """ILD needs item vectors; on ml-100k they are derived from the items' genre column ('class')."""
    from trustrec.data._groups import item_group_matrix
    from trustrec.eval import intra_list_diversity

    split = split_leave_one_out(ml100k)
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    res = evaluate_split(model, split, metrics=["ild@10", "novelty@10"], n_boot=0, keep_topk=True, progress=False)
    assert "'class' column" in res.settings["ild_item_vectors"] and "multi-hot" in res.settings["ild_item_vectors"]
    genres, names, _ = item_group_matrix(ml100k.items, "class")
    assert "Drama" in names and "Comedy" in names
    manual = intra_list_diversity(res.topk.items[:, :10], genres.toarray())
    np.testing.assert_allclose(res.per_user["ild@10"], manual)
    assert 0 < res.mean("ild@10") < 1
    assert "distinct users" in res.settings["novelty"]


@pytest.mark.slow
@pytest.mark.realdata
def test_sasrec_learns_on_ml100k(ml100k):
    split = split_leave_one_out(ml100k)
    pop = evaluate_split(make_model("most_popular").fit(split), split, n_boot=0, progress=False)
    sas = make_model("sasrec", epochs=4).fit(split, FitOptions(seed=0, progress=False))
    res = evaluate_split(sas, split, n_boot=0, progress=False)
    assert res.mean("ndcg@10") > pop.mean("ndcg@10")
    assert res.mean("hr@10") > pop.mean("hr@10")


def test_users_without_targets_and_cold_users_are_counted():
    from trustrec.data import split_temporal

    ds = toy_dataset()
    split = split_temporal(ds, valid_frac=0.1, test_frac=0.2)
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    res = evaluate_split(model, split, metrics=["hr@5"], n_boot=0, progress=False)
    n_test_users = len(np.unique(split.test.user))
    assert res.counts["n_users_evaluated"] == n_test_users
    assert res.counts["n_users_without_target"] == ds.n_users - n_test_users
    cold = len(
        np.setdiff1d(np.unique(split.test.user), np.unique(np.concatenate([split.train.user, split.valid.user])))
    )
    assert res.counts["n_empty_history"] == cold
