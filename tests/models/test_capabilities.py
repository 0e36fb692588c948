"""Capabilities: declared by models, checked by protocol, and what audits and conformance checks
choose by (never a model's class or name)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import numpy as np
import pytest

from trustrec._config import Config
from trustrec.audit._text_attacks import TextAttackAudit
from trustrec.data import split_leave_one_out
from trustrec.models import (
    CAPABILITIES,
    FitOptions,
    ReadsItemText,
    Recommender,
    ScoresCatalog,
    available_models,
    capability_gap,
    has_capability,
    model_class,
)
from trustrec.testing import RecommenderChecks, toy_dataset

QUIET = FitOptions(progress=False)
TESTS = Path(__file__).resolve().parents[1]


class _WordConfig(Config):
    word: str = "great"


class WordInTitle(Recommender):
    """A toy recommender defined here, in no audit's knowledge: it scores an item by how often
    its title says ``word`` (plus a little popularity), and declares that it reads item text."""

    name = "word_in_title_test_double"
    config_class = _WordConfig
    capabilities = frozenset({"score", "text"})

    def _fit(self, train, options) -> None:
        self.pop_ = np.bincount(train.interactions.item, minlength=train.n_items) / max(len(train.interactions), 1)
        self.titles_ = list(train.items["title"].astype(str))

    def with_item_text(self, items=None, *, injection_guard=None):
        clone = copy.copy(self)
        if items is not None:
            clone.titles_ = list(items["title"].astype(str))
        return clone

    def score(self, queries):
        self._check_fitted()
        hits = np.array([t.lower().count(self.config.word) for t in self.titles_], float)
        return np.tile(hits + self.pop_, (len(queries), 1))


def test_a_declaration_needs_the_protocol_methods_and_the_methods_need_a_declaration():
    assert has_capability(WordInTitle, "text") and has_capability(WordInTitle(), "score")
    assert isinstance(WordInTitle(), ReadsItemText) and isinstance(WordInTitle(), ScoresCatalog)

    class Undeclared(WordInTitle):
        capabilities = frozenset({"score"})

    class NoMethod(Recommender):
        capabilities = frozenset({"score", "user_embeddings"})

    assert not has_capability(Undeclared, "text")  # methods alone are not a declaration
    assert "does not declare the 'text' capability" in capability_gap(Undeclared, "text")
    assert not has_capability(NoMethod, "user_embeddings")  # a declaration alone is not believed
    assert "lacks user_embeddings" in capability_gap(NoMethod, "user_embeddings")
    with pytest.raises(KeyError, match="unknown capability"):
        has_capability(WordInTitle, "telepathy")


def test_registered_models_declare_only_known_capabilities():
    for name in available_models():
        unknown = set(model_class(name).capabilities) - set(CAPABILITIES)
        assert not unknown, f"{name} declares unknown capabilities {sorted(unknown)}"


def _conformance_components() -> set[str]:
    """Names assigned to ``component`` in test classes deriving (directly or through another
    test class) from RecommenderChecks, over every test file."""
    found: set[str] = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {c.name: c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}

        # classes bound as a default: each file's walk uses that file's classes (B023)
        def checks(cls: ast.ClassDef, depth: int = 0, classes: dict[str, ast.ClassDef] = classes) -> bool:
            for base in cls.bases:
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if name == "RecommenderChecks" or (name in classes and depth < 10 and checks(classes[name], depth + 1)):
                    return True
            return False

        for cls in classes.values():
            if not checks(cls):
                continue
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "component" for t in stmt.targets):
                    value = stmt.value
                    found.add(value.id if isinstance(value, ast.Name) else getattr(value, "attr", ""))
    return found


def test_every_registered_model_has_a_conformance_class():
    components = _conformance_components()
    shipped = [n for n in available_models() if model_class(n).__module__.startswith("trustrec.")]
    assert len(shipped) >= 14  # the built-ins; doubles that other test files register are not shipped
    missing = sorted(n for n in shipped if model_class(n).__name__ not in components)
    assert not missing, (
        f"registered models without a RecommenderChecks test class (set `component = ...` in "
        f"one under tests/): {missing}"
    )


def test_a_model_declaring_text_is_picked_up_by_the_text_attack_audit():
    ds = toy_dataset()
    split = split_leave_one_out(ds, short_users="train")
    model = WordInTitle().fit(split, QUIET)
    res = TextAttackAudit(max_users=20, n_boot=20, n_targets=2, k=3, n_candidates=10, attacks=("injection",)).run(
        model, split
    )
    assert res.verdict.status != "not_applicable", res.verdict.reasons

    class Blind(WordInTitle):
        capabilities = frozenset({"score"})  # same methods, no declaration

    blind = TextAttackAudit(max_users=20, n_boot=20, n_targets=2, k=3).run(Blind().fit(split, QUIET), split)
    assert blind.verdict.status == "not_applicable"


def test_recommender_checks_choose_by_capability_and_say_why_they_skip():
    class Checks(RecommenderChecks):  # not collected: the toy is not registered, so it cannot be loaded
        component = WordInTitle

    Checks().require("text")
    Checks().require("score")
    with pytest.raises(pytest.skip.Exception, match=r"'user_embeddings' skipped: .*does not declare"):
        Checks().require("user_embeddings")
