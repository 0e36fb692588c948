"""The recommender contract (trustrec.testing.RecommenderChecks) for the adapters of models trustrec
did not train; where an adapter cannot do what the contract asks (save a user's state, answer a
query a list file does not hold), the check asserts the clear refusal instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from tests.models.test_external import _Service as EndpointService
from trustrec.data import Dataset, QueryBatch, Ragged, Split
from trustrec.errors import ConfigError, DataError
from trustrec.models import (
    ExternalEndpoint,
    ExternalRanker,
    ExternalScorer,
    ExternalTopKFile,
    FitOptions,
    make_model,
)
from trustrec.testing import RecommenderChecks

USER = "tests.models._external_user_model"


class _RefusesToSave:
    """Adapters whose fitted state is the user's own object: saving is refused, naming why."""

    saved_message: ClassVar[str] = "not saved by trustrec"

    def test_save_load_round_trip(self, data: tuple[Dataset, Split], tmp_path: Path) -> None:
        model = self.fitted(data)  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=self.saved_message):
            model.save(tmp_path / "m")
        assert not (tmp_path / "m").exists()


class TestExternalScorerChecks(_RefusesToSave, RecommenderChecks):
    component = ExternalScorer
    configs: ClassVar[list[dict[str, Any]]] = [{"score": f"{USER}:score", "fit": f"{USER}:fit"}]

    def test_default_construction_and_repr(self) -> None:
        with pytest.raises(ConfigError, match="score"):
            ExternalScorer()  # the user's function is the model: there is no default
        assert "ExternalScorer" in repr(self.make())


class TestExternalRankerChecks(_RefusesToSave, RecommenderChecks):
    component = ExternalRanker
    configs: ClassVar[list[dict[str, Any]]] = [{"rank": f"{USER}:rank", "fit": f"{USER}:fit"}]

    def test_default_construction_and_repr(self) -> None:
        with pytest.raises(ConfigError, match="rank"):
            ExternalRanker()
        assert "ExternalRanker" in repr(self.make())


class _NotQueryable:
    """Adapters that answer only what was asked before (a list file): new queries are refused."""

    def test_candidates_are_respected(self, data: tuple[Dataset, Split]) -> None:
        model = self.fitted(data)  # type: ignore[attr-defined]
        q = self.queries(data)[:3]  # type: ignore[attr-defined]
        with pytest.raises(DataError, match="cannot answer new queries"):
            model.recommend(q.with_candidates(Ragged.from_rows([[0, 1], [2], [3]])), 3)

    def test_edge_queries_do_not_raise(self, data: tuple[Dataset, Split]) -> None:
        model = self.fitted(data)  # type: ignore[attr-defined]
        edge = QueryBatch(np.array([-1]), Ragged.from_rows([[1, 2]]))
        with pytest.raises(DataError, match="not an evaluation query"):
            model.recommend(edge, 5)


class TestExternalTopKFileChecks(_RefusesToSave, _NotQueryable, RecommenderChecks):
    component = ExternalTopKFile
    configs: ClassVar[list[dict[str, Any]]] = []
    saved_message: ClassVar[str] = "the list file .* is the model"

    @pytest.fixture(autouse=True)
    def _lists(self, data: tuple[Dataset, Split], tmp_path_factory: pytest.TempPathFactory) -> None:
        split = data[1]
        native = make_model("ease", reg=10.0).fit(split, FitOptions(progress=False))
        rows = []
        for part in ("valid", "test"):
            queries = split.eval_set(part).queries
            top = native.recommend(queries, split.dataset.n_items)
            rows += [
                {"user_id": native.user_ids_[u], "item_id": native.item_ids_[i], "rank": r + 1, "score": float(s)}
                for u, items, scores in zip(queries.users, top.items, top.scores)
                for r, (i, s) in enumerate(zip(items, scores))
                if i >= 0
            ]
        path = tmp_path_factory.mktemp("lists") / "topk.csv"
        pd.DataFrame(rows).drop_duplicates(["user_id", "item_id"]).to_csv(path, index=False)
        type(self).configs = [{"path": str(path), "score_column": "score", "rank_column": None, "parts": ["test"]}]

    def test_default_construction_and_repr(self) -> None:
        with pytest.raises(ConfigError, match="path"):
            ExternalTopKFile()
        assert "ExternalTopKFile" in repr(self.make())


class TestExternalEndpointChecks(_RefusesToSave, RecommenderChecks):
    """Against a real HTTP server on 127.0.0.1 answering the JSON contract from a fitted EASE."""

    component = ExternalEndpoint
    configs: ClassVar[list[dict[str, Any]]] = []
    saved_message: ClassVar[str] = "the endpoint .* is the model"

    @pytest.fixture(autouse=True)
    def _endpoint(self, data: tuple[Dataset, Split]) -> Any:
        native = make_model("ease", reg=10.0).fit(data[1], FitOptions(progress=False))
        server = EndpointService(native)
        type(self).configs = [{"url": server.url, "batch_size": 5, "max_concurrency": 2, "max_retries": 0}]
        yield
        server.server.shutdown()

    def test_default_construction_and_repr(self) -> None:
        with pytest.raises(ConfigError, match="url"):
            ExternalEndpoint()
        assert "ExternalEndpoint" in repr(self.make())
