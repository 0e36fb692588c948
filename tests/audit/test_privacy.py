"""Privacy: the attack statistics against hand computations and scikit-learn, the per-user loss,
membership inference (a memorising model leaks, a model that ignores its data does not),
canary exposure, randomised response, attribute inference (a planted signal is found, a
shuffled one is not), history minimisation, and exact / approximate unlearning."""

import numpy as np
import pandas as pd
import pytest

from trustrec._config import Config
from trustrec.audit.privacy import (
    AttributeInferenceAudit,
    MembershipInferenceAudit,
    UnlearningAudit,
    canary_exposure,
    js_divergence,
    macro_ovr_auc,
    next_item_losses,
    random_sequences,
    roc_auc,
    tpr_at_fpr,
)
from trustrec.data import Dataset, Interactions, Ragged, Split, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate import (
    drop_items,
    forget,
    generalise_item_text,
    keep_probability,
    minimise_history,
    noise_training,
    randomise_interactions,
    randomised_response,
    remove_users,
    revealing_items,
)
from trustrec.models import FitOptions, Recommender, make_model, register_model
from trustrec.testing import PrecomputedScores


# -- test doubles ----------------------------------------------------------------------------------
class _NoParams(Config):
    pass


@register_model
class TransitionMemoriser(Recommender):
    """Memorises by construction: scores 10 for every item that followed the query's last item
    somewhere in training, 0 otherwise."""

    name = "_test_transition_memoriser"
    config_class = _NoParams

    def _fit(self, train, options):
        seqs = train.histories()
        rows = seqs.row_ids()
        nxt = np.r_[rows[1:] == rows[:-1], False]
        self.prev_ = seqs.values[nxt]
        self.next_ = seqs.values[np.flatnonzero(nxt) + 1]

    def score(self, queries):
        import scipy.sparse as sp

        queries = self._prepare(queries)
        t = sp.csr_matrix((np.ones(len(self.prev_)), (self.prev_, self.next_)), shape=(self.n_items_,) * 2)
        t.data[:] = 10.0
        h = queries.histories
        last = np.where(h.lengths > 0, h.values[np.maximum(h.indptr[1:] - 1, 0)], 0)
        out = np.asarray(t[last].todense(), np.float64)
        out[h.lengths == 0] = 0.0
        return out


@register_model
class DataBlindScores(Recommender):
    """Ignores its training data: one fixed random score per item (drawn from the fit seed)."""

    name = "_test_data_blind_scores"
    config_class = _NoParams

    def _fit(self, train, options):
        self.item_scores_ = np.random.default_rng(12345).normal(size=train.n_items)

    def score(self, queries):
        queries = self._prepare(queries)
        return np.broadcast_to(self.item_scores_, (len(queries), self.n_items_)).copy()


