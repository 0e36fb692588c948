"""The knowledge_hallucination audit: parsing and verdicts on crafted answers, hand-computed rates
from a scripted backend, not-applicable cases, and an end-to-end run on the tiny random LM."""

import json

import numpy as np
import pandas as pd
import pytest

from trustrec.audit import AuditResult, audit_class
from trustrec.audit._knowledge import (
    KnowledgeHallucinationAudit,
    detect_attribute_columns,
    judge_genre,
    judge_year,
    parse_genres,
    parse_year,
    strip_title_year,
)
from trustrec.data import Dataset, split_leave_one_out
from trustrec.models import FitOptions
from trustrec.models.llm import LLMBackend
from trustrec.testing import PrecomputedScores

QUIET = FitOptions(progress=False)


class ScriptedBackend(LLMBackend):
    """Answers each question with the scripted answer of the first title it mentions."""

    def __init__(self, answers):
        self.answers = answers
        self.prompts = []

    def _score_pairs(self, prompts, continuations):
        raise NotImplementedError

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        self.prompts += prompts
        out = []
        for p in prompts:
            kind = "year" if "year" in p else "genre"
            title = next(t for (t, k) in self.answers if k == kind and f'"{t}"' in p)
            out.append(self.answers[(title, kind)])
        return out


class FakeLLM(PrecomputedScores):
    """A scoring model whose text goes through a given backend (capability llm_backend)."""

    capabilities = PrecomputedScores.capabilities | {"llm_backend"}

    def __init__(self, table=None, backend=None):
        super().__init__(table)
        self._backend = backend

    @property
    def backend(self):
        return self._backend

    @property
    def tokenizer(self):
        return getattr(self._backend, "tokenizer", None)


ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e", "f"],
        "title": ["Toy Story (1995)", "Heat (1995)", "Alien", "Fargo", None, "Babe"],
        "release_year": ["1995", "1995", "1979", "1996", "1990", "unknown"],
        "class": ["Animation Comedy", "Action Crime", "Horror Sci-Fi", "Crime Drama", "Drama", "Comedy"],
    }
)
ANSWERS = {
    ("Toy Story", "year"): " It was released in 1995.",  # correct
    ("Heat", "year"): " 1996",  # contradicts
    ("Alien", "year"): " I don't know.",  # no answer
    ("Fargo", "year"): " Fargo came out in 1996, 12345 people saw it",  # correct (first 4-digit number)
    ("Toy Story", "genre"): " An animated comedy.",  # correct: Comedy ("animated" is not "Animation")
    ("Heat", "genre"): " A romantic drama",  # contradicts: Drama is a catalog genre, not Heat's
    ("Alien", "genre"): " science fiction horror",  # correct: Horror
    ("Fargo", "genre"): " a thriller",  # no answer: not a catalog genre
    ("Babe", "genre"): " sci fi",  # contradicts: Sci-Fi
}


