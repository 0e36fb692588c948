"""Small datasets with an item genre column for the re-ranking tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trustrec.data import Dataset, EvalSet, QueryBatch, Ragged
from trustrec.testing import toy_dataset

GENRES = ("Action", "Comedy", "Drama")


def genre_toy(**kw) -> Dataset:
    """``toy_dataset`` plus a ``genre`` column: the item blocks users prefer are genres, and
    every fourth item is also a Romance (a multi-genre item, ``|``-separated)."""
    ds = toy_dataset(**kw)
    genre = [GENRES[(i // 8) % 3] + ("|Romance" if i % 4 == 0 else "") for i in range(ds.n_items)]
    return Dataset(ds.name, ds.interactions, ds.items.assign(genre=genre), ds.users)


def popularity_genre_case(n_pop_users: int = 30, n_eval_users: int = 10):
    """A case built to show both trade-offs: 40 items, genre A = items 0-19, B = items 20-39;
    items 0-7 (genre A) are the popular head. Evaluated users have a history of one A and one B
    long-tail item, but the base scores rank items by index (all of A first, the head first).

    Returns (dataset, eval_set, score table) for ``PrecomputedScores``.
    """
    n_items = 40
    rows = []
    rng = np.random.default_rng(0)
    for u in range(n_pop_users):
        rows += [(u, i) for i in range(8)]
        rows += [(u, int(i)) for i in rng.choice(np.arange(8, 40), 2, replace=False)]
    eval_users = np.arange(n_pop_users, n_pop_users + n_eval_users)
    histories = [[10 + u % 5, 25 + u % 5] for u in range(n_eval_users)]
    for u, h in zip(eval_users, histories):
        rows += [(int(u), i) for i in h]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame = pd.DataFrame({"user_id": frame.user.astype(str), "item_id": frame.item.astype(str)})
    items = pd.DataFrame(
        {
            "item_id": np.arange(n_items).astype(str),
            "title": [f"item {i}" for i in range(n_items)],
            "genre": ["A" if i < 20 else "B" for i in range(n_items)],
        }
    )
    users = pd.DataFrame({"user_id": np.arange(n_pop_users + n_eval_users).astype(str)})
    ds = Dataset.from_frame(frame, name="popgenre", items=items, users=users, timestamp_col=None)
    targets = Ragged.from_rows([[20 + u % 7, 12 + u % 3] for u in range(n_eval_users)])
    eval_set = EvalSet(QueryBatch(eval_users, Ragged.from_rows(histories)), targets, "test")
    table = np.tile(np.linspace(1.0, 0.0, n_items), (ds.n_users, 1))
    return ds, eval_set, table
