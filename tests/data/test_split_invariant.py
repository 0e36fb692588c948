"""A split never trains on its own evaluation interactions: train and the valid/test events are
disjoint as (user, item, time) events for every split method, and a given test set that is also
in the log (the BIGRec/D3 layout) is removed from train with the count reported."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustrec.data import Dataset, Interactions, load_dataset, make_split
from trustrec.errors import DataError


def _events(inter: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(inter.user.tolist(), inter.item.tolist(), inter.timestamp.tolist()))


def _random_log(seed: int, n_users: int, n_items: int, n_rows: int, duplicate_share: float) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.repeat(np.arange(n_users), 3), rng.integers(0, n_users, n_rows)])
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in rng.integers(0, n_items, len(users))],
            "timestamp": rng.integers(0, 50, len(users)),
            "rating": rng.integers(1, 6, len(users)).astype(float),
        }
    )
    twins = frame.sample(frac=duplicate_share, random_state=seed)  # exact duplicate events
    return Dataset.from_frame(pd.concat([frame, twins], ignore_index=True), name=f"random-{seed}")


def _given_test(ds: Dataset, seed: int) -> Interactions:
    rng = np.random.default_rng(seed + 1)
    inter = ds.interactions
    return inter.select(np.sort(rng.choice(len(inter), size=max(1, len(inter) // 5), replace=False)))


SPLITS = {
    "leave_one_out": lambda ds, seed: make_split(ds, "leave_one_out", short_users="train"),
    "temporal": lambda ds, seed: make_split(ds, "temporal"),
    "random": lambda ds, seed: make_split(ds, "random", seed=seed),
    "given_test": lambda ds, seed: make_split(ds, "given_test", test=_given_test(ds, seed), valid_frac=0.2, seed=seed),
    "global_positions": lambda ds, seed: make_split(ds, "global_positions"),
    "random_exposure": lambda ds, seed: make_split(
        ds, "random_exposure", test=_given_test(ds, seed), positive_threshold=4.0, cold_test_items="keep", seed=seed
    ),
}


@pytest.mark.parametrize("method", list(SPLITS))
@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_users=st.integers(3, 25),
    n_items=st.integers(2, 30),
    n_rows=st.integers(0, 300),
    duplicate_share=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_train_and_evaluation_events_are_disjoint(method, seed, n_users, n_items, n_rows, duplicate_share):
    ds = _random_log(seed, n_users, n_items, n_rows, duplicate_share)
    split = SPLITS[method](ds, seed)
    train = _events(split.train)
    assert not train & _events(split.valid), method
    assert not train & _events(split.test), method
    removed = split.params.get("evaluation_events_removed_from_train", 0)
    if method in ("given_test", "random_exposure"):
        assert removed > 0  # the given test set came from the log: its events had to leave train
    if removed:
        assert any("removed from train" in n for n in split.notes)


def test_a_clockless_log_keeps_a_separately_collected_test_set():
    """Coat: every timestamp is 0, so events cannot be told apart by time; the random-exposure test
    set is a separate collection and its (user, item) overlap with the log is reported, not removed."""
    ds = Dataset.from_frame(
        pd.DataFrame(
            {
                "user_id": ["a", "a", "b", "b"],
                "item_id": ["x", "y", "x", "z"],
                "timestamp": [0, 0, 0, 0],
                "rating": [5.0, 3, 4, 2],
            }
        ),
        name="clockless",
    )
    test = Interactions(np.array([0, 1]), np.array([0, 2]), np.array([0, 0]), np.array([4.0, 5.0]))
    split = make_split(ds, "given_test", test=test)
    assert len(split.train) == 4 and split.params["train_test_overlap"] == 2
    assert split.params["evaluation_events_removed_from_train"] == 0


@pytest.mark.realdata
def test_d3_given_test_removes_test_events_and_most_popular_scores(shared_data):
    from trustrec.eval import evaluate_split
    from trustrec.models import FitOptions, make_model

    ds = load_dataset("amazon-industrial", data_dir=shared_data)
    split = make_split(ds, "given_test", test="test")
    removed = split.params["evaluation_events_removed_from_train"]
    assert removed > 0 and len(split.train) == ds.n_interactions - removed
    assert any(f"{removed} events are also in the interaction log" in n for n in split.notes)
    assert not _events(split.train) & _events(split.test)

    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    result = evaluate_split(model, split, metrics=["ndcg@10"], n_boot=0, progress=False)
    ours = result.mean("ndcg@10")
    assert ours > 0.005

    # Independent computation: popularity = training interactions per item, ties to the lower index,
    # the user's train + valid items masked, NDCG@10 over the user's distinct test items.
    counts = np.bincount(split.train.item, minlength=ds.n_items)
    order = np.lexsort((np.arange(ds.n_items), -counts))
    seen = pd.concat([pd.DataFrame({"u": p.user, "i": p.item}) for p in (split.train, split.valid)])
    seen_by_user = seen.groupby("u")["i"].apply(set).to_dict()
    targets = pd.DataFrame({"u": split.test.user, "i": split.test.item}).groupby("u")["i"].apply(set)
    values = []
    for user, wanted in targets.items():
        mask = seen_by_user.get(user, set())
        top = [i for i in order[: 10 + len(mask)] if i not in mask][:10]
        dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(top) if i in wanted)
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(wanted), 10)))
        values.append(dcg / idcg)
    assert ours == pytest.approx(np.mean(values), abs=1e-12)


def test_a_run_where_no_user_can_be_hit_is_an_error_and_a_partial_one_warns(tmp_path):
    from trustrec.runs import run_experiment

    frame = pd.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 4,
            "item_id": ["x", "y", "z", "x", "x", "y", "z", "w"],
            "timestamp": [1, 2, 3, 4, 1, 2, 3, 4],
        }
    )
    folder = tmp_path / "log"
    folder.mkdir()
    frame.to_csv(folder / "log.csv", index=False)
    config = {
        "name": "masked",
        "dataset": {"name": str(folder / "log.csv")},
        "split": {"method": "leave_one_out"},
        "model": {"name": "most_popular"},
        "eval": {"metrics": ["ndcg@2"], "n_boot": 10},
    }
    messages = []
    with pytest.warns(UserWarning, match="1 of 2 evaluated users"):
        run = run_experiment(config, tmp_path / "runs", progress=False, log=messages.append)
    assert any(m.startswith("WARNING: 1 of 2") for m in messages)
    assert run.metrics["warnings"] and run.metrics["counts"]["n_users_targets_all_seen"] == 1
    from trustrec.report import write_report

    assert "1 of 2 evaluated users" in write_report(run.path).read_text()

    only_repeats = frame.assign(item_id=["x", "y", "z", "x", "x", "y", "z", "y"])
    only_repeats.to_csv(folder / "log.csv", index=False)
    with pytest.raises(DataError, match="no model can hit any"):
        run_experiment(dict(config, name="none"), tmp_path / "runs", progress=False, log=lambda *_: None)
