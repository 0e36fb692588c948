"""Hand-computed greedy picks, λ = 0 equals the base, wrappers vs pure functions, input errors."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from trustrec.data import QueryBatch, Ragged, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate import (
    CalibratedReranker,
    ExposureReranker,
    calibrated_rerank,
    minmax_relevance,
    xquad_rerank,
)
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import toy_dataset

from ._data import genre_toy

QUIET = FitOptions(progress=False)


def _kl(p, q, alpha=0.01):
    """Steck's KL(p || (1 - alpha) q + alpha p), by hand."""
    return sum(pi * math.log(pi / ((1 - alpha) * qi + alpha * pi)) for pi, qi in zip(p, q) if pi > 0)


# -- calibrated greedy by hand ---------------------------------------------------------------------
# Genres A, B. Items: 0 A, 1 A, 2 B, 3 A+B (weight split), history items 4 A and 5 B -> p = (.5, .5).
# Candidates 0, 1, 2, 3 with scores 1, .9, .3, 0 (already min-max normalised).
GENRE = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1], [1, 0], [0, 1]], dtype=float))
HISTORY = Ragged.from_rows([[4, 5]])
CANDS = np.array([[0, 1, 2, 3]])
SCORES = np.array([[1.0, 0.9, 0.3, 0.0]])


def test_hand_kl_values_match_the_library():
    from trustrec.eval import miscalibration

    assert miscalibration(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))[0] == pytest.approx(_kl((0.5, 0.5), (1, 0)))


@pytest.mark.parametrize(
    "strength, expected",
    [
        # λ = 0: relevance only -> the base order
        (0.0, [0, 1]),
        # λ = .3: step 1: item 0: .7*1 - .3*KL((.5,.5)||(1,0)) = .7 - .3*1.9585 = .1124 > item 3: 0 - 0 = 0.
        #         step 2 (list genre mass (1, 0)): item 1: .7*.9 - .3*1.9585 = .0424; item 2 -> q = (.5, .5),
        #         KL 0: .7*.3 = .21; item 3 -> q = (.75, .25): -.3*.1405 -> item 2 wins.
        (0.3, [0, 2]),
        # λ = .5: step 1: item 0: .5 - .5*1.9585 = -.479 < item 3 (q = p): 0 -> item 3;
        #         step 2 (mass (.5, .5)): item 0 -> q = (.75, .25): .5 - .5*.1405 = .4297 beats item 1 (.3797).
        (0.5, [3, 0]),
    ],
)
def test_calibrated_greedy_by_hand(strength, expected):
    items, scores = calibrated_rerank(HISTORY, CANDS, SCORES, GENRE, 2, strength=strength)
    assert items.tolist() == [expected]
    assert np.all(np.diff(scores[0]) <= 0)


def test_calibrated_gains_by_hand():
    lam = 0.3
    items, scores = calibrated_rerank(HISTORY, CANDS, SCORES, GENRE, 2, strength=lam)
    first = (1 - lam) * 1.0 - lam * _kl((0.5, 0.5), (1, 0))
    second = (1 - lam) * 0.3 - lam * _kl((0.5, 0.5), (0.5, 0.5))
    assert items.tolist() == [[0, 2]]
    assert scores[0] == pytest.approx([first, min(first, second)])


# -- xQuAD by hand ---------------------------------------------------------------------------------
# Groups head, tail: items 0, 1 head; 2, 3 tail. History: 4, 5, 6 head, 7 tail -> P(head|u) = .75.
HEAD_TAIL = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1]], float))
XHISTORY = Ragged.from_rows([[4, 5, 6, 7]])
XSCORES = np.array([[1.0, 0.8, 0.5, 0.0]])


@pytest.mark.parametrize(
    "strength, expected, gains",
    [
        # λ = .5: step 1 item 0: .5 + .5*.75 = .875; step 2 (head covered): item 1 .4 beats item 2 .25 + .125 = .375;
        #         step 3: item 2 .25 (tail still uncovered: + .125) = .375.
        (0.5, [0, 1, 2], [0.875, 0.4, 0.375]),
        # λ = .6: step 2: item 2 .4*.5 + .6*.25 = .35 beats item 1 .4*.8 = .32; step 3: item 1 .32.
        (0.6, [0, 2, 1], [0.85, 0.35, 0.32]),
    ],
)
def test_xquad_greedy_by_hand(strength, expected, gains):
    items, scores = xquad_rerank(XHISTORY, CANDS, XSCORES, HEAD_TAIL, 3, strength=strength)
    assert items.tolist() == [expected]
    assert scores[0] == pytest.approx(gains)


