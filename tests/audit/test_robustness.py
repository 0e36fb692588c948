"""Robustness audits: history perturbation helpers and RBO, poisoning (fake-user injection) and
the fake-user detector defence."""

import numpy as np
import pandas as pd
import pytest

from trustrec.audit._robustness import (
    ATTACKS,
    PERTURBATIONS,
    HistoryPerturbationAudit,
    PoisoningAudit,
    fake_profiles,
    inject_fake_users,
    perturb_histories,
    rank_biased_overlap,
    target_ranks,
)
from trustrec.data import Dataset, Ragged, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate import FakeUserDetector, detection_scores, user_profile_features
from trustrec.models import FitOptions, make_model

N_ITEMS = 30


def _histories(seed=0, n_rows=60):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 12, n_rows)
    lengths[:3] = [0, 1, 2]
    return Ragged.from_rows([rng.choice(N_ITEMS, n, replace=False) for n in lengths])


# -- RBO ---------------------------------------------------------------------------------------------
def test_rbo_matches_a_hand_computation():
    # A = [1, 2, 3], B = [1, 3, 2], p = 0.9: X_1 = 1, X_2 = 1, X_3 = 3
    # RBO_ext = (1-p)/p * (1*0.9 + 1/2*0.81 + 3/3*0.729) + 3/3 * 0.729 = 0.955
    assert rank_biased_overlap([[1, 2, 3]], [[1, 3, 2]], 0.9)[0] == pytest.approx(0.955)
    # uneven lengths: S = [1, 2] (s=2), L = [1, 3, 2] (l=3): X_1 = 1, X_2 = 1, X_3 = 2
    # (1-p)/p * (0.9 + 0.81/2 + 0.729*2/3 + X_s*(3-2)/(2*3)*0.729) + ((2-1)/3 + 1/2)*0.729
    hand = (0.1 / 0.9) * (0.9 + 0.405 + 0.486 + 0.1215) + (1 / 3 + 1 / 2) * 0.729
    assert rank_biased_overlap([[1, 2, -1]], [[1, 3, 2]], 0.9)[0] == pytest.approx(hand)
    assert rank_biased_overlap([[1, 3, 2]], [[1, 2, -1]], 0.9)[0] == pytest.approx(hand)  # symmetric


