from typing import Any, ClassVar

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.mitigate import CalibratedReranker, ExposureReranker
from trustrec.testing import RecommenderChecks

from ._data import genre_toy

BASE = {"name": "item_knn", "params": {"k": 10}}


class _GenreData:
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = genre_toy()
        return ds, split_leave_one_out(ds, short_users="train")

    def assert_same_state(self, a, b):
        np.testing.assert_array_equal(a.group_indices_, b.group_indices_)


class TestCalibratedReranker(_GenreData, RecommenderChecks):
    component = CalibratedReranker
    configs: ClassVar[list[dict[str, Any]]] = [{"base": BASE, "n_candidates": 8, "strength": 0.5}]


class TestExposureReranker(_GenreData, RecommenderChecks):
    component = ExposureReranker
    configs: ClassVar[list[dict[str, Any]]] = [{"base": BASE, "n_candidates": 8, "strength": 0.7}]


class TestProviderExposureReranker(_GenreData, RecommenderChecks):
    component = ExposureReranker
    configs: ClassVar[list[dict[str, Any]]] = [
        {
            "base": {"name": "most_popular"},
            "n_candidates": 12,
            "strength": 0.9,
            "groups": "genre",
            "variant": "smooth",
            "user_weights": "uniform",
        }
    ]
