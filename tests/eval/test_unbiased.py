"""URE and the traditional random-exposure scheme: hand-computed cases (ties included), the
convergence of URE to the fully-exposed Recall@K where the traditional scheme stays off, bad input,
and the semi-synthetic world."""

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, split_given_test, split_random_exposure
from trustrec.errors import ConfigError, DataError
from trustrec.eval import (
    SemiSyntheticConfig,
    draw_world,
    evaluate_random_exposure,
    evaluate_schemes,
    random_exposure_set,
    topk_membership,
    true_recall,
)
from trustrec.models import FitOptions
from trustrec.testing import PrecomputedScores


def _dataset(train, test, n_users, n_items, name="hand") -> Dataset:
    """train/test: lists of (user, item, rating)."""

    def frame(rows):
        u, i, r = zip(*rows) if rows else ((), (), ())
        return pd.DataFrame(
            {
                "user_id": [str(x) for x in u],
                "item_id": [str(x) for x in i],
                "timestamp": np.zeros(len(u), np.int64),
                "rating": np.asarray(r, float),
            }
        )

    return Dataset.from_frame(
        frame(train),
        name=name,
        items=pd.DataFrame({"item_id": [str(i) for i in range(n_items)]}),
        users=pd.DataFrame({"user_id": [str(u) for u in range(n_users)]}),
        extras={"random_exposure_test": frame(test)},
    )


def _fit(table, split):
    return PrecomputedScores(np.asarray(table, float)).fit(split, FitOptions(progress=False))


# -- the hand-built case -------------------------------------------------------------------------------
# One user, 8 items. Item 7 is in the training history (masked). Scores: 0.9 (i0), 0.8 (i6), then
# three items tied at 0.5 (i1, i2, i3), 0.2 (i5), 0.1 (i4). Random exposure: i1+, i4+, i6-, i3-, and
# i7+ (in the history: dropped and counted).
SCORES = [[0.9, 0.5, 0.5, 0.5, 0.1, 0.2, 0.8, 1.0]]
TRAIN = [(0, 7, 5.0), (0, 0, 2.0)]  # item 0 is rated too (so it is masked as well)
TEST = [(0, 1, 5.0), (0, 4, 4.0), (0, 6, 1.0), (0, 3, 2.0), (0, 7, 5.0)]


@pytest.fixture
def hand():
    ds = _dataset(TRAIN, TEST, 1, 8)
    split = split_random_exposure(ds, cold_test_items="keep")
    return split, _fit(SCORES, split)


