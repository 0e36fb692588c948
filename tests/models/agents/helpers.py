"""What the agent tests share: queries with their own candidate lists."""

from __future__ import annotations

import numpy as np

from trustrec.data import QueryBatch, Ragged, Split


def candidate_queries(split: Split, n: int, width: int, seed: int = 0) -> tuple[QueryBatch, list[np.ndarray]]:
    """The first ``n`` test queries, each with ``width`` seeded unseen candidates (and the lists)."""
    base = split.eval_set("test").queries[:n]
    rng = np.random.default_rng(seed)
    cands = []
    for q in range(n):
        seen = set(base.histories.row(q).tolist())
        pool = [i for i in range(split.train_dataset().n_items) if i not in seen]
        cands.append(rng.choice(pool, width, replace=False))
    return QueryBatch(base.users, base.histories, candidates=Ragged.from_rows(cands)), cands
