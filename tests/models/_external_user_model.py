"""A user's own recommender, as the external-model tests import it by path
(``tests.models._external_user_model:score`` ...): trustrec's EASE / MostPopular fitted inside,
answered in raw ids, plus broken variants for the error tests."""

from __future__ import annotations

import numpy as np

from trustrec.models import make_model


def fit(train, seed):
    """Fit EASE on ``train`` (a trustrec Dataset) and return it as the state."""
    from trustrec.models import FitOptions

    return make_model("ease", reg=50.0).fit(train, FitOptions(seed=seed, progress=False))


def fit_popular(train, seed):
    from trustrec.models import FitOptions

    return make_model("most_popular").fit(train, FitOptions(seed=seed, progress=False))


def score(state, queries):
    """Scores in raw ids: histories are mapped through the state's own vocabulary."""
    batch = state.queries_from_raw(queries.histories, users=queries.user_ids)
    s = np.asarray(state.score(batch), dtype=np.float64)
    order = [state.item_ids_.index(i) for i in queries.item_ids] if state.item_ids_ != queries.item_ids else None
    return s if order is None else s[:, order]


def rank(state, queries):
    """Ranked raw item ids (k plus history length, so trustrec can drop seen items)."""
    top = state.recommend_raw(queries.histories, queries.k, users=queries.user_ids)
    return [top.row(i) for i in range(len(top))], [list(top.scores[i][: len(top.row(i))]) for i in range(len(top))]


_POPULAR = None


def popular_scores(state, queries):
    """No fit: a constant score per item (its position in the catalog, reversed)."""
    n = len(queries.item_ids)
    return np.tile(np.arange(n, 0, -1, dtype=np.float64), (len(queries), 1))


def wrong_shape(state, queries):
    return np.zeros((len(queries), 3))


def nan_scores(state, queries):
    s = np.zeros((len(queries), len(queries.item_ids)))
    s[0, 1] = np.nan
    return s


def out_of_catalog(state, queries):
    return [["no-such-item"] for _ in range(len(queries))]


def repeated(state, queries):
    first = queries.item_ids[0]
    return [[first, first] for _ in range(len(queries))]


NOT_CALLABLE = 3
