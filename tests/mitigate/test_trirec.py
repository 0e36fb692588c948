"""TriRec's stage-2 platform re-ranker: a hand-computed run, relevance-only equals sorting,
a scalar reference on random cases, the state carried across users and batches, input errors,
the wrapper on a trustrec recommender, and a real-data check (slow)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.eval import dgu, train_group_distribution, trirec_groups
from trustrec.mitigate import TriRecReranker, trirec_rerank
from trustrec.models import FitOptions, make_model
from trustrec.testing import RecommenderChecks

from ._data import genre_toy

QUIET = FitOptions(progress=False)
W1 = 1 / math.log2(3)  # position weight of the second slot, 0.63093

# -- the hand-computed case -------------------------------------------------------------------------
# Items 0-2 in group 0, items 3-5 in group 1; p_train = (0.4, 0.6). alpha_max 0.5, alpha_min 0.1,
# alpha_p 1 -> alpha_pos = 0.1 + 0.4 w: 0.5 at pos 0 (w = 1), 0.35237 at pos 1 (w = 0.63093).
# k = 2, rank_all=False (the state sees the two shown slots), no CTR (EIU factor 1).
GROUPS = np.array([0, 0, 0, 1, 1, 1])
P_TRAIN = np.array([0.4, 0.6])
ITEMS = np.array([[3, 0, 4, 1], [4, 5, 2, 0], [1, 5, -1, 2]])
SCORES = np.array([[4.0, 3.0, 2.0, 1.0], [2.0, 1.0, 0.0, -1.0], [0.5, 0.0, -np.inf, 1.0]])
HAND = {"alpha_max": 0.5, "alpha_min": 0.1, "alpha_p": 1.0, "rank_all": False}


def test_hand_computed_three_users():
    # rel = sigmoid(s - mean(s)): user 0 and 1: (.8176, .6225, .3775, .1824); min-max over the
    # remaining candidates gives acc. score = a (acc) + (1 - a)(.5 dgu + .5 mgu), all normalised.
    #
    # user 0, state counts (0, 0), N = 1e-6, gaps (.4, .6) (max: group 1)
    #   pos 0, w 1: group 1 item -> p' = 1/(1+1e-6) ~ 1, gap .4, drop .2 (also MGU: max gap);
    #     group 0 item -> gap .6 > .4, drop 0.  acc (1, .6928, .3072, 0) for items (3, 0, 4, 1)
    #     scores: 3: .5*1 + .5*(.5+.5) = 1;  0: .5*.6928 = .3464;  4: .5*.3072 + .5 = .6536;  1: 0
    #     -> item 3; counts (0, 1), N = 1.000001
    #   pos 1, w .63093: gaps (.4, .399999) (max: group 0); group 0 item -> p' = .63093/1.63093
    #     = .38685, drop .4 - .01315 = .38685 (also MGU); group 1 item: drop 0.
    #     acc over (0, 4, 1): (1, .4434, 0); scores 0: .35237 + .64763 = 1; 4: .35237*.4434 = .15625;
    #     1: .64763  -> item 0; counts (.63093, 1), N = 1.63093
    # user 1, gaps (.01315, .01315)
    #   pos 0, w 1: adding to either group overshoots (p' = .6199 or .7601): no drop, relevance
    #     decides: 4: .5, 5: .3464, 2: .1536, 0: 0 -> item 4; counts (.63093, 2), N = 2.63093
    #   pos 1: p = (.23981, .76019), gaps (.16019, .16019) (max: group 0); group 0 item -> p' =
    #     1.26186/3.26186 = .38685, drop .14704; group 1 item: drop 0.
    #     5: .35237*1 = .35237; 2: .35237*.4434 + .64763 = .80387; 0: .64763 -> item 2 (not 5)
    #     counts (1.26186, 2), N = 3.26186
    # user 2 (column 2 absent), rel over (1, 5, 2) with scores (.5, 0, 1): (.5, .3775, .6225)
    #   pos 0: gaps (.01315, .01315), no drop: relevance -> item 2 (.5); counts (2.26186, 2)
    #   pos 1: p = (.53072, .46928), gaps (.13072, .13072) (max: group 1); group 1 item -> p' =
    #     2.63093/4.89279 = .53772, drop .06844; scores 1: .35237; 5: .64763 -> item 5 (not 1)
    #     counts (2.26186, 2.63093), N = 4.89279
    result = trirec_rerank(ITEMS, SCORES, GROUPS, P_TRAIN, 2, **HAND)
    np.testing.assert_array_equal(result.items, [[3, 0], [4, 2], [2, 5]])
    np.testing.assert_allclose(result.scores, [[1.0, 1.0], [0.5, 0.80387], [0.5, 0.64763]], atol=5e-5)
    np.testing.assert_allclose(result.counts_after, [[W1, 1.0], [2 * W1, 2.0], [1 + 2 * W1, 2 + W1]], rtol=1e-12)
    np.testing.assert_allclose(result.totals_after, 1e-6 + np.array([1, 2, 3]) * (1 + W1), rtol=1e-12)
    np.testing.assert_allclose(result.group_counts, [1 + 2 * W1, 2 + W1])
    assert result.total_weight == pytest.approx(1e-6 + 3 * (1 + W1))


def test_hand_computed_full_list_of_the_first_user():
    # rank_all=True (the code): user 0 continues after the two slots above, from counts
    # (.63093, 1), N = 1.63093. pos 2, w .5, alpha .3: gaps (.01315, .01315) (max group 1):
    #   group 0 item (p' = 1.13093/2.13093 = .53072) gap .13072 -> drop 0; group 1 item
    #   (p' = 1.5/2.13093 = .70392) drop 0 -> relevance: item 4 (.3775) over item 1 (.1824).
    # pos 3 (w = 1/log2(5) = .43068): the last candidate, item 1 (score 0).
    result = trirec_rerank(ITEMS[:1], SCORES[:1], GROUPS, P_TRAIN, 4, **{**HAND, "rank_all": True})
    np.testing.assert_array_equal(result.items, [[3, 0, 4, 1]])
    w2, w3 = 0.5, 1 / math.log2(5)
    np.testing.assert_allclose(result.group_counts, [W1 + w3, 1 + w2])
    # with k = 2 the lists are cut, but the state still holds all four placements
    short = trirec_rerank(ITEMS[:1], SCORES[:1], GROUPS, P_TRAIN, 2, **{**HAND, "rank_all": True})
    np.testing.assert_array_equal(short.items, [[3, 0]])
    np.testing.assert_allclose(short.group_counts, result.group_counts)


def test_hand_computed_ctr_factor():
    # user 0 with CTR (.2, .9, .5, .7) for items (3, 0, 4, 1), lambda_item 1.
    # pos 0: eiu normalised (0, 1, .4286, .7143); gains (1, .3464, .6536, 0) (first test)
    #   -> scores (0, .3464, .2801, 0): item 0, though item 3 had the best gain.
    # pos 1, counts (1, 0), N ~ 1: gaps (.599999, .6) (max group 1); group 1 items: p' = .38685,
    #   drop .38685; item 1 (group 0): drop 0. acc over (3, 4, 1): (1, .3072, 0).
    #   gains: 3: .35237 + .64763 = 1; 4: .35237*.3072 + .64763 = .75589; 1: 0
    #   eiu over CTR (.2, .5, .7): (0, .6, 1) -> scores (0, .45354, 0): item 4
    ctr = np.array([[0.2, 0.9, 0.5, 0.7]])
    result = trirec_rerank(ITEMS[:1], SCORES[:1], GROUPS, P_TRAIN, 2, ctr=ctr, lambda_item=1.0, **HAND)
    np.testing.assert_array_equal(result.items, [[0, 4]])
    np.testing.assert_allclose(result.scores, [[0.34640, 0.45354]], atol=5e-5)
    # cosine = logit(ctr) gives the same CTR through the code's sigmoid
    cosine = np.log(ctr / (1 - ctr))
    again = trirec_rerank(ITEMS[:1], SCORES[:1], GROUPS, P_TRAIN, 2, cosine=cosine, lambda_item=1.0, **HAND)
    np.testing.assert_array_equal(again.items, result.items)


def test_equal_ctr_collapses_to_the_input_order_but_no_ctr_does_not():
    # the code's min-max makes equal CTRs all 0: every score is 0 and the first column wins
    flat = trirec_rerank(ITEMS[:1], SCORES[:1], GROUPS, P_TRAIN, 4, ctr=np.full((1, 4), 0.3))
    np.testing.assert_array_equal(flat.items, ITEMS[:1])
    np.testing.assert_array_equal(flat.scores, np.zeros((1, 4)))
    # without a CTR the factor is 1: relevance only (alpha 1) sorts items (3, 0, 4, 1) by (1, 2, 3, 4)
    none = trirec_rerank(ITEMS[:1], np.array([[1.0, 2.0, 3.0, 4.0]]), GROUPS, P_TRAIN, 4, alpha_max=1, alpha_min=1)
    np.testing.assert_array_equal(none.items, [[1, 4, 0, 3]])


# -- relevance only, reference, state ---------------------------------------------------------------
def _random_case(seed: int, n: int = 6, m: int = 5, n_items: int = 12, n_groups: int = 3):
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, m, replace=False) for _ in range(n)])
    scores = rng.normal(size=(n, m))
    items[0, 1], scores[0, 1] = -1, -np.inf  # one absent slot
    groups = rng.integers(0, n_groups, n_items)
    p_train = rng.dirichlet(np.ones(n_groups))
    return items, scores, groups, p_train, rng.uniform(0.05, 0.95, (n, m))


@pytest.mark.parametrize("rank_all", [True, False])
def test_no_fairness_weight_sorts_by_relevance(rank_all):
    items, scores, groups, p_train, _ = _random_case(1)
    k = 3
    result = trirec_rerank(items, scores, groups, p_train, k, alpha_max=1.0, alpha_min=1.0, rank_all=rank_all)
    order = np.argsort(-np.where(items >= 0, scores, -np.inf), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(result.items, np.take_along_axis(items, order, 1))


def _reference(items, scores, groups, p_train, k, ctr, a_max, a_min, p, l_item, rank_all):
    """TriRec's greedy written with plain Python scalars, one candidate at a time."""
    counts, total = [0.0] * len(p_train), 1e-6
    out = []

    def mm(v):
        lo, hi = min(v), max(v)
        return [0.0] * len(v) if hi - lo < 1e-12 else [(x - lo) / (hi - lo) for x in v]

    for u in range(len(items)):
        cols = [c for c in range(items.shape[1]) if items[u, c] >= 0 and np.isfinite(scores[u, c])]
        mean = sum(scores[u, c] for c in cols) / len(cols)
        left, placed = list(cols), []
        for pos in range(len(cols) if rank_all else k):
            w = 1 / math.log2(pos + 2)
            a = a_min + (a_max - a_min) * w**p
            gaps = [abs(counts[g] / max(total, 1e-12) - p_train[g]) for g in range(len(p_train))]
            acc, dg, mg, eiu = [], [], [], []
            for c in left:
                g = groups[items[u, c]]
                drop = max(0.0, gaps[g] - abs((counts[g] + w) / (total + w) - p_train[g]))
                acc.append(1 / (1 + math.exp(-(scores[u, c] - mean))) * w)
                dg.append(drop)
                mg.append(drop if gaps[g] >= max(gaps) - 1e-12 else 0.0)
                eiu.append(ctr[u, c] * w)
            acc, dg, mg, eiu = mm(acc), mm(dg), mm(mg), mm(eiu)
            best, best_score = None, -1e18
            for j, c in enumerate(left):
                s = (a * acc[j] + (1 - a) * (0.5 * dg[j] + 0.5 * mg[j])) * eiu[j] ** l_item
                if s > best_score:
                    best, best_score = c, s
            left.remove(best)
            placed.append(int(items[u, best]))
            counts[groups[items[u, best]]] += w
            total += w
        out.append(placed[:k])
    return np.array(out), np.array(counts)


