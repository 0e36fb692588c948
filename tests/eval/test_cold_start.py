"""Cold-start evaluation: targets restricted to cold items (few or no training interactions) in the
evaluator, and the ``cold_start`` audit comparing a model with reference models on cold items."""

import numpy as np
import pandas as pd
import pytest

from trustrec.audit._fairness import ColdStartAudit
from trustrec.data import Dataset, Interactions, split_given_test
from trustrec.errors import ConfigError
from trustrec.eval import cold_item_mask, evaluate_split, restrict_targets
from trustrec.models import FitOptions
from trustrec.testing._doubles import PrecomputedScores


@pytest.fixture(scope="module")
def split():
    """Training counts per item: i0 x3, i1 x1, i2 x0, i3 x2, i4 x4 (users u0-u4; i5 never appears).
    Test targets: u0 -> i2 (cold at N=0), u1 -> i1 (cold at N=1), u2 -> i4 (warm), u3 -> i2 and i4."""
    train = [
        ("u0", "i0"),
        ("u1", "i0"),
        ("u2", "i0"),
        ("u3", "i1"),
        ("u0", "i3"),
        ("u1", "i3"),
        ("u0", "i4"),
        ("u1", "i4"),
        ("u2", "i4"),
        ("u4", "i4"),
    ]
    frame = pd.DataFrame(train, columns=["user_id", "item_id"]).assign(timestamp=np.arange(len(train)))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(6)], "title": [f"Film {i}" for i in range(6)]})
    ds = Dataset.from_frame(frame, name="cold", items=items)
    test_pairs = [("u0", "i2"), ("u1", "i1"), ("u2", "i4"), ("u3", "i2"), ("u3", "i4")]
    users = ds.user_index([u for u, _ in test_pairs])
    test = Interactions(users, ds.item_index([i for _, i in test_pairs]), np.full(len(users), 100))
    return split_given_test(ds, test=test)


def _ix(split, *ids):
    return split.dataset.item_index(list(ids))


def test_cold_item_mask_counts_training_interactions(split):
    ds = split.dataset
    for n, cold in [
        (0, {"i2", "i5"}),
        (1, {"i1", "i2", "i5"}),
        (2, {"i1", "i2", "i3", "i5"}),
        (3, {"i0", "i1", "i2", "i3", "i5"}),
    ]:
        mask = cold_item_mask(split, n)
        assert set(ds.item_ids[mask]) == cold, n
    with pytest.raises(ConfigError, match="integer >= 0"):
        cold_item_mask(split, -1)
    with pytest.raises(ConfigError, match="integer >= 0"):
        cold_item_mask(split, 1.5)


def test_restrict_targets_keeps_only_masked_items_and_drops_empty_users(split):
    es = split.eval_set("test")
    cold = cold_item_mask(split, 1)
    kept = restrict_targets(es, cold)
    ds = split.dataset
    got = {ds.user_ids[u]: set(ds.item_ids[kept.targets.row(i)]) for i, u in enumerate(kept.queries.users)}
    assert got == {"u0": {"i2"}, "u1": {"i1"}, "u3": {"i2"}}
    warm = restrict_targets(es, ~cold)
    assert {ds.user_ids[u] for u in warm.queries.users} == {"u2", "u3"}
    # histories are untouched: the model still ranks the whole catalog for these users
    row = list(kept.queries.users).index(ds.user_index(["u0"])[0])
    assert sorted(ds.item_ids[kept.queries.histories.row(row)]) == ["i0", "i3", "i4"]
    with pytest.raises(ValueError, match="boolean mask"):
        restrict_targets(es, cold.astype(int))
    with pytest.raises(ValueError, match="one entry per catalog item"):
        restrict_targets(es, cold[:2])


