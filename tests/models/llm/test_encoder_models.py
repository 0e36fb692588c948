"""LLM-as-encoder recommenders (text_knn, sasrec_text) and the item text embeddings they read.

Fast tests replace the sentence encoder with hashed character trigrams (similar titles get
similar vectors, no model to load); one test loads a tiny random BERT through the real loader,
and the slow test uses all-MiniLM-L6-v2 on ml-100k.
"""

import dataclasses
import zlib
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from tests.models.llm.test_text_encoder import tiny_encoder_folder  # noqa: F401  (fixture)
from trustrec.data import Dataset, QueryBatch, split_leave_one_out
from trustrec.errors import DataError
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.models.classic import SASRec
from trustrec.models.llm import _encoder_models, _text_items
from trustrec.models.llm._encoder_models import TextKNN, TextSASRec
from trustrec.models.llm._text_items import item_text_embeddings, render_item_texts
from trustrec.testing import RecommenderChecks

FIT = FitOptions(seed=0, progress=False)
SMALL_SASREC = {"epochs": 2, "embedding_size": 16, "max_len": 8, "inner_size": 32, "batch_size": 16}


class CharTrigramEncoder:
    """Test double of ``TextEncoder``: L2-normalised counts of hashed character trigrams."""

    dim = 64

    def __init__(self, name: str):
        self.name = name
        self.n_encode_calls = 0

    def encode(self, texts, *, batch_size=64, progress=False):
        self.n_encode_calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for j in range(len(padded) - 2):
                out[row, zlib.crc32(padded[j : j + 3].encode()) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.fixture(autouse=True)
def loaded_encoders(monkeypatch):
    """Every encoder the code under test loads (by name) is a CharTrigramEncoder, recorded here."""
    loaded = []

    def load(name, **kwargs):
        loaded.append(CharTrigramEncoder(str(name)))
        return loaded[-1]

    monkeypatch.setattr(_text_items, "load_text_encoder", load)
    return loaded


class TestTextKNNChecks(RecommenderChecks):
    component = TextKNN
    configs: ClassVar[list[dict[str, Any]]] = [{"encoder": "char-trigrams", "popularity_weight": 0.05}]


class TestTextSASRecChecks(RecommenderChecks):
    component = TextSASRec
    configs: ClassVar[list[dict[str, Any]]] = [{"encoder": "char-trigrams", **SMALL_SASREC}]


# -- item text embeddings --------------------------------------------------------------------------


def _catalog(titles, **columns) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(len(titles))], "title": titles, **columns})


def test_texts_use_fields_and_placeholders_and_reject_textless_catalogs():
    items = _catalog(["Heat", None, "Alien"], genre=["crime", "drama", None])
    assert render_item_texts(items) == ["Heat", "item 1", "Alien"]
    assert render_item_texts(items, ["genre"]) == ["Heat (genre: crime)", "item 1 (genre: drama)", "Alien"]
    assert render_item_texts(items, max_chars=3) == ["Heat"[:2] + "…", "it…", "Al…"]
    with pytest.raises(DataError, match=r"\['year'\] are not columns"):
        render_item_texts(items, ["year"])
    with pytest.raises(DataError, match="no 'title' column"):
        render_item_texts(items.drop(columns="title"))
    with pytest.raises(DataError, match="no item with a 'title'"):
        render_item_texts(_catalog([None, ""]))
    assert render_item_texts(_catalog([None, ""], genre=["a", "b"]), ["genre"]) == [
        "item 0 (genre: a)",
        "item 1 (genre: b)",
    ]


def test_embeddings_are_cached_by_encoder_and_text(loaded_encoders):
    items = _catalog(["Heat", "Alien", "Toy Story"], genre=["crime", "sf", "kids"])
    first = item_text_embeddings(items, "enc-a")
    assert first.shape == (3, CharTrigramEncoder.dim) and first.dtype == np.float32
    np.testing.assert_array_equal(item_text_embeddings(items, "enc-a"), first)
    assert len(loaded_encoders) == 1  # second call: no encoder loaded
    item_text_embeddings(items, "enc-b")  # another encoder, another key
    item_text_embeddings(items, "enc-a", fields=["genre"])  # other texts, another key
    item_text_embeddings(items.assign(title=["Heat", "Aliens", "Toy Story"]), "enc-a")
    item_text_embeddings(items, "enc-a", cache=False)
    assert len(loaded_encoders) == 5
    encoder = CharTrigramEncoder("given")  # a loaded encoder is cached by its name
    item_text_embeddings(items, encoder)
    item_text_embeddings(items, encoder)
    assert encoder.n_encode_calls == 1


