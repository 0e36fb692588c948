"""Every metric against a case computed by hand (the arithmetic is in the comments)."""

import math

import numpy as np
import pytest

from trustrec.errors import ConfigError
from trustrec.eval import (
    aplt,
    average_popularity,
    average_precision,
    average_precision_trec,
    catalog_coverage,
    exposure_gini,
    gini,
    hit_rate,
    intra_list_diversity,
    item_user_counts,
    long_tail_mask,
    mrr,
    ndcg,
    novelty,
    parse_metric,
    precision,
    recall,
)

# user 0: relevant at ranks 2 and 4 of 5, 3 relevant in total
# user 1: nothing relevant found, 1 relevant in total
# user 2: relevant at rank 1, 1 relevant in total
HITS = np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)
NREL = np.array([3, 1, 1])


def test_recall_precision_hr():
    np.testing.assert_allclose(recall(HITS, NREL), [2 / 3, 0, 1])
    np.testing.assert_allclose(precision(HITS, NREL), [2 / 5, 0, 1 / 5])
    np.testing.assert_allclose(hit_rate(HITS, NREL), [1, 0, 1])


def test_ndcg_by_hand():
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    np.testing.assert_allclose(ndcg(HITS, NREL), [dcg0 / idcg0, 0, 1])


def test_ndcg_ideal_is_capped_at_k():
    hits = np.array([[1, 1]], dtype=bool)
    assert ndcg(hits, np.array([5]))[0] == pytest.approx(1.0)  # 5 relevant but only K=2 slots


def test_mrr_and_map():
    np.testing.assert_allclose(mrr(HITS, NREL), [1 / 2, 0, 1])
    # AP@5 user 0: precision at ranks 2 and 4 = 1/2 and 2/4, divided by min(3, 5)
    np.testing.assert_allclose(average_precision(HITS, NREL), [(1 / 2 + 2 / 4) / 3, 0, 1])


def test_map_conventions_by_hand():
    # user 0: hits at ranks 2 and 4 of 5; precision there 1/2 and 2/4, sum 1.
    # 3 relevant: map divides by min(3, 5) = 3, map_trec by 3 as well
    # user 3 (below): hits at ranks 1 and 2 of K = 2, 4 relevant: sum = 1 + 1 = 2;
    # map divides by min(4, 2) = 2 -> 1.0 (RecBole), map_trec by 4 -> 0.5 (trec_eval, ranx)
    hits = np.array([[1, 1]], dtype=bool)
    assert average_precision(hits, np.array([4]))[0] == pytest.approx(1.0)
    assert average_precision_trec(hits, np.array([4]))[0] == pytest.approx(0.5)
    np.testing.assert_allclose(average_precision_trec(HITS, NREL), [(1 / 2 + 2 / 4) / 3, 0, 1])
    assert parse_metric("map_trec@10").label == "map_trec@10"


def test_no_relevant_items_gives_nan():
    hits = np.zeros((1, 3), dtype=bool)
    for f in (recall, precision, hit_rate, ndcg, mrr, average_precision, average_precision_trec):
        assert np.isnan(f(hits, np.array([0]))[0])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ndcg(HITS, np.array([1, 2]))


def test_order_invariance_over_users():
    perm = np.array([2, 0, 1])
    for f in (recall, ndcg, mrr, average_precision):
        np.testing.assert_allclose(f(HITS[perm], NREL[perm]), f(HITS, NREL)[perm])


TOP = np.array([[0, 1, 2], [0, 3, -1]])  # -1 = padding
POP = np.array([10.0, 5.0, 1.0, 0.0, 4.0])


def test_coverage_and_exposure_gini():
    assert catalog_coverage(TOP, 5) == pytest.approx(4 / 5)
    # exposure counts [2,1,1,1,0]; sorted x=[0,1,1,1,2], n=5, sum=5:
    # gini = sum((2i-n-1) x_i)/(n sum) = (-4*0 -2*1 +0*1 +2*1 +4*2)/25 = 8/25
    assert exposure_gini(TOP, 5) == pytest.approx(8 / 25)
    assert gini([1, 1, 1]) == pytest.approx(0.0)
    assert np.isnan(gini([0, 0]))


def test_average_popularity_and_aplt():
    np.testing.assert_allclose(average_popularity(TOP, POP), [(10 + 5 + 1) / 3, (10 + 0) / 2])
    tail = long_tail_mask(POP, head_share=0.2)  # head = the top 1 of 5: item 0
    assert tail.tolist() == [False, True, True, True, True]
    np.testing.assert_allclose(aplt(TOP, tail), [2 / 3, 1 / 2])


def test_novelty():
    # 10 users; p = max(pop, 1)/10 -> item0 1.0, item1 0.5, item2 0.1, item3 0.1 (unseen counts once)
    expected0 = (0 + 1 + -math.log2(0.1)) / 3
    expected1 = (0 + -math.log2(0.1)) / 2
    np.testing.assert_allclose(novelty(TOP, POP, 10), [expected0, expected1])


def test_novelty_counts_users_not_interactions():
    # 4 users. item 0: user 0 three times and user 1 once -> 2 distinct users (4 interactions);
    # item 1: user 2 once; item 2: nobody (counts as 1 user)
    users = np.array([0, 0, 0, 1, 2])
    items = np.array([0, 0, 0, 0, 1])
    counts = item_user_counts(users, items, 3)
    assert counts.tolist() == [2, 1, 0]
    # list [0, 1, 2]: -log2(2/4) = 1, -log2(1/4) = 2, -log2(1/4) = 2 -> mean 5/3
    np.testing.assert_allclose(novelty(np.array([[0, 1, 2]]), counts, 4), [5 / 3])
    # counting interactions instead would give item 0 p = 4/4 -> 0 bits: not what the docstring says
    assert novelty(np.array([[0]]), np.bincount(items, minlength=3), 4)[0] == 0.0
    with pytest.raises(ValueError):
        item_user_counts(users, items[:2], 3)


def test_intra_list_diversity():
    vec = np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 0]], dtype=float)
    # user 0: cos(0,1)=0, cos(0,2)=cos(1,2)=1/sqrt2 -> mean sim = (0 + 2/sqrt2)/3
    # user 1: items 0 and 3 are identical -> distance 0
    np.testing.assert_allclose(intra_list_diversity(TOP, vec), [1 - (2 / math.sqrt(2)) / 3, 0.0])
    assert np.isnan(intra_list_diversity(np.array([[1, -1]]), vec)[0])


def test_metric_names():
    assert parse_metric("NDCG@10").label == "ndcg@10"
    with pytest.raises(ConfigError, match=r"unknown metric 'ndgc'.*valid names"):
        parse_metric("ndgc@10")
    with pytest.raises(ConfigError, match="name@K"):
        parse_metric("ndcg")
