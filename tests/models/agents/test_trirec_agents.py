"""TriRec stage 1: what each promotion mode asks the item agents, ads reaching the user agent,
ranking by the user agent's scores, stage 2 composed over it, and the recommender contract."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pytest

from tests.models.agents.helpers import candidate_queries
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, make_model
from trustrec.models.agents import PROMOTIONS, TriRecRecommender
from trustrec.models.llm import LLMBackend
from trustrec.testing import RecommenderChecks

OPTS = FitOptions(seed=0, progress=False)


class Seller(LLMBackend):
    """Item agents write "BUY <title>"; the user agent likes an item in proportion to how many
    times its ad says "amazing" (so ads move the scores), and the user of the first history it
    ever reads likes nothing."""

    def __init__(self, praise: dict[str, int]):
        self.praise = praise
        self.prompts: list[str] = []

    def _score_pairs(self, prompts, continuations):
        self.prompts.extend(prompts)
        out = []
        for p, c in zip(prompts, continuations, strict=True):
            ad = re.search(r"Its ad: (.*)", p)
            liking = ad.group(1).count("amazing") if ad else 0
            out.append(float(liking) if c == "Yes" else 0.5)
        return out, [1] * len(prompts)

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        self.prompts.extend(prompts)
        out = []
        for p in prompts:
            title = re.search(r"Product(?: \(the ONLY facts you may state\))?: (.+)", p).group(1)
            out.append(f"BUY {title} " + " ".join(["amazing"] * self.praise.get(title, 0)))
        return out


def _trirec(split, backend, **params) -> TriRecRecommender:
    model = TriRecRecommender(prior={"name": "most_popular"}, template={"chat": False}, **params)
    model.fit(split, OPTS)
    model._backend = backend
    return model


def test_ads_move_the_user_agent_and_the_ranking_follows_its_scores(split):
    queries, cands = candidate_queries(split, n=4, width=5)
    probe = _trirec(split, Seller({}))
    titles = probe._view().items(range(probe.n_items_))
    praised = int(cands[0][3])
    model = _trirec(split, Seller({titles[praised]: 3}), promotion="full")
    rounds = model.promote(queries)
    first = rounds[0]
    assert sorted(first.listed.tolist()) == sorted(int(i) for i in cands[0])
    at = first.listed.tolist().index(praised)
    assert first.ads[at] == f"BUY {titles[praised]} amazing amazing amazing"
    np.testing.assert_allclose(first.scores[at], 3.0 - 0.5)
    top = model.recommend(queries, 3)
    assert top.items[0, 0] == praised and top.scores[0, 0] == pytest.approx(2.5)
    # the other candidates tie: they follow the prior's order
    rest = [i for i in first.prior_order.tolist() if i != praised][:2]
    assert top.items[0, 1:].tolist() == rest
    # without promotion the user agent reads the catalog text and nobody is praised
    plain = _trirec(split, Seller({titles[praised]: 3}), promotion="none").promote(queries)[0]
    assert plain.ads[at] == titles[praised] and np.allclose(plain.scores, -0.5)


def test_each_promotion_mode_asks_for_what_it_should(split):
    queries, _ = candidate_queries(split, n=1, width=5)
    prompts = {}
    for mode in PROMOTIONS:
        backend = Seller({})
        _trirec(split, backend, promotion=mode).promote(queries)
        prompts[mode] = [p for p in backend.prompts if "promotion agent" in p]
    assert prompts["none"] == []
    history_line = _trirec(split, Seller({}))._view().history(queries.query(0)).replace("\n", "; ")
    assert all(history_line in p for p in prompts["full"] + prompts["grounded"])
    assert all("a typical user with broad tastes" in p and history_line not in p for p in prompts["generic"])
    assert all("ONLY facts" in p for p in prompts["grounded"]) and not any("ONLY facts" in p for p in prompts["full"])
    assert len(prompts["full"]) == 5  # one ad per candidate


def test_stage_two_composes_over_stage_one(split):
    queries, _ = candidate_queries(split, n=4, width=5)
    reranker = make_model(
        "trirec_reranker",
        base={"name": "trirec", "params": {"prior": {"name": "most_popular"}, "template": {"chat": False}}},
        n_candidates=5,
        strength=0.5,
    )
    reranker.fit(split, OPTS)
    reranker.base_._backend = Seller({})
    stage1 = reranker.base_.recommend(queries, 5)
    both = reranker.recommend(queries, 5)
    for q in range(len(queries)):
        assert sorted(both.items[q].tolist()) == sorted(stage1.items[q].tolist())


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="unknown slot"):
        make_model("trirec", prompts={"item_full": "{item} {nope}"})
    with pytest.raises(ConfigError, match="prior"):
        make_model("trirec", prior={"name": "flow"})
    with pytest.raises(ConfigError, match="promotion"):
        make_model("trirec", promotion="aggressive")


def test_stage_one_is_seeded_and_repeatable_on_the_tiny_model(split):
    queries, _ = candidate_queries(split, n=3, width=5)
    params = {"model": "tiny-smollm2-random", "prior": {"name": "most_popular"}, "ad_tokens": 6}
    params["template"] = {"chat": False}
    a = make_model("trirec", **params).fit(split, OPTS).promote(queries)
    b = make_model("trirec", **params).fit(split, OPTS).promote(queries)
    assert [r.ads for r in a] == [r.ads for r in b]
    np.testing.assert_allclose([r.scores for r in a], [r.scores for r in b])
    assert all(np.isfinite(r.scores).all() for r in a)


class TestTriRecChecks(RecommenderChecks):
    component = TriRecRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {
            "model": "tiny-smollm2-random",
            "prior": {"name": "most_popular"},
            "n_candidates": 4,
            "ad_tokens": 3,
            "max_history_tokens": 48,
            "template": {"chat": False},
        }
    ]
