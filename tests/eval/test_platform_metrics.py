"""TriRec's platform metrics (groups, p_train, DGU, MGU, CTR, EIU@K) against hand-computed cases."""

import math

import numpy as np
import pytest

from trustrec.errors import DataError
from trustrec.eval import (
    ctr_from_cosine,
    dgu,
    eiu_at_k,
    mgu,
    platform_distribution,
    position_weights,
    train_group_distribution,
    trirec_groups,
)

W1 = 1 / math.log2(3)  # weight of rank 2


def test_groups_are_equal_chunks_least_exposed_first():
    exposure = np.array([5, 0, 3, 3, 1, 9, 2, 0, 4, 7])
    # ascending, ties by index: 1(0) 7(0) 4(1) | 6(2) 2(3) 3(3) | 8(4) 0(5) 9(7) 5(9)
    # chunk = 10 // 3 = 3; the last group takes the remaining 4
    groups = trirec_groups(exposure, 3)
    np.testing.assert_array_equal(groups, [2, 0, 1, 1, 0, 2, 1, 0, 2, 2])
    # p_train: group exposure over 34: (0+0+1, 2+3+3, 4+5+7+9) / 34
    np.testing.assert_allclose(train_group_distribution(exposure, groups, 3), np.array([1, 8, 25]) / 34)


def test_groups_with_few_items_and_the_default_eight():
    np.testing.assert_array_equal(trirec_groups([3.0, 1.0, 2.0]), [2, 0, 1])  # chunk 1; groups 3-7 empty
    groups = trirec_groups(np.arange(17.0))  # chunk 2: groups 0-6 hold 2 items, group 7 holds 3
    np.testing.assert_array_equal(np.bincount(groups), [2, 2, 2, 2, 2, 2, 2, 3])
    np.testing.assert_array_equal(train_group_distribution(np.zeros(3), np.array([0, 1, 1]), 2), [0.0, 0.0])


def test_dgu_and_mgu_by_hand():
    # 4 groups, top-1 lists (weight 1 each): groups served (0, 1, 1, 1, 2, 2, 2, 2, 3, 3)
    item_groups = np.array([0, 1, 2, 3])
    top = np.array([[0], [1], [1], [1], [2], [2], [2], [2], [3], [3]])
    p_train = np.array([0.4, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(platform_distribution(top, item_groups, 4), [0.1, 0.3, 0.4, 0.2])
    # |p_rec - p_train| = (.3, .2, .2, .1): DGU = .8 / 2 = .4, MGU = .3
    assert dgu(top, item_groups, p_train) == pytest.approx(0.4)
    assert mgu(top, item_groups, p_train) == pytest.approx(0.3)
    assert dgu(top, item_groups, np.array([0.1, 0.3, 0.4, 0.2])) == pytest.approx(0.0)


def test_position_weights_and_padding_in_the_served_distribution():
    np.testing.assert_allclose(position_weights(3), [1.0, W1, 0.5])
    # one list (item of group 0, item of group 1, no item): weights 1 and .63093
    p_rec = platform_distribution(np.array([[0, 1, -1]]), np.array([0, 1]), 2)
    np.testing.assert_allclose(p_rec, [1 / (1 + W1), W1 / (1 + W1)])  # (.61315, .38685)
    assert dgu(np.array([[0, 1, -1]]), np.array([0, 1]), [0.5, 0.5]) == pytest.approx(1 / (1 + W1) - 0.5)
    np.testing.assert_array_equal(platform_distribution(np.full((2, 2), -1), np.array([0, 1]), 2), [0, 0])


def test_ctr_from_cosine_by_hand():
    cos = np.array([[0.2, 0.4, np.nan], [0.3, 0.3, 0.3], [0.9, 0.902, 0.904]])
    ctr = ctr_from_cosine(cos)
    # row 0: tau = std(.2, .4) = .1 -> z = 2, 4; the NaN item gets .001
    np.testing.assert_allclose(ctr[0], [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-4)), 0.001])
    # row 1: std 0 < 1e-3 -> tau .5, z = .6
    np.testing.assert_allclose(ctr[1], 1 / (1 + math.exp(-0.6)))
    # row 2: tau = .001633 -> z > 20 clipped to 20
    assert ctr[2, 2] == pytest.approx(1 / (1 + math.exp(-20)))
    # the re-ranker's phi: plain sigmoid(cos)
    np.testing.assert_allclose(ctr_from_cosine(cos[:1, :2], temperature=1.0), 1 / (1 + np.exp(-cos[:1, :2])))


def test_eiu_at_k_by_hand():
    ctr = np.array([[0.5, 0.4, 0.2], [0.9, np.nan, np.nan]])
    np.testing.assert_allclose(eiu_at_k(ctr, 2), [0.5 + 0.4 * W1, 0.9])  # (.75237, .9)
    np.testing.assert_allclose(eiu_at_k(ctr, 5), [0.5 + 0.4 * W1 + 0.2 * 0.5, 0.9])
    np.testing.assert_array_equal(eiu_at_k(ctr, 0), [0.0, 0.0])


def test_metrics_are_order_invariant_over_users():
    rng = np.random.default_rng(0)
    top, groups, p_train = rng.integers(-1, 6, (7, 3)), rng.integers(0, 3, 6), np.array([0.2, 0.3, 0.5])
    shuffled = top[rng.permutation(7)]
    assert dgu(top, groups, p_train) == pytest.approx(dgu(shuffled, groups, p_train))
    assert mgu(top, groups, p_train) == pytest.approx(mgu(shuffled, groups, p_train))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: trirec_groups([1.0, -1.0]), DataError, "item 1 has -1.0"),
        (lambda: trirec_groups([[1.0]]), DataError, "must be 1-d"),
        (lambda: trirec_groups([1.0], 0), ValueError, "n_groups must be at least 1"),
        (lambda: train_group_distribution([1.0, 2.0], [0], 2), DataError, "2 items but item_groups has 1"),
        (lambda: train_group_distribution([1.0], [3], 2), DataError, "item 0 has group 3"),
        (lambda: platform_distribution(np.array([[0, 5]]), np.array([0, 1]), 2), DataError, "top row 0"),
        (lambda: platform_distribution(np.array([0, 1]), np.array([0, 1]), 2), DataError, "n_users, K"),
        (lambda: dgu(np.array([[0]]), np.array([0, 1]), [[0.5, 0.5]]), DataError, "p_train must be 1-d"),
        (lambda: ctr_from_cosine([0.1, 0.2]), DataError, "n_users, L"),
        (lambda: ctr_from_cosine([[0.1]], temperature=0.0), ValueError, "positive number"),
        (lambda: eiu_at_k([[0.1]], -1), ValueError, "k must be >= 0"),
    ],
)
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()
