import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, IndexedArray, Interactions, Ragged
from trustrec.errors import DataError


def test_from_frame_maps_ids_and_keeps_catalog_order(tiny):
    assert tiny.n_items == 8
    assert list(tiny.item_ids[:3]) == ["i0", "i1", "i2"]
    raw = tiny.items.loc[tiny.interactions.item, "item_id"].to_numpy()
    assert len(raw) == tiny.n_interactions
    assert tiny.item_index(["i3", "i0"]).tolist() == [3, 0]


def test_unknown_id_lookup_is_a_clear_error(tiny):
    with pytest.raises(DataError, match="unknown item id 'nope'"):
        tiny.item_index(["nope"])
    assert tiny.item_index(["nope"], missing="ignore").tolist() == [-1]


def test_dataset_is_immutable(tiny):
    with pytest.raises(ValueError):
        tiny.interactions.user[0] = 3
    with pytest.raises(AttributeError):
        tiny.name = "other"
    items = tiny.items
    items.loc[0, "title"] = "changed"
    assert tiny.items.loc[0, "title"] == "Item 0"


def test_inputs_are_copied():
    users = np.array([0, 1])
    inter = Interactions(users, np.array([0, 0]), np.array([1, 2]))
    users[0] = 1
    assert inter.user.tolist() == [0, 1]


def test_items_only_in_interactions_get_appended_with_missing_title():
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "new"], "timestamp": [1, 2]})
    items = pd.DataFrame({"item_id": ["x", "y"], "title": ["X", "Y"]})
    ds = Dataset.from_frame(frame, name="t", items=items)
    assert ds.item_ids.tolist() == ["x", "y", "new"]
    assert ds.items["title"].isna().tolist() == [False, False, True]
    assert ds.stats()["items_without_title"] == 1


@pytest.mark.parametrize("col", ["user_id", "item_id"])
def test_missing_ids_are_rejected_with_row(col):
    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    frame.loc[1, col] = None
    with pytest.raises(DataError, match=f"column '{col}' has 1 missing ids \\(first at data row 1\\)"):
        Dataset.from_frame(frame, name="t")


def test_non_numeric_timestamp_is_named():
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["12", "soon"]})
    with pytest.raises(DataError, match="'soon' at data row 1 is not a number"):
        Dataset.from_frame(frame, name="t")


def test_date_strings_become_epoch_seconds():
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": ["1970-01-02"]})
    assert Dataset.from_frame(frame, name="t").interactions.timestamp.tolist() == [86400]


def test_missing_timestamps_fall_back_to_order_with_note():
    frame = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"]})
    ds = Dataset.from_frame(frame, name="t")
    assert ds.interactions.timestamp.tolist() == [0, 1]
    assert not ds.stats()["has_timestamps"]


def test_nan_rating_rejected():
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2], "rating": [1.0, np.nan]})
    with pytest.raises(DataError, match="'rating' has 1 missing"):
        Dataset.from_frame(frame, name="t")


def test_duplicate_ids_in_item_table():
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [1]})
    items = pd.DataFrame({"item_id": ["x", "x"], "title": ["A", "B"]})
    with pytest.raises(DataError, match="repeats item_id 'x'"):
        Dataset.from_frame(frame, name="t", items=items)


def test_stats_hand_checked():
    frame = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "z", "x"], "timestamp": [1, 2, 3, 4]})
    s = Dataset.from_frame(frame, name="t").stats()
    assert (s["n_users"], s["n_items"], s["n_interactions"]) == (2, 3, 4)
    assert s["density"] == pytest.approx(4 / 6)
    assert s["history_length"]["q50"] == 2.0 and s["history_length"]["q100"] == 3.0


def test_fingerprint_changes_with_data(tiny):
    other = tiny.with_interactions(tiny.interactions.select(np.arange(5)))
    assert tiny.fingerprint() != other.fingerprint()
    assert tiny.fingerprint() == tiny.with_interactions(tiny.interactions).fingerprint()


def test_extras_are_converted_and_follow_compaction():
    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    test = pd.DataFrame({"user_id": ["a", "c"], "item_id": ["y", "z"], "timestamp": [5, 6]})
    prop = IndexedArray(np.arange(9.0).reshape(3, 3), ("user", "item"))
    ds = Dataset.from_frame(frame, name="t", extras={"test": test, "prop": prop})
    assert ds.extras["test"].item.tolist() == [1, 2]
    from trustrec.data import FilterStep

    keep_u, keep_i = np.array([True, False, True]), np.array([False, True, True])
    small = ds.compact(keep_u, keep_i, ds.interactions.select(np.array([2])), FilterStep("x", {}, 2))
    assert small.extras["test"].item.tolist() == [0, 1]
    assert small.extras["prop"].array.tolist() == [[1.0, 2.0], [7.0, 8.0]]


def test_ragged_helpers():
    r = Ragged.from_rows([[1, 2, 3], [], [4]])
    assert r.lengths.tolist() == [3, 0, 1]
    assert r.take(np.array([2, 0])).rows()[1].tolist() == [1, 2, 3]
    assert r.last(2).row(0).tolist() == [2, 3]
    assert r.to_padded(2).tolist() == [[2, 3], [0, 0], [0, 4]]
    assert r.to_dense_mask(5)[0].tolist() == [False, True, True, True, False]
    with pytest.raises(DataError):
        Ragged(np.array([0, 2]), np.array([1]))