def test_real_loader_with_a_tiny_bert(tiny_encoder_folder, monkeypatch):  # noqa: F811
    from trustrec.models.llm import load_text_encoder

    monkeypatch.setattr(_text_items, "load_text_encoder", load_text_encoder)
    items = _catalog(["the toy story", "a war film", "love in space"])
    emb = item_text_embeddings(items, tiny_encoder_folder)
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)

    def refuse(*args, **kwargs):
        raise AssertionError("the cached matrix should have been read")

    monkeypatch.setattr(_text_items, "load_text_encoder", refuse)
    np.testing.assert_array_equal(item_text_embeddings(items, tiny_encoder_folder), emb)


# -- TextKNN by hand ---------------------------------------------------------------------------------


def _dataset(titles, sequences) -> Dataset:
    """Users' chronological item sequences over a catalog with these titles."""
    rows = [(f"u{u}", f"i{i}", t) for u, seq in enumerate(sequences) for t, i in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frame(frame, name="hand", items=_catalog(titles))


def test_text_knn_scores_by_hand(monkeypatch):
    embeddings = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], np.float32)
    monkeypatch.setattr(_encoder_models, "item_text_embeddings", lambda *args, **kwargs: embeddings)
    train = _dataset(["a", "b", "c", "d"], [[0, 1, 0], [2]])  # counts: 2, 1, 1, 0
    q = QueryBatch.from_histories([[2, 0, 1], []])
    model = TextKNN(recent=2, decay=0.5).fit(train, FIT)
    profile = 0.5 * embeddings[0] + 1.0 * embeddings[1]  # item 2 is beyond `recent`
    expected = embeddings @ (profile / np.linalg.norm(profile))
    scores = model.score(q)
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [0.4472136, 0.8944272, 0, 0.98386991], rtol=1e-6)
    assert np.isnan(scores[1]).all()  # no history: cannot score
    assert model.recommend(q, 1).items[0, 0] == 3  # the unused item ranks first

    blended = TextKNN(recent=2, decay=0.5, popularity_weight=0.5).fit(train, FIT).score(q)
    popularity = np.log1p([2, 1, 1, 0]) / np.log1p(2)
    np.testing.assert_allclose(blended[0], expected + 0.5 * popularity, rtol=1e-6)


# -- cold start -------------------------------------------------------------------------------------

TITLES = [
    "Star Wars: A New Hope",
    "The Empire Strikes Back",
    "Toy Story",
    "Toy Story 2",
    "Heat",
    "Casino",
    "The Empire Strikes Back",
]  # item 6: cold twin of item 1
COLD = 6


@pytest.fixture(scope="module")
def cold_train():
    """Everyone who watches item 0 then watches item 1; item 6 (same title as 1) is never used."""
    pattern = [[0, 1], [2, 3], [4, 5]]
    sequences = [pattern[u % 3] + pattern[(u + 1) % 3] for u in range(30)]
    train = _dataset(TITLES, sequences)
    assert np.bincount(train.interactions.item, minlength=len(TITLES))[COLD] == 0
    return train


def test_text_knn_recommends_a_cold_item(cold_train):
    model = TextKNN().fit(cold_train, FIT)
    q = QueryBatch.from_histories([[0, 1]])
    scores = model.score(q)
    assert np.isfinite(scores).all()
    assert model.recommend(q, 1).items[0, 0] == COLD  # twin of the last item seen