@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("rank_all", [True, False])
def test_matches_a_scalar_reference(seed, rank_all):
    items, scores, groups, p_train, ctr = _random_case(seed)
    params = {"alpha_max": 0.6, "alpha_min": 0.1, "alpha_p": 0.1, "lambda_item": 2.0, "rank_all": rank_all}
    result = trirec_rerank(items, scores, groups, p_train, 3, ctr=ctr, **params)
    ref_items, ref_counts = _reference(items, scores, groups, p_train, 3, ctr, 0.6, 0.1, 0.1, 2.0, rank_all)
    np.testing.assert_array_equal(result.items, ref_items)
    np.testing.assert_allclose(result.group_counts, ref_counts)


def test_state_carries_across_users_and_can_continue_over_batches():
    items, scores, groups, p_train, ctr = _random_case(4)
    whole = trirec_rerank(items, scores, groups, p_train, 3, ctr=ctr)
    first = trirec_rerank(items[:3], scores[:3], groups, p_train, 3, ctr=ctr[:3])
    rest = trirec_rerank(
        items[3:],
        scores[3:],
        groups,
        p_train,
        3,
        ctr=ctr[3:],
        initial_counts=first.group_counts,
        initial_total=first.total_weight,
    )
    np.testing.assert_array_equal(np.vstack([first.items, rest.items]), whole.items)
    np.testing.assert_allclose(rest.group_counts, whole.group_counts)
    # the hand case's user 2 on a fresh state: at pos 0 the group-1 item 5 gains .2 (gaps (.4, .6)):
    # 5: .5*0 + .5*(.5 + .5) = .5 ties item 2: .5*1 = .5, the earlier column wins -> (5, 2), not (2, 5)
    alone = trirec_rerank(ITEMS[2:], SCORES[2:], GROUPS, P_TRAIN, 2, **HAND)
    np.testing.assert_array_equal(alone.items, [[5, 2]])


