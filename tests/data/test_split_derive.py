"""Splits derived from a split (``with_train``, ``with_added_train``, ``without_users``): the parts
they leave alone are unchanged, the new dataset is consistent, and a derived split still never
trains on what it evaluates."""

import numpy as np
import pytest

from trustrec.data import Interactions, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.testing import toy_dataset

from ..conftest import make_dataset


@pytest.fixture(scope="module", params=["implicit", "rated"])
def split(request):
    ds = toy_dataset() if request.param == "implicit" else make_dataset(n_users=12, n_items=10, n_inter=90)
    split = split_leave_one_out(ds, short_users="train")
    assert (split.train.rating is not None) == (request.param == "rated")
    return split


def _same(a: Interactions, b: Interactions) -> bool:
    return (
        np.array_equal(a.user, b.user)
        and np.array_equal(a.item, b.item)
        and np.array_equal(a.timestamp, b.timestamp)
        and ((a.rating is None and b.rating is None) or np.array_equal(a.rating, b.rating))
    )


def _events(inter: Interactions) -> set:
    return set(zip(inter.user.tolist(), inter.item.tolist(), inter.timestamp.tolist()))


def test_with_train_replaces_only_the_training_part(split):
    keep = split.train.user % 2 == 0
    derived = split.with_train(split.train.select(keep), params={"why": "test"}, note="even users only")
    assert _same(derived.train, split.train.select(keep))
    assert _same(derived.valid, split.valid) and _same(derived.test, split.test)
    assert derived.dataset is split.dataset
    assert derived.params["why"] == "test" and dict(split.params).items() <= dict(derived.params).items()
    assert derived.notes == (*split.notes, "even users only")
    assert "why" not in split.params  # the original is untouched


def test_with_train_keeps_the_invariant(split):
    leaked = Interactions.concat([split.train, split.test])
    derived = split.with_train(leaked)
    assert _same(derived.train, split.train)  # the test events are removed again, and counted
    assert derived.params["evaluation_events_removed_from_train"] == len(split.test)
    assert not _events(derived.train) & _events(derived.test)


def test_with_train_refuses_indices_outside_the_dataset(split):
    ds = split.dataset
    bad = Interactions([ds.n_users], [0], [0], None if split.train.rating is None else [1.0])
    with pytest.raises(DataError, match="new_user_ids"):
        split.with_train(bad)


def test_with_added_train_without_new_users_keeps_the_dataset(split):
    extra = split.train.select(np.arange(3))
    added = Interactions(extra.user, extra.item, extra.timestamp + 10**6, extra.rating)
    derived = split.with_added_train(added)
    assert derived.dataset is split.dataset
    assert _same(derived.train, Interactions.concat([split.train, added]))
    assert _same(derived.test, split.test)


def test_with_added_train_adds_new_users(split):
    ds = split.dataset
    n = 4
    rating = None if split.train.rating is None else np.full(n, 5.0)
    new = Interactions(ds.n_users + np.array([0, 0, 1, 1]), [0, 1, 2, 3], [1, 2, 3, 4], rating)
    derived = split.with_added_train(
        new, new_user_ids=["__x_0", "__x_1"], params={"n_x": 2}, dataset_note="2 test users"
    )
    out = derived.dataset
    assert out.n_users == ds.n_users + 2 and list(out.user_ids[-2:]) == ["__x_0", "__x_1"]
    assert out.n_items == ds.n_items and out.notes == (*ds.notes, "2 test users")
    assert _same(out.interactions, Interactions.concat([ds.interactions, new]))
    assert _same(derived.train, Interactions.concat([split.train, new]))
    assert _same(derived.valid, split.valid) and _same(derived.test, split.test)
    assert derived.params["n_x"] == 2 and derived.notes == split.notes
    assert derived.train_dataset().n_users == ds.n_users + 2


def test_with_added_train_refuses_bad_input(split):
    ds = split.dataset
    rating = None if split.train.rating is None else [5.0]
    beyond = Interactions([ds.n_users + 1], [0], [0], rating)
    with pytest.raises(DataError, match="outside"):
        split.with_added_train(beyond, new_user_ids=["__only_one"])
    with pytest.raises(DataError, match="already users"):
        split.with_added_train(Interactions([ds.n_users], [0], [0], rating), new_user_ids=[ds.user_ids[0]])
    with pytest.raises(DataError, match="repeat"):
        split.with_added_train(Interactions([ds.n_users], [0], [0], rating), new_user_ids=["a", "a"])
    with pytest.raises(DataError, match="catalog"):
        split.with_added_train(Interactions([0], [ds.n_items], [0], rating))
    if split.train.rating is not None:
        with pytest.raises(DataError, match="ratings"):
            split.with_added_train(Interactions([0], [0], [10**6]))


def test_without_users(split):
    users = np.unique(split.test.user)[:3]
    everywhere = split.without_users(users, note="dropped")
    for part in ("train", "valid", "test"):
        assert not np.isin(getattr(everywhere, part).user, users).any()
    assert len(everywhere.test) == len(split.test) - int(np.isin(split.test.user, users).sum())
    assert everywhere.notes[-1] == "dropped"
    train_only = split.without_users(users, parts=("train",), params={"n_users_dropped": 3})
    assert not np.isin(train_only.train.user, users).any()
    assert _same(train_only.valid, split.valid) and _same(train_only.test, split.test)
    assert train_only.params["n_users_dropped"] == 3
    assert train_only.dataset.n_users == split.dataset.n_users  # indices are kept
    with pytest.raises(ConfigError, match="parts"):
        split.without_users(users, parts=("training",))