def test_rbo_bounds_and_edge_cases():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [-1, -1, -1, -1], [1, 2, 3, 4]])
    b = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [-1, -1, -1, -1], [-1, -1, -1, -1]])
    np.testing.assert_allclose(rank_biased_overlap(a, b), [1.0, 0.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    x = np.stack([rng.permutation(20)[:10] for _ in range(50)])
    y = np.stack([rng.permutation(20)[:10] for _ in range(50)])
    r = rank_biased_overlap(x, y)
    assert ((r >= 0) & (r <= 1)).all()
    # agreement at the top weighs more than at the bottom
    top = rank_biased_overlap([[1, 2, 3, 4]], [[1, 2, 4, 3]])[0]
    bottom = rank_biased_overlap([[1, 2, 3, 4]], [[2, 1, 3, 4]])[0]
    assert top > bottom
    with pytest.raises(ConfigError):
        rank_biased_overlap(x, y, p=1.0)


# -- perturbations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PERTURBATIONS)
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("budget", [0.1, 0.4, 1.0])
def test_perturbations_keep_histories_valid(kind, targeted, budget):
    h = _histories()
    p = perturb_histories(h, kind, budget, n_items=N_ITEMS, seed=3, targeted=targeted)
    assert len(p) == len(h)
    assert ((p.values >= 0) & (p.values < N_ITEMS)).all()
    n = np.maximum(1, np.round(budget * h.lengths)).astype(int)
    for i, (old, new) in enumerate(zip(h.rows(), p.rows())):
        assert len(np.unique(new)) == len(new), (kind, i)  # no duplicate introduced
        if kind == "insert":
            assert len(new) == len(old) + min(n[i], N_ITEMS - len(old))
            assert set(old) <= set(new)
            assert [x for x in new if x in set(old)] == list(old)  # original order kept
            if targeted:
                assert list(new[: len(old)]) == list(old)  # appended at the end
        elif kind == "delete":
            expect = len(old) - min(n[i], max(len(old) - 1, 0))
            assert len(new) == expect and set(new) <= set(old)
            if targeted:
                assert list(new) == list(old[: len(new)])  # the newest are removed
        elif kind == "substitute":
            assert len(new) == len(old)
            changed = (new != old).sum()
            assert changed == (min(n[i], len(old)) if len(old) else 0)
            assert not set(new[new != old]) & set(old)  # replacements are new items
        else:
            assert len(new) == len(old) and sorted(new) == sorted(old)
            if len(old) >= 2:
                assert (new != old).any()


def test_perturbations_are_seeded():
    h = _histories()
    for kind in PERTURBATIONS:
        a = perturb_histories(h, kind, 0.3, n_items=N_ITEMS, seed=5)
        b = perturb_histories(h, kind, 0.3, n_items=N_ITEMS, seed=5)
        c = perturb_histories(h, kind, 0.3, n_items=N_ITEMS, seed=6)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.indptr, b.indptr)
        assert not np.array_equal(a.values, c.values)


def test_perturbation_inputs_are_checked():
    h = _histories()
    with pytest.raises(ConfigError):
        perturb_histories(h, "shuffle", 0.1, n_items=N_ITEMS)
    with pytest.raises(ConfigError):
        perturb_histories(h, "delete", 0.0, n_items=N_ITEMS)
    with pytest.raises(ConfigError):
        HistoryPerturbationAudit(budgets=[0.0, 0.5])


def test_history_perturbation_audit_on_item_knn(attributed):
    _, split = attributed
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    result = HistoryPerturbationAudit(
        n_boot=20, perturbations=["delete", "reorder"], budgets=[0.2, 0.6], default_budget=0.6
    ).run(model, split)
    table = result.evidence["by_budget"]
    assert set(table.perturbation) == {"delete/random", "delete/targeted", "reorder/random", "reorder/targeted"}
    # ItemKNN reads the history as a set: reordering changes nothing, deleting does
    reorder = table[table.kind == "reorder"]
    assert (reorder.jaccard == 1).all() and (reorder.top1_flip == 0).all()
    delete = table[table.kind == "delete"]
    assert (delete.jaccard < 1).all()
    # a bigger budget moves the lists at least as much
    for label, part in delete.groupby("perturbation"):
        assert part.sort_values("budget").jaccard.is_monotonic_decreasing, label
    assert result.estimates["jaccard@10 [delete/random]"].value < 1
    assert {p.y for p in result.plots} == {"jaccard", "rbo", "ndcg_drop", "top1_flip"}


# -- poisoning ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """60 users, 25 items, popularity skewed; item i24 is rare (2 users)."""
    rng = np.random.default_rng(1)
    pop = 1.0 / np.arange(1, 25) ** 0.7
    rows = []
    for u in range(60):
        items = rng.choice(24, 6, replace=False, p=pop / pop.sum())
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(items)]
    rows += [("u0", "i24", -1), ("u1", "i24", -1)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(25)], "genre": ["A" if i % 2 else "B" for i in range(25)]})
    ds = Dataset.from_frame(frame, name="tiny", items=items)
    return split_leave_one_out(ds)