def test_xquad_uniform_weights_and_smooth_variant_by_hand():
    # uniform P(g|u) = .5, λ = .5: step 1 item 0 .5 + .25 = .75; step 2 item 2 .25 + .25 = .5 beats item 1 .4.
    items, _ = xquad_rerank(XHISTORY, CANDS, XSCORES, HEAD_TAIL, 2, strength=0.5, user_weights="uniform")
    assert items.tolist() == [[0, 2]]
    # smooth, λ = .9, S = {0, 2} after two steps: coverage 1 - 1/2 for both groups, so item 1 earns
    # .1*.8 + .9*.75*.5 = .4175 and item 3 .9*.25*.5 = .1125 -> [0, 2, 1, 3]
    items, scores = xquad_rerank(XHISTORY, CANDS, XSCORES, HEAD_TAIL, 4, strength=0.9, variant="smooth")
    assert items.tolist() == [[0, 2, 1, 3]]
    assert scores[0, 2] == pytest.approx(min(0.05 + 0.9 * 0.25, 0.08 + 0.9 * 0.75 * 0.5))


def test_empty_history_keeps_the_base_order_for_calibration():
    items, _ = calibrated_rerank(Ragged.from_rows([[]]), CANDS, SCORES, GENRE, 4, strength=0.9)
    assert items.tolist() == [[0, 1, 2, 3]]


def test_padding_and_short_lists():
    cands = np.array([[2, 0, -1, -1], [-1, -1, -1, -1]])
    scores = np.array([[0.7, 0.1, -np.inf, -np.inf], [-np.inf] * 4])
    items, out = xquad_rerank(Ragged.from_rows([[4], []]), cands, scores, HEAD_TAIL, 3, strength=0.5)
    assert items.tolist() == [[2, 0, -1], [-1, -1, -1]]
    assert np.isneginf(out[0, 2]) and np.isneginf(out[1]).all()


def test_minmax_relevance():
    rel = minmax_relevance(np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 0.0]]), np.array([[1, 1, 1], [1, 1, 0]], bool))
    np.testing.assert_allclose(rel, [[1.0, 0.0, 0.5], [1.0, 1.0, 0.0]])


# -- λ = 0 and the wrappers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    ds = genre_toy()
    split = split_leave_one_out(ds, short_users="train")
    base = make_model("item_knn", k=10).fit(split, QUIET)
    return split, base


@pytest.mark.parametrize("cls", [CalibratedReranker, ExposureReranker])
def test_strength_zero_is_the_base_exactly(fitted, cls):
    split, base = fitted
    q = split.eval_set("test").queries
    top = cls.from_fitted(base, split, strength=0.0, n_candidates=10).recommend(q, 5)
    ref = base.recommend(q, 5)
    np.testing.assert_array_equal(top.items, ref.items)
    np.testing.assert_array_equal(top.scores, ref.scores)


@pytest.mark.parametrize("fn", [calibrated_rerank, xquad_rerank])
def test_strength_zero_greedy_keeps_the_candidate_order(fn):
    rng = np.random.default_rng(1)
    scores = -np.sort(-rng.integers(0, 4, (6, 9)).astype(float), axis=1)  # sorted with ties, as a base gives
    items = np.argsort(rng.random((6, 9)), axis=1)
    groups = sp.csr_matrix(rng.integers(0, 2, (9, 3)).astype(float))
    out, _ = fn(Ragged.from_rows([[0, 1]] * 6), items, scores, groups, 9, strength=0.0)
    np.testing.assert_array_equal(out, items)


@pytest.mark.parametrize("cls", [CalibratedReranker, ExposureReranker])
def test_from_fitted_equals_fit(fitted, cls):
    split, base = fitted
    q = split.eval_set("test").queries
    a = cls.from_fitted(base, split, strength=0.6, n_candidates=10).recommend(q, 5)
    b = cls(base={"name": "item_knn", "params": {"k": 10}}, strength=0.6, n_candidates=10).fit(split, QUIET)
    b = b.recommend(q, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores)


