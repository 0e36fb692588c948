import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, split_leave_one_out


def attributed_frames(n_users=160, n_items=40, per_user=8, seed=0):
    """Interactions where item popularity is skewed, users have gender/age/occupation (a few
    missing) and items a multi-valued genre column."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False, p=pop / pop.sum())
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(n_users)],
            "gender": np.where(np.arange(n_users) % 2 == 0, "F", "M").astype(object),
            "age": rng.integers(15, 70, n_users),
            "occupation": rng.choice(["artist", "engineer", "student"], n_users),
        }
    )
    users.loc[[3, 7], "gender"] = None
    genres = ["Action", "Comedy", "Drama", "Horror"]
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"Film {i}" for i in range(n_items)],
            "genre": ["|".join(sorted({genres[i % 4], genres[(i * 7) % 4]})) for i in range(n_items)],
        }
    )
    return inter, users, items


@pytest.fixture(scope="session")
def attributed():
    inter, users, items = attributed_frames()
    ds = Dataset.from_frame(inter, name="attributed", items=items, users=users)
    return ds, split_leave_one_out(ds)
