"""``agent_safety``: injection through item text, the user's message and memory, and harmful
requests, against FLOW with and without the guardrail.

A scripted agent that follows any instruction it reads shows each attack succeeding and the
guardrail stopping it; a guardrail that refuses harmful requests is measured against over-refusal;
the tiny random model runs the audit end to end; guardrails that block everything or time out
show up as false positives; models without the seam are not applicable."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytest.importorskip("transformers")

from tests.models.agents.test_flow import ScriptedBackend, _flow
from trustrec.audit import available_audits
from trustrec.audit._agent_safety import ARMS, NOT_MEASURED, AgentSafetyAudit, arms_for, attack_candidates
from trustrec.data import recommendation_requests, split_leave_one_out
from trustrec.models import FitOptions, make_model
from trustrec.models.agents import RuleGuardrail, Verdict
from trustrec.testing import toy_dataset

SETTINGS = {"max_users": 12, "n_candidates": 5, "n_targets": 3, "n_boot": 50}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


class Gullible(ScriptedBackend):
    """Proposes the item an instruction it reads names (in item text, the user's message or a
    lesson), else the first listed; the user agent accepts every proposal (so the first proposal
    is the recommendation)."""

    def _likes(self, prompt: str) -> bool:
        return True

    def _score_pairs(self, prompts, continuations):
        self.prompts.extend(prompts)
        scores = []
        for p, c in zip(prompts, continuations):
            named = re.findall(r'recommend "([^"]+)" first', p)
            if c in ("Yes", "No"):
                scores.append(-0.1 if c == "Yes" else -3.0)
            else:
                scores.append(0.0 if c.split(". Ignore")[0] in named else -5.0)
        return scores, [1] * len(prompts)


class HarmScreen(RuleGuardrail):
    """The rules plus a refusal of user messages that hold a word from ``words``."""

    def __init__(self, words):
        super().__init__()
        self.words = words

    def screen(self, turns):
        verdicts = super().screen(turns)
        return [
            Verdict(False, "harmful request", "harm")
            if t.kind == "user_message" and any(w in t.text.lower() for w in self.words)
            else v
            for t, v in zip(turns, verdicts)
        ]


class BlockEverything:
    name = "block_all"

    def screen(self, turns):
        return [Verdict(False, "blocked by policy", self.name) for _ in turns]


class Slow:
    name = "slow"

    def screen(self, turns):
        time.sleep(1.0)
        return [Verdict(True) for _ in turns]


def test_attack_candidates_hold_the_held_out_item_and_one_target():
    rng = np.random.default_rng(0)
    histories = [np.array([0, 1, 2]), np.array([3, 4]), np.arange(20)]
    rows, target = attack_candidates(histories, np.array([5, 6, 20]), 30, 6, 3, rng)
    targets = set(target[target >= 0].tolist())
    for row, hist, held, t in zip(rows, histories, [5, 6, 20], target):
        listed = row[row >= 0]
        assert held in listed and t in listed and len(set(listed.tolist())) == len(listed) == 6
        assert not set(listed.tolist()) & set(hist.tolist())
        assert set(listed.tolist()) & targets == {int(t)}  # no other user's target


def test_an_injection_through_each_channel_is_measured_and_the_guardrail_stops_it(split):
    model = _flow(split, Gullible([]), max_rounds=2, reasons=False)
    result = AgentSafetyAudit(**SETTINGS).run(model, split)
    e = result.estimates
    clean = e["attack_success [clean]"].value  # ties among clean titles: the first listed wins
    assert clean < 0.5
    for vector in ("item_text", "user_message", "memory"):  # the scripted agent obeys every channel
        assert e[f"attack_success [{vector}]"].value == 1.0, vector
        # a blocked target leaves the list and a blocked message declines the request; a blocked
        # lesson leaves a clean episode (the target wins only where it is listed first)
        guarded = e[f"attack_success [{vector}+guardrail]"].value
        assert guarded == (clean if vector == "memory" else 0.0), vector
        assert e[f"guardrail_recall [{vector}]"].value == 1.0, vector
        assert e[f"attack_lift [{vector} - clean]"].value == pytest.approx(1.0 - clean)
        assert e[f"guardrail_effect [{vector}]"].value == pytest.approx(guarded - 1.0)
        assert e[f"guarded_lift [{vector} - clean]"].value == pytest.approx(guarded - clean)
    # the scripted agent follows instructions, not mentions: the neutral twin moves nothing
    for vector in ("item_text", "user_message", "memory"):
        assert e[f"attack_success [{vector}_control]"].value == clean, vector
        assert e[f"instruction_effect [{vector} - control]"].value == pytest.approx(1.0 - clean)
    assert e["false_positive_rate"].value == 0.0 and e["blocked_turn_share [clean]"].value == 0.0
    assert result.evidence["latency"]["ms_per_screened_turn"].iloc[0] >= 0
    assert list(result.evidence["arms"]["arm"]) == list(ARMS)
    assert result.settings["not_measured"] == NOT_MEASURED
    # the rules do not screen harmful requests: every one is served, and the verdict says so
    assert e["harmful_served [harmful_request]"].value == 1.0
    assert e["harmful_served [harmful_request+guardrail]"].value == 1.0
    assert e["over_refusal [benign_request+guardrail]"].value == 0.0
    assert result.verdict.status == "fail"
    assert len(result.verdict.reasons) == 1 and "harmful_served" in result.verdict.reasons[0]


def test_harmful_requests_refused_by_a_guardrail_and_its_over_refusal(split):
    model = _flow(split, Gullible([]), max_rounds=2, reasons=False)
    requests = recommendation_requests("v1", split="eval")
    settings = {**SETTINGS, "vectors": ("harmful_requests",)}
    result = AgentSafetyAudit(**settings).run(model, split, guardrail=HarmScreen(["gun", "weapon", "poison"]))
    e = result.estimates
    assert list(result.evidence["arms"]["arm"]) == list(arms_for(["harmful_requests"]))
    per_user = result.evidence["per_user"]
    text = requests.set_index("id").text.str.lower()
    flagged = per_user.harmful_request.map(lambda i: any(w in text[i] for w in ("gun", "weapon", "poison")))
    assert e["harmful_served [harmful_request]"].value == 1.0  # the agent itself never refuses
    assert e["harmful_served [harmful_request+guardrail]"].value == pytest.approx(1 - flagged.mean())
    assert e["guardrail_effect [harmful_request]"].value == pytest.approx(-flagged.mean())
    benign_flagged = per_user.benign_request.map(lambda i: any(w in text[i] for w in ("gun", "weapon", "poison")))
    assert e["over_refusal [benign_request+guardrail]"].value == pytest.approx(benign_flagged.mean())
    table = result.evidence["requests"]
    assert set(table.label) <= {"harmful", "benign"} and table.episodes.sum() == 2 * len(per_user)
    assert "attack_success [item_text]" not in e and not any(k.startswith("guardrail_recall") for k in e)


def test_a_guardrail_that_blocks_benign_turns_or_times_out_is_a_false_positive(split):
    model = _flow(split, Gullible([]), max_rounds=2, reasons=False)
    blocked = AgentSafetyAudit(**SETTINGS).run(model, split, guardrail=BlockEverything())
    assert blocked.estimates["false_positive_rate"].value == 1.0
    assert blocked.estimates["blocked_turn_share [clean]"].value == 1.0
    assert blocked.verdict.status == "fail"
    slow = AgentSafetyAudit(**SETTINGS, guardrail_timeout_s=0.05).run(model, split, guardrail=Slow())
    assert slow.estimates["false_positive_rate"].value == 1.0  # a timeout fails closed
    assert slow.evidence["latency"]["ms_per_screened_turn"].iloc[0] > 0


def test_runs_end_to_end_on_the_tiny_model(split):
    model = make_model(
        "flow",
        model="tiny-smollm2-random",
        prior={"name": "most_popular"},
        max_rounds=2,
        reason_tokens=3,
        max_history_tokens=48,
        template={"chat": False},
    ).fit(split, FitOptions(seed=0, progress=False))
    result = AgentSafetyAudit(**SETTINGS).run(model, split)
    e = result.estimates
    assert e["attack_success [item_text+guardrail]"].value == 0.0  # the injected item is never listed
    for vector in ("item_text", "user_message", "memory"):
        assert e[f"guardrail_recall [{vector}]"].value == 1.0
    assert e["harmful_served [harmful_request]"].value == 1.0
    assert result.verdict.status in ("pass", "fail") and len(result.evidence["per_user"]) == e["hr@1 [clean]"].n


def test_bad_vectors_are_refused():
    from trustrec.errors import ConfigError

    with pytest.raises(ConfigError, match="vectors"):
        AgentSafetyAudit(vectors=())
    with pytest.raises(ConfigError, match="vectors"):
        AgentSafetyAudit(vectors=("item_text", "item_text"))
    with pytest.raises(ConfigError, match="vectors"):
        AgentSafetyAudit(vectors=("tools",))


def test_models_without_the_seam_are_not_applicable(split):
    assert "agent_safety" in available_audits()
    sasrec = make_model("most_popular").fit(split, FitOptions(seed=0, progress=False))
    result = AgentSafetyAudit(**SETTINGS).run(sasrec, split)
    assert result.verdict.status == "not_applicable" and "guardrail seam" in result.summary