def test_text_sasrec_scores_cold_items_from_text_alone(cold_train):
    import torch

    q = QueryBatch.from_histories([[2, 3, 0], [4, 5, 0]])
    text_only = TextSASRec(id_embedding=False, **{**SMALL_SASREC, "epochs": 30}).fit(cold_train, FIT)
    scores = text_only.score(q)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, COLD], scores[:, 1], rtol=1e-6)  # same text, same score
    top = text_only.recommend(q, 2)
    assert all({1, COLD} == set(top.row(i)) for i in range(len(q)))  # 0 -> 1 learned; the twin comes along

    with_ids = TextSASRec(**SMALL_SASREC).fit(cold_train, FIT)
    assert np.isfinite(with_ids.score(q)).all()
    item_emb = with_ids.net_.item_emb
    with torch.inference_mode():
        table = item_emb.weight
        np.testing.assert_allclose(
            table[COLD + 1].numpy(), item_emb.project(item_emb.text[COLD + 1]).numpy(), atol=1e-7
        )
        assert not torch.allclose(table[2], item_emb.project(item_emb.text[2]))  # warm: text + ID
    assert COLD in with_ids.recommend(q, len(TITLES)).row(0)


def test_text_sasrec_loads_without_the_encoder(cold_train, tmp_path, loaded_encoders):
    model = TextSASRec(**SMALL_SASREC).fit(cold_train, FIT)
    model.save(tmp_path / "m")
    n_loaded = len(loaded_encoders)
    loaded = Recommender.load(tmp_path / "m")
    q = QueryBatch.from_histories([[0], [2, 3]])
    np.testing.assert_allclose(loaded.score(q), model.score(q), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.warm_items_, model.warm_items_)
    assert len(loaded_encoders) == n_loaded


def test_plain_sasrec_keeps_its_id_embedding(cold_train):
    from torch import nn

    model = SASRec(**SMALL_SASREC).fit(cold_train, FIT)
    assert type(model.net_.item_emb) is nn.Embedding
    assert model.net_.item_emb.weight.shape == (len(TITLES) + 1, 16)
    assert {k for k in model.net_.state_dict() if k.startswith("item_emb")} == {"item_emb.weight"}
    assert not {"item_text_embeddings_", "warm_items_"} & set(vars(model))
    assert "text" not in model.capabilities and "cold_start" not in model.capabilities


def test_registered_by_name():
    assert isinstance(make_model("text_knn", recent=5), TextKNN)
    assert isinstance(make_model("sasrec_text", id_dropout=0.5), TextSASRec)


# -- real data ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_ml100k_beats_random_and_recommends_cold_items(ml100k, monkeypatch):
    """all-MiniLM-L6-v2 titles on ml-100k (leave-one-out, 100 mid-popular items stripped of their
    training interactions): both models rank well above chance, and the cold items reach users'
    top 10. Measured (seed 0): NDCG@10 text_knn 0.015, sasrec_text 0.062, chance 0.003; cold items
    fill 457 and 129 top-10 slots."""
    from trustrec.eval import evaluate_split
    from trustrec.models.llm import load_text_encoder

    monkeypatch.setattr(_text_items, "load_text_encoder", load_text_encoder)
    split = split_leave_one_out(ml100k)
    counts = np.bincount(split.train.item, minlength=ml100k.n_items)
    cold = np.argsort(-counts, kind="stable")[100:400:3]
    cold_split = dataclasses.replace(split, train=split.train.select(~np.isin(split.train.item, cold)))
    unseen = ml100k.n_items - cold_split.eval_set("test").queries.histories.lengths
    chance = np.mean(np.sum(1 / np.log2(np.arange(2, 12))) / unseen)  # one target, uniform ranking

    for name, params, times_chance in [("text_knn", {}, 3), ("sasrec_text", {"epochs": 2}, 10)]:
        model = make_model(name, **params).fit(cold_split, FitOptions(seed=0, progress=False))
        result = evaluate_split(model, cold_split, n_boot=0, keep_topk=True, progress=False)
        ndcg = result.mean("ndcg@10")
        assert ndcg > times_chance * chance, (name, ndcg, chance)
        cold_slots = np.isin(result.topk.items, cold).sum()
        assert cold_slots >= 10, (name, cold_slots)
