"""Fairness list metrics against hand-computed cases."""

import numpy as np
import pytest
import scipy.sparse as sp

from trustrec.data import Ragged
from trustrec.eval import (
    exposure_by_group,
    gini,
    group_distribution,
    jaccard_at_k,
    lorenz_curve,
    miscalibration,
    popularity_lift,
    prag_star_at_k,
    serp_star_at_k,
    snsr,
    snsv,
)

# items: 0 in {A}, 1 in {A, B}, 2 in {B}, 3 in no group
MEMBERSHIP = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], float))


def test_list_similarities_by_hand():
    ref, other = np.array([[1, 2, 3]]), np.array([[3, 1, 5]])
    assert jaccard_at_k(ref, other)[0] == pytest.approx(2 / 4)  # {1,3} over {1,2,3,5}
    assert serp_star_at_k(ref, other)[0] == pytest.approx((1 + 3) / 6)  # 3 at rank 3 -> 1, 1 at rank 1 -> 3
    # pairs of `other` in order: (3,1) no, (3,5) yes (5 is absent from ref), (1,5) yes
    assert prag_star_at_k(ref, other)[0] == pytest.approx(2 / 3)
    same = np.array([[4, 5, 6], [1, -1, -1]])
    np.testing.assert_allclose(jaccard_at_k(same, same), 1.0)
    assert serp_star_at_k(same[:1], same[:1])[0] == pytest.approx(1.0)
    assert prag_star_at_k(same[:1], same[:1])[0] == pytest.approx(1.0)
    assert prag_star_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 1]]))[0] == 0.0
    assert jaccard_at_k(np.array([[1, 2]]), np.array([[3, 4]]))[0] == 0.0
    assert jaccard_at_k(np.array([[-1, -1]]), np.array([[-1, -1]]))[0] == 1.0


def test_similarity_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        jaccard_at_k(np.zeros((2, 3), int), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="n_users, k"):
        serp_star_at_k(np.zeros(3, int), np.zeros(3, int))


def test_snsr_snsv():
    assert snsr([0.2, 0.5, 0.9]) == pytest.approx(0.7)
    assert snsv([0.2, 0.5, 0.9]) == pytest.approx(np.std([0.2, 0.5, 0.9]))
    assert snsr([0.3, np.nan, 0.5]) == pytest.approx(0.2)
    assert np.isnan(snsr([]))


def test_group_distribution_splits_multi_group_items():
    dist = group_distribution(np.array([[0, 1], [3, -1], [2, 2]]), MEMBERSHIP)
    np.testing.assert_allclose(dist, [[0.75, 0.25], [0, 0], [0, 1]])
    ragged = group_distribution(Ragged.from_rows([[0, 1], [3], [2, 2]]), MEMBERSHIP)
    np.testing.assert_allclose(ragged, dist)
    with pytest.raises(ValueError, match="out of range"):
        group_distribution(np.array([[7]]), MEMBERSHIP)


def test_miscalibration_by_hand():
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    expected = 0.5 * np.log(0.5 / 0.995) + 0.5 * np.log(0.5 / 0.005)  # q~ = 0.99 q + 0.01 p
    assert miscalibration(p, q)[0] == pytest.approx(expected)
    assert miscalibration(p, p)[0] == pytest.approx(0.0)
    assert np.isnan(miscalibration(np.zeros((1, 2)), q)[0])  # empty profile
    with pytest.raises(ValueError, match="alpha"):
        miscalibration(p, q, alpha=0)


def test_popularity_lift_and_lorenz():
    np.testing.assert_allclose(popularity_lift([3.0, 2.0], [2.0, 0.0]), [0.5, np.nan])
    x, y = lorenz_curve([3, 0, 1])
    np.testing.assert_allclose(x, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(y, [0, 0, 0.25, 1])
    area = np.trapezoid(y, x)
    assert 1 - 2 * area == pytest.approx(gini([3, 0, 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="non-negative"):
        lorenz_curve([1, -1])


def test_exposure_by_group_by_hand():
    out = exposure_by_group(np.array([[0, 1], [0, -1]]), MEMBERSHIP, item_popularity=[1, 1, 2, 0])
    # slots: item0 x2 -> A 2; item1 x1 -> A .5, B .5  => A 2.5, B .5
    np.testing.assert_allclose(out["exposure_share"], [5 / 6, 1 / 6])
    np.testing.assert_allclose(out["catalog_share"], [0.5, 0.5])  # A 1.5, B 1.5 (item 3 in none)
    np.testing.assert_allclose(out["interaction_share"], [1.5 / 4, 2.5 / 4])
    np.testing.assert_allclose(out["ratio"], [5 / 3, 1 / 3])
