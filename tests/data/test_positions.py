"""The BIGRec / D3 protocol split (``global_positions``) and its per-position examples."""

import ast

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, compare_with_rows, load_dataset, make_split, position_eval_set
from trustrec.errors import ConfigError, DataError


def _log() -> Dataset:
    # u0: a(1) b(2) c(3) d(9) e(10); u1: b(4) c(5) f(11); u2: a(6) (a single interaction)
    frame = pd.DataFrame(
        {
            "user_id": ["u0"] * 5 + ["u1"] * 3 + ["u2"],
            "item_id": ["a", "b", "c", "d", "e", "b", "c", "f", "a"],
            "timestamp": [1, 2, 3, 9, 10, 4, 5, 11, 6],
        }
    )
    return Dataset.from_frame(frame, name="tiny")


def _ids(ds, items):
    return [str(ds.item_ids[i]) for i in items]


def test_examples_are_cut_by_target_time_as_the_protocol_does():
    ds = _log()
    split = make_split(ds, "global_positions", max_history=2)
    # Examples (targets after a user's first interaction) by time: b2 c3 c5 d9 e10 f11 -> n = 6,
    # int(6 * 0.8) = 4 train, int(6 * 0.9) - 4 = 1 valid, 1 test.
    assert split.params["train_examples"] == 4
    assert (split.params["valid_examples"], split.params["test_examples"]) == (1, 1)
    assert _ids(ds, split.valid.item) == ["e"] and list(split.valid.timestamp) == [10]
    assert _ids(ds, split.test.item) == ["f"]
    assert sorted(split.train.timestamp.tolist()) == [1, 2, 3, 4, 5, 6, 9]
    test = position_eval_set(split, "test")
    assert _ids(ds, test.queries.histories.row(0)) == ["b", "c"]  # the previous <= 2
    valid = position_eval_set(split, "valid")
    assert _ids(ds, valid.queries.histories.row(0)) == ["c", "d"]
    assert len(position_eval_set(split, "test", max_history=10).queries.histories.row(0)) == 2


def test_test_histories_include_earlier_held_out_events():
    frame = pd.DataFrame({"user_id": ["u"] * 10, "item_id": list("abcdefghij"), "timestamp": range(10)})
    split = make_split(Dataset.from_frame(frame, name="one"), "global_positions", valid_frac=0.2, test_frac=0.2)
    test = position_eval_set(split, "test")
    # 9 examples: 5 train, int(9 * 0.8) - 5 = 2 valid, 2 test; the last test example sees the first.
    assert len(test) == 2
    last = [str(split.dataset.item_ids[i]) for i in test.queries.histories.row(1)]
    assert last == list("abcdefghi")


def test_bad_parameters_and_data_are_refused():
    ds = _log()
    with pytest.raises(ConfigError, match="max_history"):
        make_split(ds, "global_positions", max_history=0)
    with pytest.raises(ConfigError, match="valid_frac"):
        make_split(ds, "global_positions", valid_frac=0.6, test_frac=0.5)
    with pytest.raises(DataError, match="given='yes'"):
        make_split(ds, "global_positions", given="yes")
    clockless = Dataset.from_frame(
        pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "timestamp": [0, 0, 0]}), name="c"
    )
    with pytest.raises(DataError, match="no clock"):
        make_split(clockless, "global_positions")


@pytest.mark.realdata
def test_d3_folder_rows_are_reproduced_exactly(shared_data):
    ds = load_dataset("amazon-industrial", data_dir=shared_data)
    split = make_split(ds, "global_positions")
    assert split.params["given"] is True
    assert "rebuilt from the other" in split.notes[0]
    folder = shared_data / "amazon_Industrial_and_Scientific"
    for part in ("valid", "test"):
        rows = pd.read_csv(next((folder / part).glob("*.csv")), dtype=str)
        rows["history_item_id"] = rows["history_item_id"].map(ast.literal_eval)
        built = position_eval_set(split, part)
        assert compare_with_rows(built, rows, ds) == {
            "rows": len(rows),
            "equal": len(rows),
            "same_items_other_order": 0,
            "different": 0,
        }
        # a row changed by hand is caught
        broken = rows.copy()
        broken.at[0, "history_item_id"] = [*reversed(broken.at[0, "history_item_id"]), "0"]
        assert compare_with_rows(built, broken, ds)["different"] == 1
    # the invariant: no evaluation event is trained on
    keys = set(zip(split.train.user.tolist(), split.train.item.tolist(), split.train.timestamp.tolist()))
    for part in (split.valid, split.test):
        assert not keys & set(zip(part.user.tolist(), part.item.tolist(), part.timestamp.tolist()))


@pytest.mark.realdata
def test_most_popular_by_exact_title_matches_an_independent_computation(shared_data):
    from trustrec.eval import evaluate, title_classes
    from trustrec.models import FitOptions, make_model

    ds = load_dataset("amazon-industrial", data_dir=shared_data)
    split = make_split(ds, "global_positions")
    test = position_eval_set(split, "test")
    titles = ds.items["title"].tolist()
    classes = title_classes(titles)
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    ours = evaluate(
        model, test, metrics=["ndcg@10", "hr@10"], exclude_seen=False, item_classes=classes, n_boot=0, progress=False
    )
    # Independently: popularity = training interactions per item, ties to the lower index, the list
    # read as titles (a title already listed is skipped), a hit when the target's title is listed.
    counts = np.bincount(split.train.item, minlength=ds.n_items)
    order = np.lexsort((np.arange(ds.n_items), -counts))
    listed, seen = [], set()
    for item in order:
        title = str(titles[item]).strip()
        if title not in seen:
            seen.add(title)
            listed.append(title)
        if len(listed) == 10:
            break
    rank = {t: r for r, t in enumerate(listed)}
    target_titles = [str(titles[i]).strip() for i in test.targets.values]
    ndcg = [1 / np.log2(rank[t] + 2) if t in rank else 0.0 for t in target_titles]
    assert ours.mean("ndcg@10") == pytest.approx(np.mean(ndcg), abs=1e-12)
    assert ours.mean("hr@10") == pytest.approx(np.mean([t in rank for t in target_titles]), abs=1e-12)
    assert ours.mean("ndcg@10") > 0


def test_a_log_without_timestamps_is_refused():
    frame = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "b"], "item_id": list("xyzxyz")})
    ds = Dataset.from_frame(frame, name="no-clock")
    with pytest.raises(DataError, match=r"no timestamps .* by row order"):
        make_split(ds, "global_positions")