@pytest.mark.parametrize("attack", ATTACKS)
def test_fake_profiles_are_valid_and_seeded(tiny, attack):
    target = tiny.dataset.item_index(["i24"])
    fake = fake_profiles(tiny, attack, 5, target, filler_size=4, seed=2)
    again = fake_profiles(tiny, attack, 5, target, filler_size=4, seed=2)
    np.testing.assert_array_equal(fake.item, again.item)
    np.testing.assert_array_equal(fake.timestamp, again.timestamp)
    assert set(fake.user) == set(range(tiny.dataset.n_users, tiny.dataset.n_users + 5))
    for u in np.unique(fake.user):
        items = fake.item[fake.user == u]
        assert len(items) == 5 and len(np.unique(items)) == 5 and target[0] in items
        if attack == "sequential":  # the target is the newest item
            ts = fake.timestamp[fake.user == u]
            assert items[np.argmax(ts)] == target[0]
    if attack == "segment":  # same genre as the target (i24: "B")
        genre = tiny.dataset.items["genre"].to_numpy()
        assert (genre[fake.item] == "B").all()
    poisoned = inject_fake_users(tiny, fake)
    assert poisoned.dataset.n_users == tiny.dataset.n_users + 5
    assert len(poisoned.train) == len(tiny.train) + len(fake)
    assert poisoned.test is tiny.test and poisoned.valid is tiny.valid


@pytest.mark.parametrize("model_name", ["most_popular", "item_knn"])
def test_attack_promotes_its_target(tiny, model_name):
    model = make_model(model_name).fit(tiny, FitOptions(progress=False))
    audit = PoisoningAudit(
        target_items=["i24"], attacks=["random", "bandwagon"], budgets=[0.25], n_boot=20, filler_size=4
    )
    result = audit.run(model, tiny)
    clean = result.estimates["target_hr@10 [clean]"].value
    for attack in ("random", "bandwagon"):
        hr = result.estimates[f"target_hr@10 [{attack} @0.25]"].value
        assert hr > clean + 0.3, (model_name, attack, clean, hr)
        assert result.estimates[f"target_rank_change [{attack} @0.25]"].value > 0
        assert result.estimates[f"success_rate [{attack} @0.25]"].value == pytest.approx(hr)
    assert result.settings["target_items"] == list(tiny.dataset.item_index(["i24"]))
    again = audit.run(model, tiny)
    assert again.estimates == result.estimates  # seeded and repeatable


def test_target_ranks_match_the_top_k(tiny):
    model = make_model("item_knn").fit(tiny, FitOptions(progress=False))
    queries = tiny.eval_set("test").queries
    top = model.recommend(queries, 10).items
    targets = np.array([0, 5, 24])
    ranks = target_ranks(model, queries, targets)
    for j, t in enumerate(targets):
        seen = queries.histories.to_dense_mask(tiny.dataset.n_items)[:, t]
        assert np.isnan(ranks[seen, j]).all()
        in_top = (top == t).any(1)
        assert ((ranks[:, j] <= 10) == in_top)[~seen].all()
        hit = np.flatnonzero(in_top)
        np.testing.assert_array_equal(ranks[hit, j], (top[hit] == t).argmax(1) + 1)


def test_poisoning_config_is_validated(tiny):
    for bad in ([0.0], [1.0], [-0.1], []):
        with pytest.raises(ConfigError, match="budgets"):
            PoisoningAudit(budgets=bad)
    with pytest.raises(ConfigError, match="attacks"):
        PoisoningAudit(attacks=["love_bombing"])
    with pytest.raises(ConfigError, match="model_spec"):
        PoisoningAudit(model_spec={"name": "no_such_model"})
    with pytest.raises(ConfigError, match="detector"):
        PoisoningAudit(detector={"method": "svm"})
    model = make_model("most_popular").fit(tiny, FitOptions(progress=False))
    with pytest.raises(ConfigError, match="not items"):
        PoisoningAudit(target_items=["nope"], budgets=[0.1]).run(model, tiny)
    with pytest.raises(ConfigError):
        fake_profiles(tiny, "random", 0, [1], filler_size=3)
    fake = fake_profiles(tiny, "random", 2, [1], filler_size=3)
    with pytest.raises(DataError):
        inject_fake_users(tiny, _renumber(fake, 0))  # fake users must get new indices


def _renumber(fake, first):
    from trustrec.data import Interactions

    return Interactions(fake.user - fake.user.min() + first, fake.item, fake.timestamp, fake.rating)


