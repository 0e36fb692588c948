from typing import Any, ClassVar

from trustrec.models.classic import BPRMF, EASE, ItemKNN, MostPopular, SASRec
from trustrec.testing import RecommenderChecks


class TestMostPopular(RecommenderChecks):
    component = MostPopular


class TestItemKNN(RecommenderChecks):
    component = ItemKNN
    configs: ClassVar[list[dict[str, Any]]] = [{"k": 10}]


class TestEASE(RecommenderChecks):
    component = EASE
    configs: ClassVar[list[dict[str, Any]]] = [{"reg": 10.0}]


class TestBPRMF(RecommenderChecks):
    component = BPRMF
    configs: ClassVar[list[dict[str, Any]]] = [{"epochs": 3, "embedding_size": 8, "batch_size": 64}]


class TestSASRec(RecommenderChecks):
    component = SASRec
    configs: ClassVar[list[dict[str, Any]]] = [
        {"epochs": 2, "embedding_size": 16, "max_len": 8, "inner_size": 32, "batch_size": 16}
    ]