def test_inputs_are_not_modified_and_results_are_read_only():
    items, scores, groups, p_train, ctr = _random_case(5)
    copies = [a.copy() for a in (items, scores, groups, p_train, ctr)]
    result = trirec_rerank(items, scores, groups, p_train, 3, ctr=ctr)
    for before, after in zip(copies, (items, scores, groups, p_train, ctr)):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError):
        result.items[0, 0] = 1


# -- errors -------------------------------------------------------------------------------------------
def _call(**change: Any):
    args: dict[str, Any] = {"items": ITEMS, "scores": SCORES, "item_groups": GROUPS, "p_train": P_TRAIN, "k": 2}
    args.update(change)
    return trirec_rerank(**args)


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"scores": SCORES[:, :3]}, DataError, "scores has shape"),
        ({"items": ITEMS.astype(float)}, DataError, "integer matrix"),
        ({"scores": np.where(np.arange(4) == 2, np.nan, SCORES)}, DataError, r"scores row 0, column 2 is NaN"),
        ({"scores": np.where(np.arange(4) == 3, np.inf, SCORES)}, DataError, r"row 0, column 3 is \+inf"),
        ({"item_groups": np.array([0, 0, 0, 1, 1, 2])}, DataError, "items row 1 holds item 5 of unknown group 2"),
        ({"item_groups": GROUPS[:4]}, DataError, "items row 0 names item 4"),
        ({"items": np.array([[3, 0, 4, 1], [4, 5, 2, 0], [1, 5, -2, 2]])}, DataError, "row 2, column 2 is -2"),
        ({"items": np.array([[3, 0, 4, 3], [4, 5, 2, 0], [1, 5, -1, 2]])}, DataError, "row 0 lists item 3 twice"),
        ({"k": 5}, ConfigError, "k = 5 is larger than the 4 candidate columns"),
        ({"k": 0}, ConfigError, "k must be a positive integer"),
        ({"k": 4}, DataError, "items row 2 has 3 candidates, fewer than k = 4"),
        ({"items": np.array([[3, 0, 4, 1], [-1, -1, -1, -1], [1, 5, -1, 2]])}, DataError, "row 1 has no candidate"),
        ({"p_train": np.array([0.5, 0.6])}, DataError, "p_train must be non-negative and sum to 1"),
        ({"p_train": np.array([[0.4, 0.6]])}, DataError, "p_train must be a non-empty 1-d"),
        ({"ctr": np.ones((3, 4)), "cosine": np.ones((3, 4))}, ConfigError, "ctr or cosine, not both"),
        ({"ctr": np.ones((3, 3))}, DataError, "ctr has shape"),
        ({"ctr": np.where(np.arange(4) == 1, -0.5, np.ones((3, 4)))}, DataError, "ctr row 0, column 1 is -0.5"),
        ({"cosine": np.where(np.arange(4) == 0, np.nan, np.ones((3, 4)))}, DataError, "cosine row 0, column 0"),
        ({"alpha_max": 1.5}, ConfigError, "alpha_max must be"),
        ({"lambda_item": -1}, ConfigError, "lambda_item must be"),
        ({"short_rows": "drop"}, ConfigError, "short_rows must be"),
        ({"initial_counts": np.ones(3)}, DataError, "initial_counts must be 2"),
        ({"initial_total": 0.0}, ConfigError, "initial_total must be a positive"),
    ],
)
def test_bad_input_raises_naming_the_argument_and_row(change, error, match):
    with pytest.raises(error, match=match):
        _call(**change)


