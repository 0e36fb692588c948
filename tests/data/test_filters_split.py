import numpy as np
import pandas as pd
import pytest

from trustrec.data import (
    Dataset,
    Query,
    QueryBatch,
    drop_duplicates,
    k_core,
    make_split,
    sample_users,
    split_given_test,
    split_leave_one_out,
    split_random,
    split_temporal,
    to_implicit,
)
from trustrec.errors import ConfigError, DataError

from ..conftest import make_dataset


def frame_ds(rows, **kw):
    f = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    return Dataset.from_frame(f, name="t", **kw)


def test_to_implicit_and_dedupe_report_removed():
    ds = frame_ds([("a", "x", 1, 5), ("a", "x", 2, 2), ("a", "y", 3, 4), ("b", "y", 1, 1)])
    imp = to_implicit(ds, 4)
    assert imp.n_interactions == 2 and imp.provenance[-1].removed_interactions == 2
    assert imp.n_items == ds.n_items  # the catalog stays
    dd = drop_duplicates(ds, keep="last")
    assert dd.n_interactions == 3
    pair = dd.interactions.select(dd.interactions.item == 0)
    assert pair.timestamp[pair.user == 0].tolist() == [2]
    assert drop_duplicates(ds, keep="first").interactions.timestamp.tolist() == [1, 3, 1]


def test_sample_users_keeps_whole_histories_and_the_catalog():
    rows = [(f"u{u}", f"i{(u * 3 + j) % 7}", j, 5) for u in range(10) for j in range(u % 3 + 1)]
    ds = frame_ds(rows)
    sub = sample_users(ds, 4, seed=1)
    assert sub.n_users == 4 and sub.n_items == ds.n_items
    kept = set(sub.user_ids)
    full = ds.interactions.to_frame().assign(user_id=lambda f: ds.user_ids[f.user])
    assert sub.n_interactions == int(full.user_id.isin(kept).sum())  # every interaction of a kept user
    assert sub.provenance[-1].removed_users == 6
    assert sub.provenance[-1].removed_interactions == ds.n_interactions - sub.n_interactions
    assert set(sample_users(ds, 4, seed=1).user_ids) == kept  # seeded
    assert set(sample_users(ds, 4, seed=2).user_ids) != kept
    with pytest.raises(ConfigError, match="not below"):
        sample_users(ds, 10)
    with pytest.raises(ConfigError, match=">= 1"):
        sample_users(ds, 0)


def test_k_core_reaches_fixed_point():
    ds = make_dataset(n_users=40, n_items=30, n_inter=400, seed=3)
    core = k_core(ds, 5, 6)
    u = np.bincount(core.interactions.user, minlength=core.n_users)
    i = np.bincount(core.interactions.item, minlength=core.n_items)
    assert u.min() >= 5 and i.min() >= 6
    again = k_core(core, 5, 6)
    assert again.n_interactions == core.n_interactions  # fixed point
    step = core.provenance[-1]
    assert step.removed_interactions == ds.n_interactions - core.n_interactions
    assert step.removed_users == ds.n_users - core.n_users
    # raw ids survive renumbering
    kept = set(zip(core.user_ids[core.interactions.user], core.item_ids[core.interactions.item]))
    orig = set(zip(ds.user_ids[ds.interactions.user], ds.item_ids[ds.interactions.item]))
    assert kept <= orig


def test_k_core_cascades():
    # removing item z (1 interaction) leaves user c with 1 interaction, which then goes too
    rows = [("a", "x", 1, 1), ("a", "y", 2, 1), ("b", "x", 1, 1), ("b", "y", 2, 1), ("c", "x", 1, 1), ("c", "z", 2, 1)]
    core = k_core(frame_ds(rows), 2, 2)
    assert sorted(core.user_ids) == ["a", "b"] and core.provenance[-1].iterations >= 2


def test_k_core_removing_everything_is_an_error():
    with pytest.raises(DataError, match="removed every interaction"):
        k_core(make_dataset(), 100)


def test_loo_no_leakage_and_sizes():
    ds = make_dataset(n_users=20, n_items=15, n_inter=200, seed=1)
    ds = k_core(ds, 3, 1)
    sp = split_leave_one_out(ds)
    assert len(sp.test) == len(sp.valid) == ds.n_users
    assert len(sp.train) + 2 * ds.n_users == ds.n_interactions
    # the test interaction is each user's latest; nothing in train is later
    for u in range(ds.n_users):
        t_test = sp.test.timestamp[sp.test.user == u][0]
        t_valid = sp.valid.timestamp[sp.valid.user == u][0]
        assert sp.train.timestamp[sp.train.user == u].max() <= t_valid <= t_test
    es = sp.eval_set("test")
    assert es.queries.histories.lengths.sum() == len(sp.train) + len(sp.valid)
    es_v = sp.eval_set("valid")
    assert es_v.queries.histories.lengths.sum() == len(sp.train)


