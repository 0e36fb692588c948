"""ties="expected": every metric's expected value over a random order of tied items, against a
hand-computed case and an exact enumeration of every tie order."""

import itertools
import math

import numpy as np
import pytest

from trustrec.data import EvalSet, QueryBatch, Ragged
from trustrec.errors import ConfigError
from trustrec.eval import evaluate
from trustrec.models._base import FitOptions
from trustrec.testing import PrecomputedScores, toy_dataset

ACCURACY = ("recall", "precision", "hr", "ndcg", "mrr", "map", "map_trec")


def _model(scores):
    model = PrecomputedScores(np.asarray(scores, float))
    return model.fit(
        toy_dataset(n_users=max(3, len(scores)), n_items=len(scores[0]), n_inter=4 * max(3, len(scores))),
        FitOptions(progress=False),
    )


def _eval_set(histories, targets):
    return EvalSet(
        QueryBatch(np.arange(len(histories)), Ragged.from_rows(histories)), Ragged.from_rows(targets), "test"
    )


def test_hand_computed_tie_at_the_cut():
    # one user, 6 items, no history. Scores: item 0 = 3; items 1, 2, 3 = 2 (tied); items 4, 5 = 1.
    # Targets: items 2 and 3. K = 3: index order gives [0, 1, 2] (one hit at rank 3).
    # Expected: ranks 2-4 hold {1, 2, 3} in random order; 2 of the 3 are targets, 2 slots in the top 3.
    scores = [[3.0, 2.0, 2.0, 2.0, 1.0, 1.0]]
    es = _eval_set([[]], [[2, 3]])
    metrics = [f"{m}@3" for m in ACCURACY]
    index = evaluate(_model(scores), es, metrics=metrics, n_boot=0, progress=False)
    exp = evaluate(_model(scores), es, metrics=metrics, n_boot=0, ties="expected", progress=False)
    assert index.per_user["ndcg@3"][0] == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    got = {m: exp.per_user[f"{m}@3 (ties-expected)"][0] for m in ACCURACY}
    # each of ranks 2 and 3 holds a target with probability 2/3
    assert got["recall"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert got["precision"] == pytest.approx((4 / 3) / 3)
    # 2 slots out of 3 items with 2 targets: at least one target is always in
    assert got["hr"] == pytest.approx(1.0)
    assert got["ndcg"] == pytest.approx((2 / 3) * (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    # the non-target is first of the three with prob 1/3 (first hit at rank 3), else first hit at rank 2
    assert got["mrr"] == pytest.approx(1 / 3 * 1 / 3 + 2 / 3 * 1 / 2)
    # AP sums: non-target at rank 2 -> 1/3; at rank 3 -> 1/2; at rank 4 -> 1/2 + 2/3; mean 2/3;
    # 2 relevant, K = 3: both conventions divide by 2
    assert got["map"] == pytest.approx((2 / 3) / 2)
    assert got["map_trec"] == pytest.approx((2 / 3) / 2)
    assert exp.settings["ties"] == "expected" and exp.settings["ties_scope"].startswith("catalog")
    assert index.settings["ties"] == "index" and "lower item index" in index.settings["ties_rule"]
    assert exp.settings["map_denominator"]["map_trec"].startswith("n_relevant")


def _orderings(row, allowed):
    items = [i for i in range(len(row)) if allowed[i]]
    levels = sorted({row[i] for i in items}, reverse=True)
    blocks = [[i for i in items if row[i] == v] for v in levels]
    for combo in itertools.product(*(itertools.permutations(b) for b in blocks)):
        yield [i for block in combo for i in block]


def _reference(scores, histories, targets, k, pop, tail, info, unit):
    """Exact expectation by enumerating every order of the tied items, one user at a time."""
    n_items = len(scores[0])
    per_user = {m: [] for m in (*ACCURACY, "avg_popularity", "aplt", "novelty", "ild")}
    membership = np.zeros((len(scores), n_items))
    for u, (row, hist, tgt) in enumerate(zip(scores, histories, targets)):
        allowed = [i not in set(hist) for i in range(n_items)]
        rel = set(tgt)
        acc = {m: [] for m in per_user}
        orders = list(_orderings(row, allowed))
        for order in orders:
            top = order[:k]
            membership[u, top] += 1 / len(orders)
            gains = [1.0 if i in rel else 0.0 for i in top]
            acc["recall"].append(sum(gains) / len(rel))
            acc["precision"].append(sum(gains) / k)
            acc["hr"].append(float(any(gains)))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            acc["ndcg"].append(sum(g / math.log2(r + 2) for r, g in enumerate(gains)) / idcg)
            first = next((r for r, g in enumerate(gains) if g), None)
            acc["mrr"].append(0.0 if first is None else 1 / (first + 1))
            ap = sum(sum(gains[: r + 1]) / (r + 1) for r, g in enumerate(gains) if g)
            acc["map"].append(ap / min(len(rel), k))
            acc["map_trec"].append(ap / len(rel))
            acc["avg_popularity"].append(np.mean(pop[top]))
            acc["aplt"].append(np.mean(tail[top]))
            acc["novelty"].append(np.mean(info[top]))
            sims = [unit[a] @ unit[b] for a, b in itertools.permutations(top, 2)]
            acc["ild"].append(1 - np.mean(sims))
        for m, values in acc.items():
            per_user[m].append(np.mean(values))
    return per_user, membership


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_rule_equals_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 12, 8, 4
    scores = rng.integers(0, 3, size=(n_users, n_items)).astype(float)  # large tie blocks on purpose
    hist = [list(rng.choice(n_items, rng.integers(0, 3), replace=False)) for _ in range(n_users)]
    tgt = [list(rng.choice(np.setdiff1d(np.arange(n_items), h), rng.integers(1, 4), replace=False)) for h in hist]
    pop = rng.integers(0, 20, n_items).astype(float)
    vectors = rng.integers(0, 2, size=(n_items, 3)).astype(float)
    vectors[0] = 0  # an item with no genre
    metrics = [f"{m}@{k}" for m in (*ACCURACY, "avg_popularity", "aplt", "novelty", "ild", "coverage", "gini")]
    res = evaluate(
        _model(scores),
        _eval_set(hist, tgt),
        metrics=metrics,
        n_boot=0,
        ties="expected",
        item_popularity=pop,
        n_train_users=30,
        item_vectors=vectors,
        batch_size=5,
        progress=False,
    )
    from trustrec.eval import long_tail_mask, novelty

    tail = long_tail_mask(pop).astype(float)
    info = novelty(np.arange(n_items)[:, None], pop, 30)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    ref, membership = _reference(scores, hist, tgt, k, pop, tail, info, unit)
    for m, values in ref.items():
        np.testing.assert_allclose(res.per_user[f"{m}@{k} (ties-expected)"], values, atol=1e-12, err_msg=m)
    shown = 1 - np.prod(1 - membership, axis=0)
    assert res.aggregates[f"coverage@{k} (ties-expected)"] == pytest.approx(shown.mean())
    from trustrec.eval import gini

    assert res.aggregates[f"gini@{k} (ties-expected)"] == pytest.approx(gini(membership.sum(0)))


def test_without_ties_both_rules_agree():
    rng = np.random.default_rng(4)
    scores = rng.random((30, 25))
    hist = [list(rng.choice(25, 3, replace=False)) for _ in range(30)]
    tgt = [list(rng.choice(np.setdiff1d(np.arange(25), h), 2, replace=False)) for h in hist]
    metrics = [f"{m}@5" for m in ACCURACY] + ["coverage@5", "gini@5"]
    a = evaluate(_model(scores), _eval_set(hist, tgt), metrics=metrics, n_boot=0, progress=False)
    b = evaluate(_model(scores), _eval_set(hist, tgt), metrics=metrics, n_boot=0, ties="expected", progress=False)
    for m in metrics[:-2]:
        np.testing.assert_allclose(b.per_user[f"{m} (ties-expected)"], a.per_user[m], atol=1e-12)
    for m in metrics[-2:]:
        assert b.aggregates[f"{m} (ties-expected)"] == pytest.approx(a.aggregates[m])


class _ListOnly(PrecomputedScores):
    capabilities = frozenset({"uses_history"})  # no full-catalog scores: lists only


def test_list_only_models_state_the_narrower_scope_and_bad_rule_raises():
    scores = [[3.0, 2.0, 2.0, 2.0, 1.0, 1.0]]
    es = _eval_set([[]], [[2, 3]])
    model = _ListOnly(np.asarray(scores)).fit(toy_dataset(n_users=3, n_items=6, n_inter=20), FitOptions(progress=False))
    res = evaluate(model, es, metrics=["recall@3"], n_boot=0, ties="expected", progress=False)
    assert res.settings["ties_scope"].startswith("list")
    # seen in the list only: ranks 2-3 hold 2 tied items with 1 target (item 2) -> 1/2 each, recall 1/2
    assert res.per_user["recall@3 (ties-expected)"][0] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="ties"):
        evaluate(model, es, metrics=["recall@3"], ties="random", progress=False)