def test_wrapper_matches_pure_function_and_rerank_reuses_candidates(fitted):
    split, base = fitted
    q = split.eval_set("test").queries
    model = CalibratedReranker.from_fitted(base, split, strength=0.4, n_candidates=10)
    retrieved = base.recommend(q, 10)
    pure, _ = calibrated_rerank(q.histories, retrieved.items, retrieved.scores, model.membership(), 5, strength=0.4)
    np.testing.assert_array_equal(model.recommend(q, 5).items, pure)
    np.testing.assert_array_equal(model.rerank(q, retrieved, 5).items, pure)
    assert model.rerank(q, retrieved, 5, strength=0.0).items.tolist() == retrieved.items[:, :5].tolist()


def test_k_beyond_candidates_appends_the_base_tail(fitted):
    split, base = fitted
    q = split.eval_set("test").queries
    model = ExposureReranker.from_fitted(base, split, strength=0.8, n_candidates=4)
    top = model.recommend(q, 8)
    ref = base.recommend(q, 8)
    np.testing.assert_array_equal(top.items[:, 4:], ref.items[:, 4:])
    assert set(map(tuple, np.sort(top.items[:, :4], 1))) == set(map(tuple, np.sort(ref.items[:, :4], 1)))
    valid = top.items >= 0
    assert np.all(np.diff(np.where(valid, top.scores, -1e9), axis=1) <= 1e-12)


def test_genre_groups_saved_and_loaded(fitted, tmp_path):
    split, base = fitted
    model = CalibratedReranker.from_fitted(base, split, item_group_column="genre")
    assert model.group_source_ == "genre" and model.group_names_ == ["Action", "Comedy", "Drama", "Romance"]
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert (loaded.membership() != model.membership()).nnz == 0
    assert loaded.base_.config == base.config


def test_popularity_groups_are_head_and_tail(fitted):
    split, base = fitted
    model = ExposureReranker.from_fitted(base, split)
    m = model.membership().toarray()
    assert model.group_names_ == ["head", "tail"] and np.all(m.sum(1) == 1)
    assert m[:, 0].sum() == int(np.ceil(0.2 * split.dataset.n_items))


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CalibratedReranker, ExposureReranker])
@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_strength_outside_unit_interval(cls, bad):
    with pytest.raises(ConfigError, match="strength"):
        cls(strength=bad)


def test_strength_errors_in_functions_and_rerank(fitted):
    split, base = fitted
    with pytest.raises(ConfigError, match=r"strength \(λ\) must be in \[0, 1\]"):
        calibrated_rerank(HISTORY, CANDS, SCORES, GENRE, 2, strength=1.2)
    model = ExposureReranker.from_fitted(base, split)
    q = split.eval_set("test").queries
    with pytest.raises(ConfigError, match="strength"):
        model.rerank(q, base.recommend(q, 10), 5, strength=-1)


def test_missing_group_column():
    split = split_leave_one_out(toy_dataset(), short_users="train")
    with pytest.raises(DataError, match=r"no item group column.*set item_group_column"):
        CalibratedReranker(base={"name": "most_popular"}).fit(split, QUIET)
    with pytest.raises(DataError, match="'nope' not found"):
        CalibratedReranker(base={"name": "most_popular"}, item_group_column="nope").fit(split, QUIET)
    with pytest.raises(DataError, match="'provider' not found"):
        ExposureReranker(base={"name": "most_popular"}, groups="provider").fit(split, QUIET)


def test_config_and_from_fitted_errors(fitted):
    split, base = fitted
    with pytest.raises(ConfigError, match="unknown base model 'no_such_model'"):
        CalibratedReranker(base={"name": "no_such_model"})
    with pytest.raises(ConfigError, match="alpha"):
        CalibratedReranker(alpha=0.0)
    with pytest.raises(ConfigError, match="variant"):
        ExposureReranker(variant="soft")
    with pytest.raises(ConfigError, match="not fitted"):
        CalibratedReranker.from_fitted(make_model("item_knn"), split)
    with pytest.raises(ConfigError, match="knows 25 items"):
        CalibratedReranker.from_fitted(base, genre_toy(n_items=30))
    with pytest.raises(ValueError, match="histories"):
        xquad_rerank(Ragged.from_rows([[1], [2]]), CANDS, XSCORES, HEAD_TAIL, 2, strength=0.5)
    with pytest.raises(ConfigError, match="k must be >= 0"):
        CalibratedReranker.from_fitted(base, split).recommend(QueryBatch.from_histories([[1]]), -1)