def test_loo_tie_break_is_file_order():
    rows = [("a", "x", 5, 1), ("a", "y", 5, 1), ("a", "z", 5, 1)]
    sp = split_leave_one_out(frame_ds(rows))
    assert sp.test.item.tolist() == [2] and sp.valid.item.tolist() == [1]


def test_loo_user_with_one_interaction():
    rows = [("a", "x", 1, 1), ("a", "y", 2, 1), ("a", "z", 3, 1), ("b", "x", 1, 1)]
    ds = frame_ds(rows)
    with pytest.raises(DataError, match="user 'b' has 1"):
        split_leave_one_out(ds)
    sp = split_leave_one_out(ds, short_users="train")
    assert len(sp.train) == 2 and set(sp.test.user.tolist()) == {0}
    assert len(split_leave_one_out(ds, short_users="drop").train) == 1


def test_temporal_split_respects_time_and_ties():
    ds = make_dataset(n_users=30, n_items=20, n_inter=500, seed=2)
    sp = split_temporal(ds, valid_frac=0.1, test_frac=0.2)
    assert sp.train.timestamp.max() < sp.valid.timestamp.min() <= sp.valid.timestamp.max() < sp.test.timestamp.min()
    assert len(sp.train) + len(sp.valid) + len(sp.test) == ds.n_interactions
    with pytest.raises(ConfigError, match="valid_frac"):
        split_temporal(ds, valid_frac=0.5, test_frac=0.6)


def test_random_split_deterministic_and_disjoint():
    ds = make_dataset(n_users=30, n_items=20, n_inter=500, seed=2)
    a, b = split_random(ds, seed=4), split_random(ds, seed=4)
    c = split_random(ds, seed=5)
    assert np.array_equal(a.test.item, b.test.item) and np.array_equal(a.test.user, b.test.user)
    assert not (np.array_equal(a.test.item, c.test.item) and np.array_equal(a.test.timestamp, c.test.timestamp))
    total = len(a.train) + len(a.valid) + len(a.test)
    assert total == ds.n_interactions
    assert set(np.unique(a.train.user)) == set(np.unique(ds.interactions.user))  # every user trains


def test_given_test_split_uses_extras_and_threshold():
    f = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "timestamp": 0, "rating": [5, 4, 1]})
    t = pd.DataFrame({"user_id": ["a", "b", "b"], "item_id": ["z", "y", "z"], "timestamp": 0, "rating": [5, 2, 4]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"]})
    ds = Dataset.from_frame(f, name="t", items=items, extras={"random_exposure_test": t})
    sp = split_given_test(ds, positive_threshold=4)
    assert len(sp.train) == 3 and len(sp.test) == 3
    es = sp.eval_set("test")
    assert es.targets.values.tolist() == [2, 2]  # only ratings >= 4 are targets
    with pytest.raises(DataError, match="no interaction set 'nope'"):
        split_given_test(ds, test="nope")


def test_make_split_validates_names():
    with pytest.raises(ConfigError, match="unknown split method 'loo'"):
        make_split(make_dataset(), "loo")
    with pytest.raises(ConfigError, match="split 'random'"):
        make_split(make_dataset(), "random", bogus=1)


def test_query_batch_round_trip_and_restrict():
    qs = [Query(0, [1, 2], {"gender": "F"}, "likes jazz"), Query(-1, [], {}, None, candidates=[3, 99])]
    b = QueryBatch.from_queries(qs)
    assert len(b) == 2 and b.query(0).attributes["gender"] == "F" and b.texts[0] == "likes jazz"
    assert b[1:].query(0).candidates.tolist() == [3, 99]
    clean, counts = b.restrict(n_users=5, n_items=10)
    assert counts["unknown_candidate_items"] == 1 and clean.candidates.row(1).tolist() == [3]
    assert b.seen_mask(4)[0].tolist() == [False, True, True, False]


def test_real_ml100k_loo(ml100k):
    sp = split_leave_one_out(ml100k)
    assert sp.sizes()["test"] == 943 and sp.sizes()["train"] == 98114

    def key(x):
        return set(zip(x.user.tolist(), x.item.tolist(), x.timestamp.tolist()))

    assert not key(sp.test) & key(sp.train)
