"""Coat by name and the random-exposure split; Yahoo! R3 / KuaiRec layouts from local copies."""

from pathlib import Path

import numpy as np
import pytest

from trustrec.data import (
    load_dataset,
    load_kuairec,
    load_path,
    load_random_exposure,
    load_yahoo_r3,
    make_split,
    split_random_exposure,
)
from trustrec.errors import ConfigError, DataError, DatasetNotFoundError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.realdata
def test_coat_by_name_verified_counts_and_ready_split(shared_data):
    coat = load_dataset("coat", data_dir=shared_data)
    assert (coat.n_users, coat.n_items, coat.n_interactions) == (290, 300, 6960)
    test = coat.extras["random_exposure_test"]
    assert len(test) == 4640 and np.all(np.bincount(test.user, minlength=290) == 16)
    assert coat.extras["propensities"].array.shape == (290, 300)
    assert {"gender", "age", "location", "fashioninterest"} <= set(coat.users.columns)
    assert coat.users["gender"].notna().all()
    split = make_split(coat, "random_exposure")  # positives = rating >= 4 by default
    assert split.method == "random_exposure" and split.params["positive_threshold"] == 4.0
    assert split.sizes()["train"] == 6960 and split.sizes()["test"] == 4640
    ev = split.eval_set("test")
    assert len(ev.targets.values) == int((test.rating >= 4).sum()) == 860
    assert any("860 positives (rating >= 4)" in n for n in split.notes)
    assert split_random_exposure(coat, positive_threshold=5).eval_set().targets.values.size == 219


def test_random_exposure_split_checks(tmp_path):
    from trustrec.data import Dataset

    ds = load_path(write_coat(tmp_path))
    split = split_random_exposure(ds, cold_test_items="keep")
    assert split.params["random_exposure"] is True and len(split.test) == 3
    with pytest.raises(DataError, match="never occur in train"):
        split_random_exposure(ds)
    with pytest.raises(ConfigError, match="cold_test_items"):
        split_random_exposure(ds, cold_test_items="maybe")
    with pytest.raises(ConfigError, match="positive_threshold must be a number"):
        split_random_exposure(ds, positive_threshold="high", cold_test_items="keep")
    bare = Dataset(ds.name, ds.interactions, ds.items, ds.users)
    with pytest.raises(DataError, match="no random-exposure test set"):
        split_random_exposure(bare)


def write_coat(tmp_path) -> Path:
    folder = tmp_path / "coat"
    write(folder / "train.ascii", "5 0 0 0\n0 1 0 0\n0 0 4 0\n")  # item 3 is never rated in train
    write(folder / "test.ascii", "0 2 0 0\n4 0 0 0\n0 0 0 1\n")
    return folder


def test_yahoo_r3_layout(tmp_path):
    folder = tmp_path / "yahoo-r3"
    write(folder / "ydata-ymusic-rating-study-v1_0-train.txt", "1\t1\t5\n1\t2\t1\n2\t2\t4\n2\t3\t3\n")
    write(folder / "ydata-ymusic-rating-study-v1_0-test.txt", "1\t3\t4\n2\t1\t2\n")
    ds = load_path(folder)  # detected
    assert ds.name == "yahoo-r3" and (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 4)
    test = ds.extras["random_exposure_test"]
    assert test.rating.tolist() == [4.0, 2.0]
    assert ds.item_ids[test.item].tolist() == ["3", "1"]
    split = split_random_exposure(ds)
    assert split.eval_set().targets.values.size == 1
    # by name from a local data folder; without one, a clear "not shipped" error
    assert load_dataset("yahoo-r3", data_dir=tmp_path).n_interactions == 4
    with pytest.raises(DatasetNotFoundError, match="not shipped"):
        load_dataset("yahoo-r3", data_dir=tmp_path / "nowhere")
    write(folder / "ydata-ymusic-rating-study-v1_0-test.txt", "1\t9\t4\n")
    with pytest.raises(DataError, match="users or items that the train log does not have"):
        load_yahoo_r3(folder)
    assert len(load_yahoo_r3(folder, unknown="drop").extras["random_exposure_test"]) == 0
    write(folder / "ydata-ymusic-rating-study-v1_0-test.txt", "1\t3\n")
    with pytest.raises(DataError, match="line 1: expected 3 tab-separated values"):
        load_yahoo_r3(folder)


def test_kuairec_layout(tmp_path):
    data = tmp_path / "KuaiRec" / "data"
    header = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
    write(data / "big_matrix.csv", header + "0,10,1,1,t,d,1.0,2.5\n0,11,1,1,t,d,2.0,0.3\n1,11,1,1,t,d,,1.2\n")
    write(data / "small_matrix.csv", header + "0,11,1,1,t,d,3.0,2.1\n1,10,1,1,t,d,4.0,0.5\n")
    ds = load_path(tmp_path / "KuaiRec")
    assert ds.name == "kuairec" and ds.n_interactions == 3
    test = ds.extras["random_exposure_test"]
    assert test.rating.tolist() == pytest.approx([2.1, 0.5])
    split = split_random_exposure(ds, positive_threshold=2)
    assert split.eval_set().targets.values.size == 1
    assert load_kuairec(data).n_interactions == 3


def test_generic_loader_and_unknown_ids(tmp_path):
    train = write(tmp_path / "log.csv", "user_id,item_id,rating\na,x,5\nb,y,2\n")
    test = write(tmp_path / "random.csv", "user_id,item_id,rating\na,y,4\nb,x,1\nc,x,5\n")
    with pytest.raises(DataError, match="1 rows of the random-exposure test set"):
        load_random_exposure(train, test)
    ds = load_random_exposure(train, test, unknown="drop")
    assert len(ds.extras["random_exposure_test"]) == 2 and any("dropped 1 rows" in n for n in ds.notes)
