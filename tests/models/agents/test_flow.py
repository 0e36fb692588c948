"""FLOW: replies read or refused, episodes on a scripted backend (stop at acceptance, memories,
fallbacks), seeded repeatability and the recommender contract on the tiny random model."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import numpy as np
import pytest

from tests.models.agents.helpers import candidate_queries
from trustrec.errors import ConfigError, DataError
from trustrec.models import FitOptions, make_model
from trustrec.models.agents import (
    FlowRecommender,
    PreferenceSimulator,
    ReplyError,
    UserSimulator,
    acceptance_probabilities,
    match_candidate,
    parse_json_reply,
)
from trustrec.models.agents._flow import _trim
from trustrec.models.llm import LLMBackend
from trustrec.testing import RecommenderChecks

OPTS = FitOptions(seed=0, progress=False)


# -- replies -------------------------------------------------------------------------------
def test_parse_json_reply_reads_fenced_and_embedded_objects():
    assert parse_json_reply('```json\n{"item": "A", "reason": "r"}\n```', ("item", "reason")) == {
        "item": "A",
        "reason": "r",
    }
    text = 'Sure! {"note": 1} then {"item": "B", "reason": 3, "extra": [1]} done'
    assert parse_json_reply(text, ("item", "reason")) == {"item": "B", "reason": "3"}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("no json here", "no JSON object"),
        ('{"item": "A"}', r"lacks the field\(s\) \['reason'\]"),
        ('{"item": "A", "reason": null}', "lacks the field"),
        ('["item", "reason"]', "no JSON object"),
        ('{"item": "A", "reason": "r"', "no JSON object"),
        ("x" * 30_000, "over the limit"),
    ],
)
def test_parse_json_reply_refuses_what_it_cannot_read(reply, message):
    with pytest.raises(ReplyError, match=message):
        parse_json_reply(reply, ("item", "reason"))


def test_match_candidate_exact_loose_ambiguous_and_unknown():
    texts = ["Toy Story (1995)", "Heat (1995)", "Heat Wave", "item 1", "item 10"]
    assert match_candidate('  "toy story (1995)". ', texts) == 0
    assert match_candidate("Toy Story", texts) == 0  # a cut title
    assert match_candidate("item 1", texts) == 3  # exact beats the loose match with "item 10"
    with pytest.raises(ReplyError, match="matches 2 candidates"):
        match_candidate("Heat", texts)
    with pytest.raises(ReplyError, match="not among the candidates"):
        match_candidate("Jaws", texts)
    with pytest.raises(ReplyError, match="empty title"):
        match_candidate("  ", texts)


def test_memory_trim_keeps_the_newest_rounds_within_budget():
    memory = ["a" * 10, "b" * 10, "c" * 10]
    assert _trim(memory, 21) == ["b" * 10, "c" * 10]  # 10 + 1 separator + 10
    assert _trim(memory, 20) == ["c" * 10]
    cut = _trim(["x" * 50], 8)
    assert len(cut) == 1 and len(cut[0]) == 8 and cut[0].endswith("…")


# -- a scripted backend: the protocol's logic without a model's noise -----------------------------
class ScriptedBackend(LLMBackend):
    """Rec agent: prefers titles in ``preference`` order. User agent: says No (``_likes``).
    JSON replies come from ``replies`` (a function of the prompt) when given; reasons otherwise."""

    def __init__(self, preference: list[str], replies=None):
        self.preference = preference
        self.replies = replies
        self.prompts: list[str] = []

    def _likes(self, prompt: str) -> bool:
        return False

    def _score_pairs(self, prompts, continuations):
        out = []
        for p, c in zip(prompts, continuations):
            self.prompts.append(p)
            if c in ("Yes", "No"):
                out.append(-0.1 if (c == "Yes") == self._likes(p) else -3.0)
            else:
                out.append(-float(self.preference.index(c)) if c in self.preference else -99.0)
        return out, [1] * len(prompts)

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        self.prompts.extend(prompts)
        if self.replies is not None:
            return [self.replies(p) for p in prompts]
        return ["because it fits\nignored" for _ in prompts]


def _flow(split, backend=None, **params) -> FlowRecommender:
    """A fitted FLOW over a scripted backend (the real one is never built)."""
    model = FlowRecommender(prior={"name": "most_popular"}, template={"chat": False}, **params)
    model.fit(split, OPTS)
    model._backend = backend if backend is not None else ScriptedBackend([])
    return model


class _PerUser(ScriptedBackend):
    """The user agent likes one title per episode, recognised by the history text it reads."""

    def __init__(self, preference, liked_by_history: dict[str, str], replies=None):
        super().__init__(preference, replies)
        self.liked_by_history = liked_by_history

    def _likes(self, prompt: str) -> bool:
        shown = re.search(r"You are recommended: (.+)", prompt)
        if not shown:
            return False
        history = prompt.split("oldest first:\n", 1)[1].split("\n\n", 1)[0]
        return self.liked_by_history.get(history) == shown.group(1).strip()


def _history_text(model, queries, q) -> str:
    return model._view().history(queries.query(q))


def test_episode_stops_at_acceptance_and_memories_hold_only_what_was_said(split):
    queries, cands = candidate_queries(split, n=6, width=6)
    model = _flow(split, max_rounds=5, reason_tokens=4)
    titles = model._view().items(range(model.n_items_))
    preference = titles[::-1]  # the agent proposes higher item indices first
    proposals_order = [sorted(map(int, c), reverse=True) for c in cands]
    # user q likes its candidate proposed in round (q % 4) + 1; the last user likes nothing
    liked = {}
    for q in range(len(queries) - 1):
        liked[_history_text(model, queries, q)] = titles[proposals_order[q][q % 4]]
    backend = _PerUser(preference, liked)
    model._backend = backend
    episodes = model.run_episodes(queries)
    for q, e in enumerate(episodes[:-1]):
        target = proposals_order[q][q % 4]
        assert [r.item for r in e.rounds] == proposals_order[q][: q % 4 + 1]
        assert e.accepted and e.final_item == target and len(e.rounds) == q % 4 + 1
        assert all(not r.accepted for r in e.rounds[:-1])
        # memories: one entry per declined round, naming only the declined proposals
        assert len(e.rec_memory) == len(e.user_memory) == q % 4
        assert not any(titles[target] + " (" in m for m in (*e.rec_memory, *e.user_memory))
        assert all("because it fits" in m for m in e.rec_memory)
        top = model.recommend(queries[[q]], 3).items[0]
        assert top[0] == target
    last = episodes[-1]
    assert not last.accepted and len(last.rounds) == 5 and last.final_item == last.rounds[-1].item
    assert len({r.item for r in last.rounds}) == 5  # a declined item is never proposed again
    # the user agent never reads a candidate list, only what it is recommended
    user_prompts = [p for p in backend.prompts if "You are recommended:" in p]
    assert user_prompts and not any("Candidates:" in p for p in user_prompts)


def test_max_rounds_one_is_the_agent_alone(split):
    queries, _ = candidate_queries(split, n=6, width=6)
    model = _flow(split, max_rounds=1, reasons=False)
    titles = model._view().items(range(model.n_items_))
    model._backend = ScriptedBackend(titles)
    for e in model.run_episodes(queries):
        assert len(e.rounds) == 1 and e.first_item == e.final_item
        assert e.rounds[0].rec_reason == "" and e.rounds[0].user_reason == ""


def test_memory_over_budget_drops_the_oldest_rounds(split):
    queries, _ = candidate_queries(split, n=2, width=6)
    model = _flow(split, max_rounds=5, max_memory_chars=120)
    titles = model._view().items(range(model.n_items_))
    model._backend = ScriptedBackend(titles)
    for e in model.run_episodes(queries):
        assert len(e.rounds) == 5
        assert 0 < len("\n".join(e.rec_memory)) <= 120 and len(e.rec_memory) < 4
        assert "round 5" in e.rec_memory[-1] and "round 1:" not in "".join(e.rec_memory)


def test_text_protocol_reads_replies_and_falls_back_on_malformed_ones(split):
    queries, _ = candidate_queries(split, n=4, width=6)
    model = _flow(split, decision="text", max_rounds=3)

    def replies(prompt: str) -> str:
        later = "round 1:" in prompt  # a memory entry exists: round 2 or later
        if '"answer"' in prompt:  # the user agent
            return '{"reason": "fine", "answer": "Yes"}' if later else '{"reason": "meh", "answer": "maybe"}'
        if later:
            listed = prompt.split("Candidates:\n", 1)[1].split("\n")[0].removeprefix("- ")
            reply = json.dumps({"reason": "close to your taste", "item": listed.upper()})
            return f"Here you go:\n```json\n{reply}\n```"
        return '{"reason": "x", "item": "Not A Candidate"}'

    model._backend = ScriptedBackend([], replies)
    episodes = model.run_episodes(queries)
    prior = model.candidate_lists(model._prepare(queries))[0]
    for q, e in enumerate(episodes):
        r1, r2 = e.rounds
        # round 1: the agent names no candidate -> the prior's best; the user's "maybe" -> a decline
        assert r1.rec_error is not None and "not among the candidates" in r1.rec_error
        assert r1.item == int(prior[q][0])
        assert r1.user_error is not None and "neither yes nor no" in r1.user_error and not r1.accepted
        # round 2: a fenced, upper-cased title is read; the user's "Yes" ends the episode
        first_listed = next(int(i) for i in e.listed if int(i) != r1.item)
        assert r2.rec_error is None and r2.item == first_listed and r2.rec_reason == "close to your taste"
        assert r2.accepted and r2.user_error is None and e.accepted


def test_episodes_are_seeded_and_repeatable_on_the_tiny_model(split):
    queries, _ = candidate_queries(split, n=6, width=6)
    params = {
        "model": "tiny-smollm2-random",
        "prior": {"name": "most_popular"},
        "max_rounds": 3,
        "reason_tokens": 4,
        "template": {"chat": False},
    }
    a = make_model("flow", **params).fit(split, OPTS).run_episodes(queries)
    b = make_model("flow", **params).fit(split, OPTS).run_episodes(queries)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    c = make_model("flow", **params).fit(split, FitOptions(seed=1, progress=False)).run_episodes(queries)
    assert [e.listed.tolist() for e in a] != [e.listed.tolist() for e in c]  # the seed moves the listing
    for e in a:
        assert sorted(e.listed.tolist()) == sorted(e.prior_order.tolist())


def test_bad_settings_and_inputs_are_refused(split):
    with pytest.raises(ConfigError, match="unknown slot"):
        make_model("flow", prompts={"rec_user": "{history} {nope}"})
    with pytest.raises(ConfigError, match="prior"):
        make_model("flow", prior={"name": "flow"})
    with pytest.raises(ConfigError, match=r"rec_sistem|extra"):
        make_model("flow", prompts={"rec_sistem": "x"})
    model = _flow(split, ScriptedBackend([]))
    q = split.eval_set("test").queries[:2]
    with pytest.raises(DataError, match="outside the catalog"):
        model.user_agent().judge(q, np.array([0, 999]))
    with pytest.raises(DataError, match="one integer item index per query"):
        model.user_agent().judge(q, np.array([0]))


def test_preference_simulator_is_the_feedback_loops_acceptance(split):
    prefs = make_model("most_popular").fit(split, OPTS)
    queries = split.eval_set("test").queries[:5]
    sim = PreferenceSimulator(prefs, accept_max=0.4, sharpness=3.0)
    assert isinstance(sim, UserSimulator)
    matrix = acceptance_probabilities(np.asarray(prefs.score(queries)), accept_max=0.4, sharpness=3.0)
    np.testing.assert_allclose(sim.acceptance_matrix(queries, batch_size=2), matrix)
    items = np.array([0, 3, 5, 7, 9])
    np.testing.assert_allclose(sim.accept_probability(queries, items), matrix[np.arange(5), items])
    with pytest.raises(DataError, match="item index -1"):
        sim.accept_probability(queries, np.array([0, -1, 0, 0, 0]))


def test_user_agent_is_a_simulator_with_probabilities(split):
    model = _flow(split)
    titles = model._view().items(range(model.n_items_))
    queries = split.eval_set("test").queries[:2]
    liked = {_history_text(model, queries, 0): titles[3]}
    model._backend = _PerUser(titles, liked)
    agent = model.user_agent()
    assert isinstance(agent, UserSimulator)
    p = agent.accept_probability(queries, np.array([3, 3]))
    assert p[0] == pytest.approx(1 / (1 + np.exp(-2.9))) and p[1] == pytest.approx(1 / (1 + np.exp(2.9)))


class TestFlowChecks(RecommenderChecks):
    component = FlowRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {
            "model": "tiny-smollm2-random",
            "prior": {"name": "most_popular"},
            "n_candidates": 4,
            "max_rounds": 2,
            "reason_tokens": 3,
            "max_history_tokens": 48,
            "template": {"chat": False},
        }
    ]


class _LengthBackend(ScriptedBackend):
    """Every candidate text scores -0.5 per token, a token per character: long texts win on the
    mean and lose on the sum."""

    def _score_pairs(self, prompts, continuations):
        if all(c not in ("Yes", "No") for c in continuations):
            return [-0.5 * len(c) for c in continuations], [len(c) for c in continuations]
        return super()._score_pairs(prompts, continuations)


def test_score_reduction_chooses_how_a_candidate_likelihood_is_read(split):
    queries, cands = candidate_queries(split, n=3, width=4)
    cands = np.asarray(cands)
    for reduction in ("mean", "sum"):
        model = _flow(split, _LengthBackend([]), max_rounds=1, reasons=False, score_reduction=reduction)
        titles = model._view().items(range(model.n_items_))
        proposed = model.rec_agent().propose(queries, cands, [[] for _ in range(len(queries))], cands[:, 0]).items
        lengths = [[len(titles[i]) for i in row] for row in cands]
        assert any(len(set(lens)) > 1 for lens in lengths)  # the sum has something to tell apart
        if reduction == "mean":  # every candidate scores -0.5 per token: the first listed wins the tie
            assert proposed.tolist() == cands[:, 0].tolist()
        else:  # the shortest text wins (ties: the first listed)
            assert proposed.tolist() == [int(row[int(np.argmin(lens))]) for row, lens in zip(cands, lengths)]
    with pytest.raises(ConfigError):
        FlowRecommender(score_reduction="max")