def test_short_rows_can_be_padded():
    items = np.array([[3, 0, 4, 1], [-1, -1, -1, -1], [1, 5, -1, 2]])
    result = _call(items=items, k=4, short_rows="pad")
    assert (result.items[1] == -1).all() and np.isneginf(result.scores[1]).all()
    assert result.items[2, 3] == -1 and (result.items[2, :3] >= 0).all()
    np.testing.assert_array_equal(result.counts_after[1], result.counts_after[0])  # an empty row moves nothing
    # an absent slot's NaN score (item -1) is not an error
    _call(scores=np.where((ITEMS == -1), np.nan, SCORES))


# -- the wrapper ---------------------------------------------------------------------------------------
BASE = {"name": "item_knn", "params": {"k": 10}}


@pytest.fixture(scope="module")
def genre_split():
    ds = genre_toy()
    return ds, split_leave_one_out(ds, short_users="train")


def test_wrapper_fits_groups_and_matches_the_pure_function(genre_split):
    _, split = genre_split
    model = TriRecReranker(base=BASE, n_candidates=8, strength=0.6).fit(split, QUIET)
    train = split.train_dataset()
    exposure = np.bincount(train.interactions.item, minlength=train.n_items)
    np.testing.assert_array_equal(model.item_groups_, trirec_groups(exposure, 8))
    np.testing.assert_allclose(model.p_train_, train_group_distribution(exposure, model.item_groups_, 8))
    queries = split.eval_set("test").queries
    base = model.base_.recommend(queries, 8)
    got = model.recommend(queries, 5)
    want = trirec_rerank(
        base.items, base.scores, model.item_groups_, model.p_train_, 5, alpha_max=0.4, short_rows="pad"
    )
    np.testing.assert_array_equal(got.items, want.items)
    assert np.all(np.diff(got.scores, axis=1) <= 0)
    np.testing.assert_array_equal(model.rerank(queries, base, 5, strength=0.0).items, base.items[:, :5])