def test_evaluate_split_on_cold_targets_matches_hand_computation(split):
    ds = split.dataset
    # every user gets the same scores: i2 > i1 > i5 > i4 > i3 > i0 (history items are masked)
    order = ["i2", "i1", "i5", "i4", "i3", "i0"]
    scores = np.zeros((ds.n_users, ds.n_items))
    scores[:, _ix(split, *order)] = np.arange(6, 0, -1)
    model = PrecomputedScores(scores).fit(split, FitOptions(progress=False))
    res = evaluate_split(
        model, split, targets="cold", cold_max_interactions=1, metrics=["hr@1", "ndcg@2"], n_boot=0, progress=False
    )
    per = res.per_user.set_index(ds.user_ids[res.per_user.user])
    # u0 (history i0 i3 i4): list i2, i1 -> target i2 first. u1 (history i0 i3 i4): i2, i1 -> target i1 second.
    # u3 (history i1): list i2, i5 -> cold target i2 first (its warm target i4 does not count).
    assert per["hr@1"].to_dict() == {"u0": 1.0, "u1": 0.0, "u3": 1.0}
    assert per.loc["u1", "ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert res.mean("hr@1") == pytest.approx(2 / 3)
    assert res.counts["n_cold_items"] == 3 and res.counts["n_targets_kept"] == 3
    assert res.counts["n_users_without_cold_target"] == 1 and res.settings["targets"] == "cold"
    warm = evaluate_split(
        model, split, targets="warm", cold_max_interactions=1, metrics=["hr@2"], n_boot=0, progress=False
    )
    # u2 (history i0 i4): list i2, i1 -> misses i4; u3 (history i1): i2, i5 -> misses i4
    assert warm.per_user["hr@2"].tolist() == [0.0, 0.0] and warm.counts["n_users_without_warm_target"] == 2
    full = evaluate_split(model, split, metrics=["hr@1"], n_boot=0, progress=False)
    assert len(full.per_user) == 4 and "n_cold_items" not in full.counts
    with pytest.raises(ConfigError, match="targets must be one of"):
        evaluate_split(model, split, targets="frozen")


def test_cold_start_audit_compares_models_on_the_same_users(split):
    ds = split.dataset
    favour_cold = np.zeros((ds.n_users, ds.n_items))
    favour_cold[:, _ix(split, "i2", "i1")] = [2.0, 1.0]  # ranks the cold items first
    model = PrecomputedScores(favour_cold).fit(split, FitOptions(progress=False))
    res = ColdStartAudit(
        max_train_interactions=1, k=2, n_boot=50, metrics=("hr",), compare_with=[{"name": "most_popular"}]
    ).run(model, split)
    est = res.estimates
    # u0, u1, u3 have cold targets (i2, i1, i2) and all are hit at k=2. Most popular ranks i4, i0, i3, i1,
    # then i2 and i5: u0 and u1 (history i0 i3 i4) get i1, i2 (hits); u3 (history i1) gets i4, i0 (miss)
    assert est["hr@2 [cold]"].value == 1.0 and est["hr@2 [cold]"].n == 3
    assert est["hr@2 [cold, most_popular]"].value == pytest.approx(2 / 3)
    assert est["hr@2 [cold] difference vs most_popular"].value == pytest.approx(1 / 3)
    assert est["hr@2 [warm]"].value == 0.0 and est["hr@2 cold-warm gap"].value == 1.0
    # 8 slots (4 users x 2); u3 has seen i1, so its second slot is the first zero-score item, i0 (warm)
    assert est["cold_item_exposure@2"].value == pytest.approx(7 / 8)
    table = res.evidence["by_model"]
    assert set(table.model) == {model.name, "most_popular"} and set(table.segment) == {"cold", "warm"}
    assert res.plots[0].table == "by_model" and res.settings["n_cold_items"] == 3


def test_cold_start_audit_reports_what_it_cannot_measure(split):
    ds = split.dataset
    model = PrecomputedScores(np.zeros((ds.n_users, ds.n_items))).fit(split, FitOptions(progress=False))
    none_cold = ColdStartAudit(max_train_interactions=0, compare_with=[]).run(
        model,
        split.__class__(
            ds, split.train, split.valid, split.test.select(np.isin(split.test.item, _ix(split, "i4"))), split.method
        ),
    )
    assert (
        none_cold.verdict.status == "not_applicable" and "raise max_train_interactions" in none_cold.verdict.reasons[0]
    )
    broken = ColdStartAudit(
        max_train_interactions=1,
        n_boot=10,
        compare_with=[{"name": "text_knn", "params": {"encoder": "no-such-encoder"}}],
    ).run(model, split)
    assert broken.verdict.status != "not_applicable"
    assert len(broken.warnings) == 1 and broken.warnings[0].startswith("reference text_knn not measured")
    with pytest.raises(ConfigError, match="unknown model"):
        ColdStartAudit(compare_with=[{"name": "no_such_model"}])
    with pytest.raises(ConfigError, match="metrics must be"):
        ColdStartAudit(metrics=("ild",))


@pytest.mark.slow
def test_text_encoder_reaches_cold_ml100k_items(ml100k):
    """Real data: items with <= 10 training interactions. ItemKNN never puts them in a top-10 (no
    co-occurrence to score them by); a text-encoder model, which reads titles, gives them a large
    share of its slots."""
    pytest.importorskip("transformers")
    from trustrec.data import split_leave_one_out
    from trustrec.models import make_model

    split = split_leave_one_out(ml100k)
    knn = make_model("item_knn").fit(split, FitOptions(progress=False))
    res = ColdStartAudit(max_train_interactions=10, n_boot=100, compare_with=[{"name": "text_knn"}]).run(knn, split)
    assert not res.warnings, res.warnings  # the encoder resolves offline from its package-index wheel
    table = res.evidence["by_model"].set_index(["model", "segment"])
    assert res.estimates["cold_item_exposure@10"].value < 0.01
    assert table.loc[("text_knn", "cold"), "cold_item_exposure"] > 0.1
    assert res.settings["n_cold_target_users"] == res.estimates["ndcg@10 [cold]"].n > 20