def test_topk_membership_ties_by_expected_value():
    s = np.array([[5, 4, 4, 4, 1, np.nan], [3, 3, 3, 3, 3, 3.0]])
    c = np.ones_like(s, bool)
    c[1, 0] = False
    np.testing.assert_allclose(topk_membership(s, c, 2), [[1, 1 / 3, 1 / 3, 1 / 3, 0, 0], [0, 0.4, 0.4, 0.4, 0.4, 0.4]])
    # fewer candidates than K: all of them; NaN scores rank last but are candidates
    np.testing.assert_allclose(topk_membership(s, c, 5), [[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
    c2 = np.zeros_like(c)
    assert topk_membership(s, c2, 3).sum() == 0
    # every row's memberships sum to min(K, candidates): the expected list length
    rng = np.random.default_rng(0)
    big = rng.integers(0, 4, (50, 30)).astype(float)
    cand = rng.random((50, 30)) < 0.7
    for k in (1, 3, 10):
        np.testing.assert_allclose(topk_membership(big, cand, k).sum(1), np.minimum(k, cand.sum(1)))


def test_ure_hand_computed(hand):
    split, model = hand
    # candidates: items 1..6 (0 and 7 are in the history); above the 3rd score: i6 (0.8), i1-i3 tie
    # at 0.5 for the remaining 2 places -> each 2/3.
    res = evaluate_random_exposure(model, split, scheme="ure", metrics=["recall@3", "precision@3"], n_boot=0)
    pu = res.per_user.iloc[0]
    # exposed positives not in the history: i1 (2/3 in the top 3), i4 (0) -> recall (2/3 + 0) / 2
    assert pu["recall@3 (ure)"] == pytest.approx(1 / 3)
    # precision: (6 candidates / 4 exposed candidates) * (2/3) / 3
    assert pu["precision@3 (ure)"] == pytest.approx(6 / 4 * (2 / 3) / 3)
    assert pu["n_candidates"] == 6 and pu["n_exposed"] == 4 and pu["n_exposed_positives"] == 2
    assert res.counts["n_exposed_in_history"] == 1 and res.counts["n_positives_in_history"] == 1
    assert res.settings["scheme"] == "ure" and "expected value" in res.settings["ties"]
    assert list(res.summary.index) == ["recall@3 (ure)", "precision@3 (ure)"]


def test_traditional_hand_computed(hand):
    split, model = hand
    res = evaluate_random_exposure(
        model, split, scheme="traditional-random", metrics=["recall@2", "precision@2"], n_boot=0
    )
    pu = res.per_user.iloc[0]
    # ranked among the exposed candidates only: i6 0.8, i1 0.5, i3 0.5, i4 0.1 -> top 2: i6, then
    # i1/i3 tied for one place (1/2 each) -> recall (1/2 + 0) / 2, precision (1/2) / 2
    assert pu["recall@2 (traditional-random)"] == pytest.approx(1 / 4)
    assert pu["precision@2 (traditional-random)"] == pytest.approx(1 / 4)
    assert res.counts["n_users_k_ge_exposed"] == 0


def test_ties_do_not_depend_on_item_order():
    # the same case with items permuted: identical estimates (never index order)
    perm = np.array([3, 0, 6, 1, 7, 2, 5, 4])
    inv = np.argsort(perm)
    ds = _dataset([(0, int(inv[i]), r) for _, i, r in TRAIN], [(0, int(inv[i]), r) for _, i, r in TEST], 1, 8)
    split = split_random_exposure(ds, cold_test_items="keep")
    model = _fit(np.asarray(SCORES)[:, perm], split)
    res = evaluate_random_exposure(model, split, scheme="ure", metrics=["recall@3"], n_boot=0)
    assert res.per_user["recall@3 (ure)"].iloc[0] == pytest.approx(1 / 3)


def test_users_without_exposed_positive_are_counted_not_scored():
    train = [(0, 0, 5.0), (1, 0, 5.0), (2, 1, 3.0)]
    test = [(0, 2, 5.0), (0, 3, 1.0), (1, 2, 1.0), (1, 3, 2.0), (2, 1, 5.0)]
    ds = _dataset(train, test, 3, 5)
    split = split_random_exposure(ds, cold_test_items="keep")
    model = _fit(np.tile(np.arange(5.0), (3, 1)), split)
    res = evaluate_random_exposure(model, split, metrics=["recall@2", "precision@2"], n_boot=0)
    assert res.counts["n_users_no_exposed_positive"] == 1  # user 1 rated both exposures low
    assert res.counts["n_users_no_exposed_candidate"] == 1  # user 2's only exposure is in train
    assert res.summary.loc["recall@2 (ure)", "n_users"] == 1
    assert res.summary.loc["precision@2 (ure)", "n_users"] == 2  # precision keeps user 1 (estimate 0)
    assert np.isnan(res.per_user.set_index("user").loc[1, "recall@2 (ure)"])


def test_bad_input_messages(hand):
    split, model = hand
    with pytest.raises(ConfigError, match="smaller than the catalog"):
        evaluate_random_exposure(model, split, metrics=["recall@8"])
    with pytest.raises(ConfigError, match="supports the threshold-based metrics"):
        evaluate_random_exposure(model, split, metrics=["ndcg@3"])
    with pytest.raises(ConfigError, match="scheme must be one of"):
        evaluate_random_exposure(model, split, scheme="magic")
    # a given-test split without a threshold cannot tell exposed negatives from positives
    plain = split_given_test(split.dataset)
    with pytest.raises(ConfigError, match="positive_threshold"):
        random_exposure_set(plain)
    # test items never seen in train
    ds = _dataset([(0, 0, 5.0)], [(0, 1, 5.0), (0, 2, 1.0)], 1, 4)
    with pytest.raises(DataError, match="never occur in train"):
        split_random_exposure(ds)
    dropped = split_random_exposure(ds, cold_test_items="drop")
    assert len(dropped.test) == 0 and any("dropped 2 test ratings" in n for n in dropped.notes)


def test_full_scheme_recall_equals_ure_without_ties_or_history_overlap():
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 60
    train = [(u, int(i), 3.0) for u in range(n_users) for i in rng.choice(30, 5, replace=False)]
    test = [
        (u, int(i), float(rng.integers(1, 6))) for u in range(n_users) for i in 30 + rng.choice(30, 8, replace=False)
    ]
    ds = _dataset(train, test, n_users, n_items)
    split = split_random_exposure(ds, cold_test_items="keep")
    model = _fit(rng.random((n_users, n_items)), split)
    res = evaluate_schemes(model, split, ("full", "ure", "traditional-random"), metrics=["recall@5"], n_boot=50)
    full = res["full"].per_user.set_index("user")["recall@5"]
    ure = res["ure"].per_user.set_index("user")["recall@5 (ure)"].dropna()
    np.testing.assert_allclose(full.loc[ure.index], ure)
    assert res["traditional-random"].mean("recall@5 (traditional-random)") > 2 * res["ure"].mean("recall@5 (ure)")
    lo, hi = res["ure"].summary.loc["recall@5 (ure)", ["ci_low", "ci_high"]]
    assert lo <= res["ure"].mean("recall@5 (ure)") <= hi


def test_ure_converges_to_true_recall_and_traditional_does_not():
    """A fully-exposed relevance matrix; each user sees 16 random items (as on Coat) and the
    experiment is repeated over more and more independent samples (more users): URE's mean
    Recall@K approaches the true full-exposure Recall@K, the traditional one stays far off."""
    rng = np.random.default_rng(0)
    n_users, n_items, k, n_exposed = 200, 300, 10, 16
    taste = rng.normal(size=(n_users, 4)) @ rng.normal(size=(4, n_items))
    relevance = rng.random((n_users, n_items)) < 1 / (1 + np.exp(-(taste - 1.5)))
    scores = taste + rng.normal(scale=1.5, size=taste.shape)  # an imperfect model
    member = topk_membership(scores, np.ones_like(relevance), k)
    n_rel = relevance.sum(1)
    truth = np.mean((member * relevance).sum(1)[n_rel > 0] / n_rel[n_rel > 0])
    ure_vals, trad_vals, ure_err, trad_err = [], [], [], []
    for reps in (1, 4, 32):
        while len(ure_vals) < reps:
            picks = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :n_exposed]
            exposed = np.zeros_like(relevance)
            exposed[np.arange(n_users)[:, None], picks] = True
            pos = exposed & relevance
            ok = pos.sum(1) > 0
            ure_vals.append(np.mean((member * pos).sum(1)[ok] / pos.sum(1)[ok]))
            trad = topk_membership(scores, exposed, k)
            trad_vals.append(np.mean((trad * pos).sum(1)[ok] / pos.sum(1)[ok]))
        ure_err.append(abs(np.mean(ure_vals) - truth))
        trad_err.append(abs(np.mean(trad_vals) - truth))
    assert ure_err[-1] < 0.005 and ure_err[-1] < 0.1 * truth
    assert min(trad_err) > 0.3 and trad_err[-1] > 0.9 * trad_err[0]  # more data does not fix it


def test_evaluator_matches_direct_formula_on_semi_synthetic_world():
    """The library path (split -> evaluate_random_exposure) equals the formula on the same world,
    and URE tracks the world's true Recall@K where the traditional scheme does not."""
    rng = np.random.default_rng(1)
    n_users, n_items = 80, 50
    base = pd.DataFrame(
        {
            "user_id": [str(u) for u in rng.integers(0, n_users, 600)],
            "item_id": [str(i) for i in rng.integers(0, n_items, 600)],
            "timestamp": 0,
            "rating": rng.integers(1, 6, 600).astype(float),
        }
    )
    ds = Dataset.from_frame(
        base,
        name="base",
        items=pd.DataFrame({"item_id": [str(i) for i in range(n_items)]}),
        users=pd.DataFrame({"user_id": [str(u) for u in range(n_users)]}),
    )
    truth = 1 / (1 + np.exp(-rng.normal(-1.0, 1.5, (n_users, n_items))))
    world = draw_world(ds, truth, SemiSyntheticConfig(n_random=10), seed=4)
    assert world.dataset.extras["propensities"].array.shape == (n_users, n_items)
    assert abs(world.dataset.n_interactions / (n_users * n_items) - 600 / (n_users * n_items)) < 0.05
    split = split_random_exposure(world.dataset, cold_test_items="keep")
    model = _fit(truth + rng.normal(scale=0.3, size=truth.shape), split)
    true = true_recall(model, world, [5])[5]
    ure = evaluate_random_exposure(model, split, metrics=["recall@5"], n_boot=0).mean("recall@5 (ure)")
    trad = evaluate_random_exposure(model, split, scheme="traditional-random", metrics=["recall@5"], n_boot=0).mean(
        "recall@5 (traditional-random)"
    )
    assert abs(ure - true) < 0.1 < abs(trad - true)