def test_default_targets_are_unpopular_and_seeded(tiny):
    audit = PoisoningAudit(n_targets=2, seed=4)
    a, b = audit.choose_targets(tiny), audit.choose_targets(tiny)
    np.testing.assert_array_equal(a, b)
    pop = np.bincount(tiny.train.item, minlength=tiny.dataset.n_items)
    assert len(a) == 2 and (pop[a] <= np.median(pop[pop > 0])).all()


def test_poisoning_with_a_model_spec_and_ratings():
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{i}", t, float(rng.integers(1, 6)))
        for u in range(40)
        for t, i in enumerate(rng.choice(20, 5, replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    split = split_leave_one_out(Dataset.from_frame(frame, name="rated"))
    fake = fake_profiles(split, "average", 3, [0], filler_size=3, seed=0)
    assert fake.rating is not None and fake.rating.min() >= 1 and fake.rating.max() <= 5
    assert (fake.rating[fake.item == 0] == 5).all()
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    result = PoisoningAudit(
        model_spec={"name": "item_knn", "params": {"k": 5}}, attacks=["average"], budgets=[0.1], n_boot=10
    ).run(model, split)
    assert result.settings["model_spec"] == {"name": "item_knn", "params": {"k": 5}}


# -- the detector --------------------------------------------------------------------------------------
def test_detector_finds_injected_users_on_a_clear_case(attributed):
    _, split = attributed  # 160 genuine users with 6 training items each
    for attack in ATTACKS:
        fake = fake_profiles(split, attack, 8, [39], filler_size=20, seed=0)
        poisoned = inject_fake_users(split, fake)
        is_fake = np.arange(poisoned.dataset.n_users) >= split.dataset.n_users
        detector = FakeUserDetector(method="lof", contamination=0.05).fit(poisoned)
        report = detector.report(is_fake)
        assert report["recall"] >= 0.75 and report["precision"] >= 0.6, (attack, report)
        assert report["roc_auc"] > 0.95
        defended = detector.drop_flagged(poisoned)
        assert len(defended.train) < len(poisoned.train)
        assert not np.isin(np.flatnonzero(detector.flagged_), defended.train.user).any()
        forest = FakeUserDetector(method="isolation_forest").fit(poisoned).report(is_fake)
        assert forest["roc_auc"] > 0.9 and forest["recall"] == 1.0


def test_profile_features(tiny):
    feats = user_profile_features(tiny)
    assert len(feats) == tiny.dataset.n_users
    assert {"profile_length", "mean_log_popularity", "degsim"} <= set(feats.columns)
    assert "rdma" not in feats.columns  # no ratings
    np.testing.assert_array_equal(
        feats.profile_length.to_numpy(), np.bincount(tiny.train.user, minlength=tiny.dataset.n_users)
    )
    assert ((feats.degsim >= 0) & (feats.degsim <= 1 + 1e-9)).all()


def test_detector_config_and_scores():
    with pytest.raises(ConfigError):
        FakeUserDetector(contamination=0.9)
    with pytest.raises(ConfigError):
        FakeUserDetector(features=["shoe_size"])
    r = detection_scores([True, True, False, False], [True, False, True, False])
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5
    with pytest.raises(ValueError):
        detection_scores([True], [True, False])


def test_poisoning_with_the_detector_defence(attributed):
    _, split = attributed
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    result = PoisoningAudit(
        attacks=["bandwagon"],
        budgets=[0.05],
        filler_size=20,
        n_boot=10,
        detector={"method": "lof", "contamination": 0.05},
    ).run(model, split)
    assert result.estimates["detector_recall [bandwagon @0.05]"].value >= 0.75
    lift = result.estimates["target_hr@10 lift [bandwagon @0.05]"].value
    defended = result.estimates["target_hr@10 lift defended [bandwagon @0.05]"].value
    assert lift > 0.1 and result.estimates["target_hr@10 lift [bandwagon @0.05]"].ci_low > 0
    assert defended < lift / 2, (lift, defended)
    table = result.evidence["by_attack"]
    assert {"detector_precision", "detector_recall", "defended_target_hr"} <= set(table.columns)
