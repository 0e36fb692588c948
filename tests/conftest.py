import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty trustrec cache: no test depends on what another fetched."""
    monkeypatch.setenv("TRUSTREC_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = os.environ.get("TRUSTREC_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("TRUSTREC_DATA is not set to the shared real-data folder")
    return Path(root)


@pytest.fixture(scope="session")
def ml100k(shared_data):
    from trustrec.data import load_dataset

    return load_dataset("ml-100k", data_dir=shared_data)


def make_dataset(n_users=6, n_items=8, n_inter=40, seed=0, ratings=True) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_inter - n_users)])
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in rng.integers(0, n_items, n_inter)],
            "timestamp": rng.integers(0, 1000, n_inter),
        }
    )
    if ratings:
        frame["rating"] = rng.integers(1, 6, n_inter).astype(float)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"Item {i}" for i in range(n_items)]})
    return Dataset.from_frame(frame, name="tiny", items=items)


@pytest.fixture
def tiny() -> Dataset:
    return make_dataset()
