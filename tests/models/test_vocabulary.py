"""A checkpoint carries the raw item / user ids of its training data, so a loaded model answers raw
ids without the dataset or the run config; checkpoints saved before still load and say clearly
that they cannot."""

import json
import shutil

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import DataError
from trustrec.mitigate._rerank import ExposureReranker
from trustrec.models import FitOptions, RawTopK, Recommender, make_model
from trustrec.testing import toy_dataset


@pytest.fixture(scope="module")
def ml100k_saved(ml100k, tmp_path_factory):
    split = split_leave_one_out(ml100k)
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    folder = tmp_path_factory.mktemp("vocab") / "item_knn"
    model.save(folder)
    return split, model, folder


def test_a_checkpoint_answers_raw_ids_after_load(ml100k_saved):
    split, model, folder = ml100k_saved
    ds = split.dataset
    queries = split.eval_set("test").queries[:25]
    loaded = Recommender.load(folder)  # a fresh object: nothing but the folder
    assert loaded.has_vocabulary()
    histories = [[str(ds.item_ids[i]) for i in queries.histories.row(r)] for r in range(len(queries))]
    users = [str(ds.user_ids[u]) for u in queries.users]
    raw = loaded.recommend_raw(histories, 10, users=users)
    expected = model.recommend(queries, 10)
    assert isinstance(raw, RawTopK) and len(raw) == len(queries)
    for r in range(len(queries)):
        assert raw.row(r) == [str(ds.item_ids[i]) for i in expected.row(r)]
    np.testing.assert_array_equal(raw.scores, expected.scores)
    # the vocabulary is that of the training data, by index
    assert loaded.item_ids_ == [str(i) for i in ds.item_ids] and loaded.user_ids_ == [str(u) for u in ds.user_ids]


def test_raw_candidates_and_anonymous_users(ml100k_saved):
    split, model, _ = ml100k_saved
    ds = split.dataset
    items = [str(i) for i in ds.item_ids[:6]]
    raw = model.recommend_raw([items[:2], []], 3, users=[None, str(ds.user_ids[0])], candidates=[items[2:], items])
    assert set(raw.row(0)) <= set(items[2:]) and len(raw.row(0)) == 3
    assert set(raw.row(1)) <= set(items)
    q = model.queries_from_raw([items[:2]])
    assert q.users.tolist() == [-1] and q.histories.row(0).tolist() == [0, 1]


def test_unknown_or_malformed_ids_are_clear_errors(ml100k_saved):
    _, model, _ = ml100k_saved
    known = model.item_ids_[0]
    with pytest.raises(DataError, match=r"2 item ids are unknown.*'no-such-item'.*'other'"):
        model.recommend_raw([[known, "no-such-item"], ["other"]], 5)
    with pytest.raises(DataError, match=r"user ids are unknown.*'ghost'"):
        model.recommend_raw([[known]], 5, users=["ghost"])
    with pytest.raises(DataError, match="one list of item ids per query"):
        model.recommend_raw([known, known], 5)  # a single history not wrapped in a batch
    with pytest.raises(DataError, match="one user id"):
        model.recommend_raw([[known]], 5, users=[None, None])


def test_a_checkpoint_saved_before_vocabularies_loads_but_cannot_answer_raw_ids(tmp_path):
    ds = toy_dataset()
    model = make_model("bpr_mf", epochs=1, embedding_size=4).fit(ds, FitOptions(progress=False))
    folder = model.save(tmp_path / "new")
    old = shutil.copytree(folder, tmp_path / "old")
    fitted = json.loads((old / "fitted.json").read_text())
    del fitted["item_ids_"], fitted["user_ids_"]
    (old / "fitted.json").write_text(json.dumps(fitted))
    config = json.loads((old / "config.json").read_text())
    del config["files_sha256"]  # as written before checksums (and vocabularies) were recorded
    (old / "config.json").write_text(json.dumps(config))
    loaded = Recommender.load(old)
    queries = split_leave_one_out(ds).eval_set("test").queries
    np.testing.assert_array_equal(loaded.recommend(queries, 5).items, model.recommend(queries, 5).items)
    assert not loaded.has_vocabulary()
    with pytest.raises(DataError, match="no id vocabulary"):
        loaded.recommend_raw([["1"]], 5)
    # a raw-id answer of the new checkpoint is the index answer mapped back
    new = Recommender.load(folder)
    raw = new.recommend_raw(
        [[str(ds.item_ids[i]) for i in queries.histories.row(0)]], 5, users=[str(ds.user_ids[queries.users[0]])]
    )
    assert raw.row(0) == [str(ds.item_ids[i]) for i in model.recommend(queries[:1], 5).row(0)]


@pytest.mark.parametrize("edit", [lambda ids: ids[:-1], lambda ids: [ids[0]] * len(ids), lambda ids: "x"])
def test_a_damaged_vocabulary_is_refused(tmp_path, edit):
    folder = make_model("most_popular").fit(toy_dataset(), FitOptions(progress=False)).save(tmp_path / "m")
    fitted = json.loads((folder / "fitted.json").read_text())
    fitted["item_ids_"] = edit(fitted["item_ids_"])
    (folder / "fitted.json").write_text(json.dumps(fitted))
    config = json.loads((folder / "config.json").read_text())
    del config["files_sha256"]  # structure alone must catch it
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="item_ids_"):
        Recommender.load(folder)


def test_wrappers_carry_the_vocabulary(tmp_path):
    ds = toy_dataset()
    base = make_model("item_knn").fit(ds, FitOptions(progress=False))
    wrapped = ExposureReranker.from_fitted(base, ds, strength=0.5)
    fitted = ExposureReranker(base={"name": "item_knn"}, strength=0.5).fit(ds, FitOptions(progress=False))
    history = [[str(ds.item_ids[i]) for i in (0, 1, 2)]]
    for model in (wrapped, fitted):
        assert model.item_ids_ == base.item_ids_ and model.user_ids_ == base.user_ids_
        loaded = Recommender.load(model.save(tmp_path / f"w{id(model)}"))
        assert loaded.recommend_raw(history, 4).row(0) == model.recommend_raw(history, 4).row(0)
