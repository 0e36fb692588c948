"""Your own recommender, as trustrec audits it (copy this file and replace the model).

trustrec calls ``fit(train, seed)`` once on the split's training data (and again whenever an
audit retrains the model on other data: poisoned, with users forgotten ...), and hands what it
returns to ``score(state, queries)``. Everything is in the dataset's raw ids:

- ``train.interactions.user`` / ``.item`` are indices; ``train.user_ids`` / ``train.item_ids`` map
  them to raw ids;
- ``queries.histories[i]`` is the raw item ids query ``i`` has seen (oldest first),
  ``queries.user_ids[i]`` its raw user id (None: anonymous), ``queries.item_ids`` the catalog;
- ``score`` returns one row per query, one column per item of ``queries.item_ids``, higher is
  better (``-inf``: never recommend; NaN is an error).

This one is an item-to-item co-occurrence model with a popularity prior, in plain numpy.
"""

from __future__ import annotations

import numpy as np


def fit(train, seed: int) -> dict:
    """Learn item co-occurrence counts and item popularity from ``train`` (a trustrec Dataset)."""
    users = np.asarray(train.interactions.user)
    items = np.asarray(train.interactions.item)
    n_users, n_items = train.n_users, train.n_items
    matrix = np.zeros((n_users, n_items), dtype=np.float32)
    matrix[users, items] = 1.0
    cooc = matrix.T @ matrix
    np.fill_diagonal(cooc, 0.0)
    popularity = matrix.sum(axis=0)
    return {
        "item_ids": [str(i) for i in train.item_ids],
        "similarity": cooc / np.maximum(popularity[None, :], 1.0),
        "prior": popularity / max(popularity.max(), 1.0),
    }


def score(state: dict, queries) -> np.ndarray:
    """Score every catalog item for each query from the items in its history."""
    position = {item: i for i, item in enumerate(state["item_ids"])}
    columns = np.array([position[item] for item in queries.item_ids])
    out = np.empty((len(queries), len(columns)), dtype=np.float64)
    for row, history in enumerate(queries.histories):
        seen = [position[item] for item in history if item in position]
        s = state["similarity"][seen].sum(axis=0) if seen else np.zeros(len(state["item_ids"]))
        out[row] = (s + 0.01 * state["prior"])[columns]
    return out


def write_topk_csv(path: str = "topk.csv", k: int = 10) -> None:
    """Write this model's top-``k`` lists for the ml-100k leave-one-out test users to ``path``
    (user_id, item_id, rank): the file ``external_topk.yaml`` audits."""
    import csv

    from trustrec.data import load_dataset, make_split

    split = make_split(load_dataset("ml-100k"), "leave_one_out")
    state = fit(split.train_dataset(), seed=0)
    ids = [str(i) for i in split.dataset.item_ids]
    users = [str(u) for u in split.dataset.user_ids]
    eval_set = split.eval_set("test")
    q = eval_set.queries
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user_id", "item_id", "rank"])
        for i in range(len(q)):
            history = [ids[j] for j in q.histories.row(i)]
            s = score(state, _Queries([history], ids))[0]
            s[[ids.index(h) for h in history]] = -np.inf
            for rank, j in enumerate(np.argsort(-s, kind="stable")[:k], start=1):
                out.writerow([users[q.users[i]], ids[j], rank])


class _Queries:
    """The two fields ``score`` reads, for writing lists outside trustrec."""

    def __init__(self, histories, item_ids):
        self.histories, self.item_ids = histories, item_ids

    def __len__(self) -> int:
        return len(self.histories)


if __name__ == "__main__":
    write_topk_csv()
