"""Exact title match in the evaluator: ``title_classes`` and ``evaluate(item_classes=...)``."""

import numpy as np
import pytest

from trustrec.data import EvalSet, QueryBatch, Ragged
from trustrec.errors import ConfigError
from trustrec.eval import evaluate, title_classes
from trustrec.models import Recommender, TopK


def test_title_classes_by_hand():
    titles = ["A", "B", " A ", None, "", "B", "C"]
    np.testing.assert_array_equal(title_classes(titles), [0, 1, 0, 3, 4, 1, 6])
    assert title_classes([]).shape == (0,)


class _Fixed(Recommender):
    """Returns the same list for every query (items 2, 0, 5, 1, 3)."""

    name = "fixed_list_test"

    def _fit(self, train, options):  # pragma: no cover - never fitted through fit()
        pass

    def recommend(self, queries, k=10, *, exclude_seen=True):
        row = np.array([2, 0, 5, 1, 3, 4, 6][:k])
        return TopK(np.tile(row, (len(queries), 1)), np.tile(-np.arange(len(row), dtype=float), (len(queries), 1)))


def _model(n_items=7):
    m = _Fixed()
    m.n_items_, m.n_users_ = n_items, 3
    return m


def test_duplicate_titles_count_once_and_the_list_moves_up():
    # items 0 and 2 share a title, so do 1 and 5: the list 2,0,5,1,3 reads as titles 0,1,3,4,6
    classes = np.array([0, 1, 0, 3, 4, 1, 6])
    queries = QueryBatch(np.arange(3), Ragged(np.array([0, 0, 0, 0]), np.array([], dtype=np.int64)))
    targets = Ragged(np.arange(4), np.array([2, 1, 3]))  # titles 0, 1 and 3: ranks 1, 2, 3
    res = evaluate(
        _model(),
        EvalSet(queries, targets, "test"),
        metrics=["ndcg@3", "hr@1"],
        exclude_seen=False,
        item_classes=classes,
        n_boot=0,
        progress=False,
    )
    expected = np.mean([1.0, 1 / np.log2(3), 1 / np.log2(4)])
    assert res.mean("ndcg@3") == pytest.approx(expected)
    assert res.mean("hr@1") == pytest.approx(1 / 3)
    by_index = evaluate(
        _model(),
        EvalSet(queries, targets, "test"),
        metrics=["ndcg@3"],
        exclude_seen=False,
        item_classes=np.arange(7),
        n_boot=0,
        progress=False,
    )
    # by index the list is 2, 0, 5: items 1 and 3 are not in it
    assert by_index.mean("ndcg@3") == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="item_classes"):
        evaluate(_model(), EvalSet(queries, targets, "test"), metrics=["ndcg@3"], item_classes=[0, 1], progress=False)
