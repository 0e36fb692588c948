"""Agent-as-judge: labelled cases from the catalog check, the judges' look-ups, the JSON tool loop,
and the agreement figures against scikit-learn."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from trustrec.audit.explainability import (
    PLANTED_KINDS,
    CatalogTools,
    ExplanationJudge,
    JudgeVerdicts,
    checked_cases,
    compare_judges,
    judge_agreement,
    planted_cases,
)
from trustrec.errors import DataError
from trustrec.models.llm import LLMBackend

CATALOG = pd.DataFrame(
    {
        "item_id": ["1", "2", "3", "4", "5", "6", "7"],
        "title": ["Toy Story", "Usual Suspects, The", "Star Wars", "Heat", "GoldenEye", "Ed", "Casablanca"],
        "release_year": ["1995", "1995", "1977", "1995", "1995", "1996", "1942"],
        "class": [
            "Animation Children's Comedy",
            "Crime Thriller",
            "Action Adventure Sci-Fi",
            "Action Crime Thriller",
            "Action Adventure Thriller",
            "Comedy",
            "Drama Romance War",
        ],
    }
)
HISTORIES = [np.array([1, 3]), np.array([0, 5]), np.array([2, 4, 1])]
ITEMS = np.array([4, 2, 6])


def test_planted_cases_are_labelled_by_the_check_as_their_kind():
    cases = planted_cases(HISTORIES, ITEMS, CATALOG, seed=0)
    frame = cases.to_frame()
    assert set(frame.kind) == set(PLANTED_KINDS)
    assert not frame.loc[frame.kind == "faithful", "misleading"].any()
    assert frame.loc[frame.kind != "faithful", "misleading"].all()
    # the faithful text names a history item and the item's own facts
    first = frame[(frame.user == 0) & (frame.kind == "faithful")].iloc[0]
    assert first.text.startswith("We recommend GoldenEye because you enjoyed ")
    assert re.search(r"(Usual Suspects|Heat)\.", first.text) and "from 1995" in first.text
    # a wrong year is a year no item here has
    wrong = frame[(frame.user == 0) & (frame.kind == "wrong_year")].iloc[0]
    assert "1995" not in wrong.text and "claims years" in wrong.reason
    assert cases.titles[0] == "GoldenEye"
    again = planted_cases(HISTORIES, ITEMS, CATALOG, seed=0)
    assert again.texts == cases.texts
    assert planted_cases(HISTORIES, ITEMS, CATALOG, seed=1).texts != cases.texts


def test_planted_cases_leave_out_what_cannot_be_written():
    # every attribute value is covered by this user's history and item: no wrong attribute to state
    everything = [np.arange(7)[np.arange(7) != 0]]
    cases = planted_cases(everything, np.array([0]), CATALOG, kinds=["wrong_attribute", "faithful"])
    assert cases.kinds == ["faithful"]
    with pytest.raises(DataError, match="kinds must be among"):
        planted_cases(HISTORIES, ITEMS, CATALOG, kinds=["bogus"])
    with pytest.raises(DataError, match="outside the catalog of 7 items"):
        planted_cases(HISTORIES, np.array([4, 2, 70]), CATALOG)
    with pytest.raises(DataError, match="3 items but 2 histories"):
        planted_cases(HISTORIES[:2], ITEMS, CATALOG)


def test_checked_cases_label_any_text_and_refuse_bad_input():
    texts = ["Because you liked Heat.", "A Drama you will love.", ""]
    cases = checked_cases(texts, ITEMS, HISTORIES, CATALOG)
    assert cases.misleading.tolist() == [False, True, False]
    assert cases.kinds == ["given"] * 3
    with pytest.raises(DataError, match="3 items but 2 texts"):
        checked_cases(texts[:2], ITEMS, HISTORIES, CATALOG)
    with pytest.raises(DataError, match="text 1 is a float"):
        checked_cases(["a", float("nan"), "c"], ITEMS, HISTORIES, CATALOG)
    with pytest.raises(DataError, match="1-D array of item indices"):
        checked_cases(texts, ITEMS.astype(float), HISTORIES, CATALOG)


def test_catalog_tools_look_things_up():
    tools = CatalogTools.from_items(CATALOG)
    assert tools.record(4) == "GoldenEye — genres: Action, Adventure, Thriller; year: 1995"
    assert tools.item("star wars") == tools.record(2)
    assert "no catalog item" in tools.item("Citizen Kane")
    history = HISTORIES[0]
    assert tools.history("Heat", history) == "Heat: the user has interacted with it"
    assert tools.history("Toy Story", history) == "Toy Story: the user has never interacted with it"
    assert tools.profile(history) == ("2 items; genres of its items: Crime 2, Thriller 2, Action 1; years 1995-1995")
    assert "unknown tool" in tools.call("delete", "x", history)
    lines = tools.evidence("We recommend GoldenEye because you enjoyed Toy Story.", 4, history)
    assert lines[0] == f"Recommended item: {tools.record(4)}"
    assert lines[1].endswith("the user has never interacted with it") and lines[1].startswith("Named: Toy Story")
    assert lines[2].startswith("The user's history: 2 items")


class EvidenceReader(LLMBackend):
    """Says No when what the judge looked up shows a never-seen item or the explanation names
    a genre the evidence lacks; otherwise Yes. JSON: looks up the history of the cited title, then
    answers from what the tool said."""

    def __init__(self):
        self.prompts: list[str] = []

    def _doubt(self, prompt: str) -> bool:
        return "never interacted" in prompt

    def _score_pairs(self, prompts, continuations):
        self.prompts.extend(prompts)
        return [(-0.2 if (c == "No") == self._doubt(p) else -2.0) for p, c in zip(prompts, continuations)], [1] * len(
            prompts
        )

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        self.prompts.extend(prompts)
        out = []
        for p in prompts:
            if "You called" not in p:
                cited = re.search(r"you enjoyed (.+?)\.", p).group(1)
                out.append(json.dumps({"tool": "history", "argument": cited}))
            else:
                out.append(
                    '```json\n{"reason": "looked it up", "answer": "%s"}\n```' % ("no" if self._doubt(p) else "yes")
                )
        return out


def _citation_cases():
    return planted_cases(HISTORIES, ITEMS, CATALOG, kinds=["faithful", "outside_citation"], seed=0)


def test_the_tool_judge_reads_what_it_looked_up_and_the_text_judge_cannot():
    cases = _citation_cases()
    backend = EvidenceReader()
    text = ExplanationJudge(backend=backend, chat=False).judge(cases)
    tools = ExplanationJudge(backend=backend, tools=CatalogTools.from_items(CATALOG), chat=False).judge(cases)
    assert tools.flagged.tolist() == cases.misleading.tolist()
    assert not text.flagged.any() and (text.tool_calls == 0).all()
    assert (tools.tool_calls == 3).all()  # item record, the cited title, the history profile
    np.testing.assert_allclose(tools.score, np.where(cases.misleading, 1.8, -1.8))
    assert all("What the catalog" not in p for p in backend.prompts[: len(cases)])
    agreement = judge_agreement(cases, tools, n_boot=50)
    assert agreement.loc["accuracy", "value"] == 1.0 and agreement.loc["auc", "value"] == 1.0
    diff = compare_judges(cases, tools, text, n_boot=50)
    assert diff.loc["accuracy", "difference"] == pytest.approx(0.5)
    # McNemar: the tool judge alone is right on the 3 misleading cases, neither alone elsewhere
    assert diff.loc["accuracy", "p_value"] == pytest.approx(0.25)


def test_a_json_judge_chooses_its_tool_calls_then_answers():
    cases = _citation_cases()
    backend = EvidenceReader()
    judge = ExplanationJudge(backend=backend, tools=CatalogTools.from_items(CATALOG), decision="text", chat=False)
    verdicts = judge.judge(cases)
    assert verdicts.flagged.tolist() == cases.misleading.tolist()
    assert (verdicts.tool_calls == 1).all() and verdicts.errors == [None] * len(cases)
    assert all(e.startswith("You called history(") for e in verdicts.evidence)
    assert np.isinf(verdicts.score).all()


class Unreadable(LLMBackend):
    def __init__(self, reply):
        self.reply = reply

    def _score_pairs(self, prompts, continuations):
        raise NotImplementedError

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        return [self.reply] * len(prompts)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("I think it is fine", "no JSON object"),
        ('{"answer": "maybe"}', "neither yes nor no"),
        ('{"tool": "profile", "argument": ""}', "no answer after 2 tool calls"),
    ],
)
def test_unreadable_judges_are_recorded_never_crash(reply, error):
    cases = _citation_cases()
    judge = ExplanationJudge(
        backend=Unreadable(reply), tools=CatalogTools.from_items(CATALOG), decision="text", max_steps=2, chat=False
    )
    verdicts = judge.judge(cases)
    assert not verdicts.flagged.any() and np.isnan(verdicts.score).all()
    assert all(error in e for e in verdicts.errors)
    assert judge_agreement(cases, verdicts, n_boot=20).loc["unreadable_rate", "value"] == 1.0


def test_judge_agreement_equals_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    cases = planted_cases([rng.choice(7, 3, replace=False) for _ in range(40)], rng.integers(0, 7, 40), CATALOG)
    labels = cases.misleading
    score = rng.normal(size=len(cases)) + labels
    score[:3] = np.nan  # unreadable: ranks lowest, not flagged
    verdicts = JudgeVerdicts(score > 0.5, score, np.zeros(len(cases)), [None] * len(cases), [""] * len(cases))
    got = judge_agreement(cases, verdicts, n_boot=200)
    flagged = verdicts.flagged
    assert got.loc["accuracy", "value"] == pytest.approx(metrics.accuracy_score(labels, flagged))
    assert got.loc["balanced_accuracy", "value"] == pytest.approx(metrics.balanced_accuracy_score(labels, flagged))
    assert got.loc["precision", "value"] == pytest.approx(metrics.precision_score(labels, flagged))
    assert got.loc["recall", "value"] == pytest.approx(metrics.recall_score(labels, flagged))
    assert got.loc["f1", "value"] == pytest.approx(metrics.f1_score(labels, flagged))
    assert got.loc["auc", "value"] == pytest.approx(metrics.roc_auc_score(labels, np.nan_to_num(score, nan=-1e9)))
    assert got.loc["f1", "low"] <= got.loc["f1", "value"] <= got.loc["f1", "high"]
    with pytest.raises(DataError, match="verdicts"):
        judge_agreement(cases, JudgeVerdicts(flagged[:3], score[:3], np.zeros(3), [None] * 3, [""] * 3))


def test_judges_run_on_the_tiny_model():
    pytest.importorskip("transformers")
    from trustrec.models.llm import LLMConnection

    tiny_backend = LLMConnection(model="tiny-smollm2-random").build_backend("cpu", owner="judge")
    cases = _citation_cases()
    for tools in (None, CatalogTools.from_items(CATALOG)):
        judge = ExplanationJudge(backend=tiny_backend, tools=tools, tokenizer=tiny_backend.tokenizer)
        verdicts = judge.judge(cases)
        assert np.isfinite(verdicts.score).all() and len(verdicts.flagged) == len(cases)
    json_judge = ExplanationJudge(
        backend=tiny_backend, tools=CatalogTools.from_items(CATALOG), decision="text", max_steps=1, reply_tokens=8
    )
    verdicts = json_judge.judge(cases)
    assert all(e is not None for e in verdicts.errors)  # a random model writes no JSON


def test_planted_cases_on_ml100k_carry_the_label_of_their_kind(ml100k):
    from trustrec.data import split_leave_one_out

    evaluation = split_leave_one_out(ml100k).eval_set("test")[:60]
    held_out = evaluation.targets.values[evaluation.targets.indptr[:-1]]
    cases = planted_cases(evaluation.queries.histories, held_out, ml100k.items, seed=0)
    frame = cases.to_frame()
    assert frame.kind.value_counts().min() >= 30  # ml-100k has genres and years for every kind
    assert (frame.misleading == (frame.kind != "faithful")).all()
    tools = CatalogTools.from_items(ml100k.items)
    faithful = frame.index[frame.kind == "faithful"][0]
    lines = tools.evidence(cases.texts[faithful], int(cases.items[faithful]), cases.histories.row(faithful))
    assert "the user has interacted with it" in lines[1]