def dataset(items=ITEMS):
    rows = [(f"u{u}", i, t) for u in range(8) for t, i in enumerate(np.roll(ITEMS["item_id"], u))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ds = Dataset.from_frame(inter, name="facts", items=items)
    return ds, split_leave_one_out(ds)


def fake_model(split, backend):
    table = np.zeros((split.dataset.n_users, split.dataset.n_items))
    return FakeLLM(table, backend).fit(split, QUIET)


# -- parsing --------------------------------------------------------------------------------------------
def test_parse_year_takes_the_first_stand_alone_four_digits():
    assert parse_year("in 1995 or 1996") == 1995
    assert parse_year("12345 and then 1977.") == 1977
    assert parse_year("01-Jan-1995") == 1995
    assert parse_year("no idea") is None and parse_year(None) is None


def test_strip_title_year():
    assert strip_title_year("Toy Story (1995) ") == "Toy Story"
    assert strip_title_year("2001: A Space Odyssey (1968)") == "2001: A Space Odyssey"
    assert strip_title_year("Alien") == "Alien"


def test_judges():
    assert judge_year("1996", 1995) == (1996, "contradicts")
    assert judge_year("1996", 1995, tolerance=1) == (1996, "correct")
    assert judge_year("?", 1995) == (None, "no_answer")
    genres = ["Comedy", "Sci-Fi", "Children's", "Drama"]
    assert parse_genres("A SCI FI comedy for children s", genres) == ["Comedy", "Sci-Fi", "Children's"]
    assert parse_genres("dramatic", genres) == []
    assert judge_genre("a drama", ["Comedy", "Drama"], genres) == (["Drama"], "correct")
    assert judge_genre("a comedy", ["Drama"], genres) == (["Comedy"], "contradicts")
    assert judge_genre("a western", ["Drama"], genres) == ([], "no_answer")


def test_detects_columns_robustly():
    found, missing = detect_attribute_columns(ITEMS)
    assert found == {"year": "release_year", "genre": "class"} and not missing
    other = pd.DataFrame({"item_id": [1], "title": ["x"], "Release Date": ["01-Jan-1995"], "Genres": ["A|B"]})
    assert detect_attribute_columns(other)[0] == {"year": "Release Date", "genre": "Genres"}
    found, missing = detect_attribute_columns(pd.DataFrame({"item_id": [1], "title": ["x"], "brand": ["y"]}))
    assert not found and set(missing) == {"year", "genre"}


# -- the audit with scripted answers ---------------------------------------------------------------------
def test_hand_computed_rates_and_evidence():
    _ds, split = dataset()
    backend = ScriptedBackend(ANSWERS)
    result = KnowledgeHallucinationAudit(n_boot=50).run(fake_model(split, backend), split)
    e = result.estimates
    assert result.dimension == "factuality"
    # year: Toy Story, Heat, Alien, Fargo (Babe's year is unknown; the untitled item is never asked)
    assert e["correct_rate [year]"].value == pytest.approx(2 / 4)
    assert e["contradiction_rate [year]"].value == pytest.approx(1 / 4)
    assert e["no_answer_rate [year]"].value == pytest.approx(1 / 4)
    assert e["correct_rate [year]"].n == 4
    # genre: 5 items
    assert e["correct_rate [genre]"].value == pytest.approx(2 / 5)
    assert e["contradiction_rate [genre]"].value == pytest.approx(2 / 5)
    assert e["no_answer_rate [genre]"].value == pytest.approx(1 / 5)
    # all: per-item shares (1, 0, .5, .5, 0 correct; 0, 1, 0, 0, 1 contradicting), mean over 5 items
    assert e["correct_rate"].value == pytest.approx(0.4)
    assert e["contradiction_rate"].value == pytest.approx(0.4)
    assert e["no_answer_rate"].value == pytest.approx(0.2)
    for est in e.values():
        assert est.ci_low <= est.value <= est.ci_high

    answers = result.evidence["answers"]
    assert list(answers.columns) == [
        "item",
        "title",
        "attribute",
        "question",
        "answer",
        "parsed",
        "catalog",
        "verdict",
    ]
    assert len(answers) == 9 and len(backend.prompts) == 9
    toy = answers[(answers["title"] == "Toy Story (1995)") & (answers["attribute"] == "year")].iloc[0]
    assert '"Toy Story"' in toy["question"] and "1995" not in toy["question"]  # the year is not given away
    assert (toy["parsed"], toy["catalog"], toy["verdict"]) == ("1995", "1995", "correct")
    babe = answers[answers["title"] == "Babe"].iloc[0]
    assert (babe["parsed"], babe["catalog"], babe["verdict"]) == ("Sci-Fi", "Comedy", "contradicts")
    assert result.settings["columns"] == {"year": "release_year", "genre": "class"}
    assert result.settings["titles_year_stripped"] == 2
    json.dumps(result.to_dict())


def test_tolerance_and_sampling_are_configurable():
    _ds, split = dataset()
    model = fake_model(split, ScriptedBackend(ANSWERS))
    tolerant = KnowledgeHallucinationAudit(n_boot=0, year_tolerance=1, attributes=("year",)).run(model, split)
    assert tolerant.estimates["correct_rate [year]"].value == pytest.approx(3 / 4)  # Heat's 1996 is now close
    assert "genre" not in tolerant.settings["attributes_measured"]
    one = KnowledgeHallucinationAudit(n_boot=0, n_items=2, seed=3).run(model, split)
    again = KnowledgeHallucinationAudit(n_boot=0, n_items=2, seed=3).run(model, split)
    assert one.settings["n_items_sampled"] == 2
    pd.testing.assert_frame_equal(one.evidence["answers"], again.evidence["answers"])


def test_missing_attribute_is_reported_not_applicable():
    _ds, split = dataset(ITEMS.drop(columns=["release_year"]))
    result = KnowledgeHallucinationAudit(n_boot=0).run(fake_model(split, ScriptedBackend(ANSWERS)), split)
    assert result.settings["attributes_measured"] == ["genre"]
    assert "year" in result.settings["attributes_not_applicable"]
    assert any("year not applicable" in w for w in result.warnings)


def test_not_applicable_without_attributes_or_backend():
    ds, split = dataset(ITEMS[["item_id", "title"]])
    result = KnowledgeHallucinationAudit().run(fake_model(split, ScriptedBackend(ANSWERS)), split)
    assert result.verdict.status == "not_applicable" and "no attribute" in result.verdict.reasons[0]
    _ds, split = dataset()
    plain = PrecomputedScores(np.zeros((ds.n_users, ds.n_items))).fit(split, QUIET)
    result = KnowledgeHallucinationAudit().run(plain, split)
    assert result.verdict.status == "not_applicable" and "LLM backend" in result.verdict.reasons[0]
    assert audit_class("knowledge_hallucination") is KnowledgeHallucinationAudit


# -- end to end on the tiny random LM ------------------------------------------------------------------
def test_end_to_end_on_the_tiny_model(tmp_path):
    pytest.importorskip("transformers")
    from trustrec.models.llm import LocalBackend, build_tiny_random

    build_tiny_random(tmp_path / "tiny")
    backend = LocalBackend(tmp_path / "tiny", batch_size=16)
    _ds, split = dataset()
    result = KnowledgeHallucinationAudit(n_boot=20, max_new_tokens=4).run(fake_model(split, backend), split)
    answers = result.evidence["answers"]
    assert len(answers) == 9 and set(answers["verdict"]) <= {"correct", "contradicts", "no_answer"}
    for attr in ("year", "genre"):
        total = sum(result.estimates[f"{r} [{attr}]"].value for r in ("correct_rate", "contradiction_rate"))
        total += result.estimates[f"no_answer_rate [{attr}]"].value
        assert total == pytest.approx(1.0)
    back = AuditResult.load(result.save(tmp_path / "audit"))
    assert back.estimates == result.estimates


@pytest.mark.parametrize("name", ["llm_generative", "llm_recicl"])
def test_runs_on_fine_tunable_llm_recommenders(name):
    """The generative (and RecICL) recommenders answer through their own fitted LM's backend."""
    pytest.importorskip("transformers")
    from trustrec.models import has_capability, make_model

    _ds, split = dataset()
    params = {"model": "tiny-smollm2-random", "epochs": 0, "template": {"chat": False}}
    if name == "llm_recicl":
        params = {"model": "tiny-smollm2-random", "epochs": 0, "labels": "interaction"}
    model = make_model(name, **params).fit(split, QUIET)
    assert has_capability(model, "llm_backend") and model.tokenizer is model.tokenizer_
    result = KnowledgeHallucinationAudit(n_boot=20, max_new_tokens=4).run(model, split)
    assert result.verdict.status != "not_applicable"
    assert len(result.evidence["answers"]) == 9