class TestTriRecReranker(RecommenderChecks):
    component = TriRecReranker
    configs: ClassVar[list[dict[str, Any]]] = [{"base": BASE, "n_candidates": 8, "strength": 0.5}]

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = genre_toy()
        return ds, split_leave_one_out(ds, short_users="train")

    def assert_same_state(self, a, b):
        np.testing.assert_array_equal(a.item_groups_, b.item_groups_)

    def test_batched_equals_unbatched(self, data):
        # Not batch-invariant by design (the paper's algorithm): the platform state carries from
        # one row to the next. The first row sees a fresh state either way; later rows need the
        # rows before them.
        model = self.fitted(data)
        q = data[1].eval_set("test").queries[:6]
        batch = model.recommend(q, self.k)
        self.assert_same_recs(batch[0], model.recommend(q[0:1], self.k))


# -- real data ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_ml100k_sampled_candidates_dgu_drops(ml100k):
    """Held-out item + 9 sampled negatives per user, scored by ItemKNN: re-ranking lowers DGU@5 and
    DGU@10 against the relevance order (about 10 s)."""
    from trustrec.eval import mgu

    split = split_leave_one_out(ml100k)
    test = split.eval_set("test")
    model = make_model("item_knn").fit(split, QUIET)
    table = model.score(test.queries)
    target = test.targets.values[test.targets.indptr[:-1]]
    hist = test.queries.histories
    rng = np.random.default_rng(0)
    n = len(test)
    cands = np.empty((n, 10), np.int64)
    for u in range(n):
        seen = set(hist.values[hist.indptr[u] : hist.indptr[u + 1]].tolist()) | {int(target[u])}
        pool = np.setdiff1d(rng.choice(ml100k.n_items, 60, replace=False), list(seen))
        cands[u] = [target[u], *pool[rng.permutation(len(pool))[:9]]]
    scores = np.take_along_axis(table, cands, 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    before, before_scores = np.take_along_axis(cands, order, 1), np.take_along_axis(scores, order, 1)
    train = split.train_dataset()
    exposure = np.bincount(train.interactions.item, minlength=ml100k.n_items)
    groups = trirec_groups(exposure)
    p_train = train_group_distribution(exposure, groups, 8)
    after = trirec_rerank(before, before_scores, groups, p_train, 10, alpha_max=0.5).items
    for k in (5, 10):
        assert dgu(after[:, :k], groups, p_train) < dgu(before[:, :k], groups, p_train)
        assert mgu(after[:, :k], groups, p_train) < mgu(before[:, :k], groups, p_train)
    np.testing.assert_array_equal(np.sort(after, 1), np.sort(before, 1))  # a permutation of the candidates