def uniform_sequences(n_users=300, n_items=400, length=12, seed=0) -> Split:
    """Users with random sequences of distinct items (every user from the same distribution)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(rng.choice(n_items, length, replace=False))]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"Item {i}" for i in range(n_items)]})
    ds = Dataset.from_frame(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), name="uniform", items=items
    )
    return split_leave_one_out(ds)


def planted_attributes(n_users=240, n_items=60, seed=0, n_missing=6) -> Split:
    """Gender drives consumption: F users take 5 of the items 0-9, M users 5 of the items 10-19, and
    everyone 5 random items of 20-59. ``noise`` is an attribute independent of everything; a few
    users have no gender."""
    rng = np.random.default_rng(seed)
    gender = np.where(np.arange(n_users) % 2 == 0, "F", "M").astype(object)
    rows = []
    for u in range(n_users):
        block = rng.choice(10, 5, replace=False) + (0 if gender[u] == "F" else 10)
        items = np.r_[block, rng.choice(np.arange(20, n_items), 5, replace=False)]
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(rng.permutation(items))]
    users = pd.DataFrame(
        {"user_id": [f"u{u}" for u in range(n_users)], "gender": gender, "noise": rng.choice(["a", "b"], n_users)}
    )
    users.loc[np.arange(n_missing) * 7 + 1, "gender"] = None
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"Film {i}" for i in range(n_items)],
            "genre": ["Drama|Romance" if i < 10 else "Action" for i in range(n_items)],
        }
    )
    ds = Dataset.from_frame(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), name="planted", items=items, users=users
    )
    return split_leave_one_out(ds)


# -- statistics ------------------------------------------------------------------------------------
def test_roc_auc_matches_a_hand_count_and_sklearn():
    from sklearn.metrics import roc_auc_score

    # pairs (member, non-member): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts half
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=300), 1)  # many ties
    y = rng.random(300) < 0.3 + 0.3 * (s > 0)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_macro_ovr_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, 200)
    proba = rng.dirichlet(np.ones(4), 200) + 0.3 * np.eye(4)[codes]
    proba /= proba.sum(1, keepdims=True)
    assert macro_ovr_auc(proba, codes)[0] == pytest.approx(
        roc_auc_score(codes, proba, multi_class="ovr", average="macro")
    )
    binary = proba[:, :2] / proba[:, :2].sum(1, keepdims=True)
    y = codes % 2
    assert macro_ovr_auc(binary, y)[0] == pytest.approx(roc_auc_score(y, binary[:, 1]))
    rows = np.random.default_rng(2).integers(0, 200, (5, 200))  # bootstrap samples
    expected = [roc_auc_score(codes[r], proba[r], multi_class="ovr", average="macro") for r in rows]
    np.testing.assert_allclose(macro_ovr_auc(proba, codes, rows), expected)


def test_tpr_at_fpr_reads_the_roc_curve():
    # ranked: 0.9 m, 0.85 n, 0.8 m, 0.4 m, 0.3 n, 0.2 n, 0.1 n
    scores = [0.9, 0.8, 0.4, 0.85, 0.3, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0, 0]
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(scores, labels, 0.1) == pytest.approx(1 / 3)
    assert tpr_at_fpr(scores, labels, 0.25) == pytest.approx(1.0)


def test_canary_exposure_by_hand():
    # 4 candidates: ranks 2, 3 and 4 + 1/2 (a tie with 3.5); exposure = log2(5) - log2(rank)
    out = canary_exposure([1.0, 2.0, 3.5], [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(out, np.log2(5) - np.log2([2, 3, 4.5]))
    assert canary_exposure([0.0], [1.0, 2.0])[0] == pytest.approx(np.log2(3))  # best possible


def test_js_divergence_by_hand():
    p = np.array([[1.0, 0.0], [0.3, 0.7], [1.0, 0.0]])
    q = np.array([[0.5, 0.5], [0.3, 0.7], [0.0, 1.0]])
    # m = (0.75, 0.25): KL(p|m) = log2(4/3), KL(q|m) = 0.5 log2(2/3) + 0.5 log2(2)
    hand = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
    np.testing.assert_allclose(js_divergence(p, q), [hand, 0.0, 1.0])


def test_random_sequences_are_distinct_catalog_items():
    seqs = random_sequences(50, 8, 30, np.random.default_rng(0))
    assert len(seqs) == 50 and (seqs.lengths == 8).all()
    assert all(len(set(r)) == 8 for r in seqs.rows()) and seqs.values.min() >= 0 and seqs.values.max() < 30
    big = random_sequences(200, 8, 5000, np.random.default_rng(0))  # the large-catalog path
    assert all(len(set(r)) == 8 for r in big.rows()) and big.values.max() < 5000
    with pytest.raises(ConfigError):
        random_sequences(2, 31, 30, np.random.default_rng(0))


# -- per-user loss ---------------------------------------------------------------------------------
def _fixed_logits_model(z):
    frame = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["0", "1"], "timestamp": [0, 1]})
    items = pd.DataFrame({"item_id": [str(i) for i in range(len(z))]})
    ds = Dataset.from_frame(frame, name="fixed", items=items)
    return PrecomputedScores(np.asarray(z, np.float64)[None]).fit(ds, FitOptions(progress=False))


def test_next_item_losses_by_hand():
    from scipy.special import logsumexp

    model = _fixed_logits_model([0.0, 1.0, 2.0, 3.0])
    hist = Ragged.from_rows([[0, 1, 3], [2, 2], [1], []])
    loss, n = next_item_losses(model, hist, positions=None)
    # row 0: [0] -> 1 over {1, 2, 3}; [0, 1] -> 3 over {2, 3} (history items leave the softmax)
    row0 = ((logsumexp([1, 2, 3]) - 1) + (logsumexp([2, 3]) - 3)) / 2
    # row 1: a repeated target stays in: [2] -> 2 over every item
    row1 = logsumexp([0, 1, 2, 3]) - 2
    np.testing.assert_allclose(loss[:2], [row0, row1])
    assert np.isnan(loss[2:]).all() and n.tolist() == [2, 1, 0, 0]
    last, n1 = next_item_losses(model, hist, positions=1)  # only the last position
    assert last[0] == pytest.approx(logsumexp([2, 3]) - 3) and n1.tolist() == [1, 1, 0, 0]


def test_next_item_losses_needs_scores():
    split = uniform_sequences(n_users=10, n_items=30, length=4)

    class NoScores(Recommender):
        name = ""
        capabilities = frozenset()

        def _fit(self, train, options):
            pass

    model = NoScores().fit(split, FitOptions(progress=False))
    with pytest.raises(ConfigError, match="neither full-catalog scores"):
        next_item_losses(model, Ragged.from_rows([[1, 2]]))


# -- membership inference --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uniform():
    return uniform_sequences()


def _mia(model_name, split, **kw):
    model = make_model(model_name).fit(split, FitOptions(progress=False))
    return MembershipInferenceAudit(n_boot=200, n_candidates=100, **kw).run(model, split)


def test_mia_detects_a_memorising_model(uniform):
    res = _mia("_test_transition_memoriser", uniform, n_canaries=5)
    auc = res.estimates["auc [loss]"]
    assert auc.value > 0.9 and auc.ci_low > 0.8 and auc.n == 200
    assert res.estimates["auc [calibrated]"].value > 0.9
    assert res.estimates["tpr@1%fpr [loss]"].value > 0.5  # 100 non-members: 1% is measured
    assert res.estimates["tpr@0.1%fpr [loss]"].value is None  # ... 0.1% is not, and says why
    assert any("0.001" in w and "too few" in w for w in res.warnings)
    # inserted canaries rank near the top of random sequences; controls do not
    assert res.estimates["canary_exposure"].value > res.estimates["canary_exposure [control]"].value + 3
    assert res.settings["n_members"] == res.settings["n_non_members"] == 100
    assert res.settings["n_reference_users"] == 100
    roc = res.evidence["roc"]
    assert {"loss", "calibrated"} == set(roc.attack) and roc.fpr.between(0, 1).all()


def test_mia_stays_near_chance_for_a_model_that_ignores_its_data(uniform):
    res = _mia("_test_data_blind_scores", uniform, n_canaries=5)
    auc = res.estimates["auc [loss]"]
    assert abs(auc.value - 0.5) < 0.1 and auc.ci_low < 0.5 < auc.ci_high
    assert abs(res.estimates["canary_exposure"].value - res.estimates["canary_exposure [control]"].value) < 1.5


def test_mia_most_popular_on_large_same_distribution_data():
    """MostPopular learns item counts only: with many users per item a member moves them little."""
    split = uniform_sequences(n_users=600, n_items=40, length=10, seed=3)
    res = _mia("most_popular", split, n_canaries=0)
    assert abs(res.estimates["auc [loss]"].value - 0.5) < 0.1


def test_randomised_response_training_lowers_the_leak(uniform):
    res = _mia("_test_transition_memoriser", uniform, n_canaries=0, noise_epsilons=(0.0,), reference="none")
    drop = res.estimates["auc_drop [loss, rr eps=0]"]
    assert drop.value > 0.05 and drop.ci_low > 0
    assert res.estimates["auc [loss, rr eps=0]"].value < res.estimates["auc [loss]"].value
    assert "auc [calibrated]" not in res.estimates  # reference="none": loss attack only
    noise = res.evidence["noise"]
    assert noise.keep_probability.tolist() == [1.0, 0.5]


def test_mia_reference_choices_are_checked(uniform):
    model = make_model("_test_data_blind_scores").fit(uniform, FitOptions(progress=False))
    with pytest.raises(ConfigError, match="base_llm"):
        MembershipInferenceAudit(reference="base_llm", n_canaries=0).run(model, uniform)
    with pytest.raises(ConfigError):
        MembershipInferenceAudit(noise_epsilons=(-1.0,))


# -- randomised response -------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 1.0, 2.5])
def test_randomised_response_keeps_the_stated_rate(eps):
    rng = np.random.default_rng(0)
    n_items = 50
    hist = Ragged.from_rows([rng.integers(0, n_items, 1000) for _ in range(200)])
    noisy = randomised_response(hist, eps, n_items, seed=1)
    kept = (noisy.values == hist.values).mean()
    p = np.exp(eps) / (np.exp(eps) + 1)
    se = np.sqrt(p * (1 - p) / len(hist.values))
    assert abs(kept - p) < 5 * se
    assert (noisy.indptr == hist.indptr).all() and noisy.values.max() < n_items and noisy.values.min() >= 0
    # a replacement is uniform over the OTHER items: its offset from the original is uniform on 1..n-1
    from scipy.stats import chisquare

    changed = noisy.values != hist.values
    offsets = np.bincount((noisy.values[changed] - hist.values[changed]) % n_items, minlength=n_items)
    assert offsets[0] == 0 and chisquare(offsets[1:]).pvalue > 0.001


def test_randomised_response_edges():
    assert keep_probability(0) == 0.5 and keep_probability(np.log(3)) == pytest.approx(0.75)
    hist = Ragged.from_rows([[1, 2, 3], [4]])
    assert (randomised_response(hist, float("inf"), 10).values == hist.values).all()
    with pytest.raises(ConfigError):
        randomised_response(hist, -1.0, 10)
    with pytest.raises(DataError):
        randomised_response(hist, 1.0, 4)  # item 4 outside a 4-item catalog
    inter = Interactions(np.zeros(1000, int), np.full(1000, 3), np.arange(1000))
    some = randomise_interactions(inter, 0.0, 10, rows=np.arange(500), seed=0)
    assert (some.item[500:] == 3).all() and (some.item[:500] != 3).any()
    assert (some.timestamp == inter.timestamp).all()


def test_noise_training_touches_only_the_given_users(uniform):
    users = np.arange(10)
    noisy = noise_training(uniform, 0.0, users=users, seed=0)
    other = ~np.isin(uniform.train.user, users)
    assert (noisy.train.item[other] == uniform.train.item[other]).all()
    assert (noisy.train.item[~other] != uniform.train.item[~other]).any()
    assert noisy.test is uniform.test and noisy.params["randomised_response_epsilon"] == 0.0


# -- attribute inference ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    return planted_attributes()


def test_attribute_inference_finds_a_planted_signal_and_not_a_shuffled_one(planted):
    model = make_model("item_knn").fit(planted, FitOptions(progress=False))
    res = AttributeInferenceAudit(n_boot=100, n_permutations=10, attributes=("gender", "noise")).run(model, planted)
    gender, noise = res.estimates["auc [gender]"], res.estimates["auc [noise]"]
    assert gender.value > 0.9 and gender.p_value <= 1 / 11 + 1e-12
    assert noise.value < 0.65 and noise.ci_low < 0.5 + 0.1 and noise.p_value > 0.05
    assert res.estimates["auc_shuffled [gender]"].value < 0.7
    assert res.estimates["accuracy [gender]"].value > res.estimates["majority_accuracy [gender]"].value
    table = res.evidence["by_attribute"].set_index("attribute")
    assert table.loc["gender", "n_missing"] == 6 and table.loc["gender", "n_labelled"] == len(model_users(planted)) - 6
    assert any("6 of" in w and "gender" in w for w in res.warnings)
    assert res.settings["features"] == "top-10"


def model_users(split):
    return split.eval_set("test").queries.users


def test_attribute_inference_reads_user_embeddings(planted):
    model = make_model("bpr_mf", epochs=20, embedding_size=8, learning_rate=0.02).fit(
        planted, FitOptions(seed=0, progress=False)
    )
    res = AttributeInferenceAudit(n_boot=50, n_permutations=0, attributes=("gender",)).run(model, planted)
    assert res.settings["features"] == "embeddings"
    assert res.estimates["auc [gender]"].value > 0.8
    with pytest.raises(ConfigError):
        AttributeInferenceAudit(attributes=("shoe_size",)).run(model, planted)


def test_attribute_inference_not_applicable_without_attributes(uniform):
    model = make_model("most_popular").fit(uniform, FitOptions(progress=False))
    res = AttributeInferenceAudit().run(model, uniform)
    assert res.verdict.status == "not_applicable" and "no user attribute" in res.verdict.reasons[0]


def test_history_minimisation_removes_the_signal_at_a_cost(planted):
    model = make_model("item_knn").fit(planted, FitOptions(progress=False))
    res = AttributeInferenceAudit(
        n_boot=100, n_permutations=0, attributes=("gender",), minimise="drop", n_sensitive=20
    ).run(model, planted)
    assert res.estimates["auc [gender]"].value > 0.9
    assert res.estimates["auc [gender, minimised]"].value < 0.7
    assert res.estimates["auc_drop [gender, minimised]"].ci_low > 0.2
    row = res.evidence["by_attribute"].iloc[0]
    assert row.history_share_removed == pytest.approx(0.5, abs=0.05)  # the 5 block items of each 10
    assert "ndcg@10_cost [gender, minimised]" in res.estimates


def test_minimisation_functions(planted):
    hist = Ragged.from_rows([[0, 1, 2], [2], []])
    mask = np.array([False, True, True, False])
    assert drop_items(hist, mask).rows()[0].tolist() == [0] and drop_items(hist, mask).lengths.tolist() == [1, 0, 0]
    ds = planted.dataset
    sensitive = np.zeros(ds.n_items, bool)
    sensitive[[0, 30]] = True
    items = generalise_item_text(ds.items, sensitive)
    assert items.title[0] == "an item in Drama, Romance" and items.title[30] == "an item in Action"
    assert items.title[1] == "Film 1" and ds.items.title[0] == "Film 0"  # a copy; the rest unchanged
    labels = ds.users.gender.to_numpy()
    top = revealing_items(planted.train, labels, ds.n_items, 20)
    assert set(top.tolist()) == set(range(20))
    model = make_model("item_knn").fit(planted, FitOptions(progress=False))
    queries = planted.eval_set("test").queries
    with pytest.raises(ConfigError, match="with_item_text"):
        minimise_history(model, queries, sensitive, "generalise", items=ds.items)
    same, dropped = minimise_history(model, queries, sensitive, "drop")
    assert same is model and not np.isin(dropped.histories.values, [0, 30]).any()


def test_generalise_rewrites_what_an_llm_recommender_reads(attributed):
    ds, split = attributed
    ranker = make_model(
        "llm_ranker", retriever={"name": "most_popular"}, n_candidates=8, n_permutations=1, template={"chat": False}
    ).fit(split, FitOptions(progress=False))
    sensitive = np.zeros(ds.n_items, bool)
    sensitive[[0, 3]] = True
    queries = split.eval_set("test").queries
    shown, same = minimise_history(ranker, queries, sensitive, "generalise", items=ds.items)
    assert same is queries and shown is not ranker
    assert shown.catalog_["title"][:4] == ["an item in Action", "Film 1", "Film 2", "an item in Comedy, Horror"]
    assert ranker.catalog_["title"][0] == "Film 0"  # the deployed model is untouched


# -- unlearning ------------------------------------------------------------------------------------
SASREC = {"epochs": 2, "embedding_size": 16, "inner_size": 32, "max_len": 10, "n_heads": 1}


def _net_state(model):
    return {k: v.detach().clone() for k, v in model.net_.state_dict().items()}


def _assert_same_net(a, b):
    sa, sb = _net_state(a), _net_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert (sa[key] == sb[key]).all(), key


@pytest.mark.parametrize("name,params", [("sasrec", SASREC), ("bpr_mf", {"epochs": 3, "embedding_size": 8})])
def test_exact_unlearning_leaves_no_trace(attributed, name, params):
    ds, split = attributed
    gone = ["u3", "u10", "u42", "u77"]
    idx = ds.user_index(gone)
    model = make_model(name, **params).fit(split, FitOptions(seed=3, progress=False))
    exact = forget(model, split, gone, method="exact", seed=3)
    # identical to training without them, same seed
    without = make_model(name, **params).fit(remove_users(split, idx), FitOptions(seed=3, progress=False))
    _assert_same_net(exact, without)
    # whatever the forgotten users had done, the result is the same
    train = split.train
    theirs = np.isin(train.user, idx)
    other_items = np.where(theirs, (train.item + 7) % ds.n_items, train.item)
    altered = Split(
        ds, Interactions(train.user, other_items, train.timestamp, train.rating), split.valid, split.test, split.method
    )
    refit = make_model(name, **params).fit(altered, FitOptions(seed=3, progress=False))
    _assert_same_net(forget(refit, altered, gone, method="exact", seed=3), exact)
    # and it differs from the model that saw them; the original is untouched
    q = split.eval_set("test").queries
    assert not np.allclose(exact.score(q), model.score(q))
    assert exact.unlearning_ == {**exact.unlearning_, "method": "exact", "n_users": 4}
    assert "u3" not in repr(exact.unlearning_)


def test_forget_set_with_unknown_users_is_a_clear_error(attributed):
    _ds, split = attributed
    model = make_model("item_knn").fit(split, FitOptions(progress=False))
    with pytest.raises(DataError, match=r"2 of 3 user ids.*'nobody'.*'ghost'"):
        forget(model, split, ["u1", "nobody", "ghost"])
    with pytest.raises(DataError, match="999"):
        forget(model, split, [1, 999], by="index")
    with pytest.raises(DataError, match="empty"):
        forget(model, split, [])
    with pytest.raises(DataError, match="ghost"):
        UnlearningAudit(forget_users=("u1", "ghost")).run(model, split)


def test_approximate_unlearning_raises_the_forget_loss_and_keeps_the_model(attributed):
    _ds, split = attributed
    model = make_model("sasrec", **SASREC).fit(split, FitOptions(seed=0, progress=False))
    before = _net_state(model)
    gone = [f"u{i}" for i in range(0, 160, 16)]
    approx = forget(model, split, gone, method="gradient_ascent", steps=8, learning_rate=5e-3, seed=0)
    trace = approx.unlearning_["forget_loss"]
    assert approx.unlearning_["steps_run"] == 8 and trace[-1] > trace[0]
    assert approx.unlearning_["n_users"] == 10 and "u0" not in repr(approx.unlearning_)
    for key, value in _net_state(model).items():  # the given model is unchanged
        assert (value == before[key]).all()
    # same seed, same result
    again = forget(model, split, gone, method="gradient_ascent", steps=8, learning_rate=5e-3, seed=0)
    _assert_same_net(approx, again)
    # a bound already reached: nothing to do
    done = forget(model, split, gone, method="gradient_ascent", steps=8, max_forget_loss=0.0)
    assert done.unlearning_["steps_run"] == 1
    _assert_same_net(done, model)
    with pytest.raises(ConfigError, match="exact"):
        forget(make_model("item_knn").fit(split, FitOptions(progress=False)), split, gone, method="gradient_ascent")


@pytest.mark.slow
def test_unlearning_audit_on_sasrec(attributed):
    _ds, split = attributed
    model = make_model("sasrec", **SASREC).fit(split, FitOptions(seed=0, progress=False))
    res = UnlearningAudit(n_boot=50, steps=10, forget_share=0.1).run(model, split)
    est = res.estimates
    for name in ("original", "exact", "approximate"):
        assert 0 <= est[f"forget_mia_auc [{name}]"].value <= 1
    assert "forget_mia_auc_gap [approximate - exact]" in est
    assert 0 <= est["js_divergence [approximate vs exact, retained]"].value <= 1
    assert res.settings["speedup"] > 0 and res.settings["n_forget"] == 16 and res.settings["n_heldout"] == 32


@pytest.mark.slow
def test_mia_on_the_generative_llm_uses_the_base_llm_as_reference():
    pytest.importorskip("transformers")
    from tests.audit.conftest import attributed_frames
    from trustrec.models.llm._generative import GenerativeRecommender

    inter, users, items = attributed_frames(n_users=40, n_items=20, per_user=6)
    split = split_leave_one_out(Dataset.from_frame(inter, name="attributed", items=items, users=users))
    model = GenerativeRecommender(
        model="tiny-smollm2-random",
        max_history_tokens=48,
        max_train_examples=32,
        batch_size=8,
        learning_rate=3e-3,
        epochs=1,
        template={"chat": False},
        targets_per_user=2,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    ).fit(split, FitOptions(seed=0, progress=False))
    res = MembershipInferenceAudit(n_boot=20, n_canaries=2, n_candidates=10, canary_length=4).run(model, split)
    assert res.settings["reference"] == "base_llm" and res.settings["positions"] == 2
    assert res.settings["n_reference_users"] == 0
    assert 0 <= res.estimates["auc [calibrated]"].value <= 1
    losses = res.evidence["per_user"]
    assert losses.loss_target.notna().all() and losses.loss_reference.notna().all()
    assert not np.allclose(losses.loss_target, losses.loss_reference)  # adapters off = another model


def test_auc_gaps_are_not_measured_when_an_auc_is_not():
    # an AUC over one class only is NaN (Estimate value None): its gap is None, not a TypeError
    from trustrec.audit.privacy._common import difference

    assert difference(0.75, 0.5) == pytest.approx(0.25)
    assert difference(None, 0.5) is None and difference(0.5, None) is None
