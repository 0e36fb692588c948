"""``AuditChecks``: the conformance suite every audit passes (STYLE.md §2).

A test class sets ``audit`` (the class), ``configs`` (small, fast settings) and the fixture
``fitted`` (a fitted model and its split); it inherits checks of the audit contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from trustrec.audit import DIMENSIONS, Audit, AuditResult
from trustrec.data import Split
from trustrec.models import Recommender

__all__ = ["AuditChecks"]


class AuditChecks:
    """The conformance checks of the audit contract, inherited by a pytest test class.

    The class sets ``audit`` (the Audit class) and ``configs`` (small, fast settings; the first
    is run), and defines the fixture ``fitted`` (a fitted model and its split). The checks cover
    the audit's declaration (name, dimension, description, needs), config round trip, the result
    contract, JSON and save / load round trips, same seed same result, and that running the
    audit leaves the model unchanged.
    """

    audit: ClassVar[type[Audit]]
    configs: ClassVar[list[dict[str, Any]]] = [{}]

    def make(self, i: int = 0) -> Audit:
        return self.audit(**self.configs[i])

    @pytest.fixture(scope="class")
    @classmethod
    def result(cls, fitted: tuple[Recommender, Split]) -> AuditResult:
        model, split = fitted
        return cls.audit(**cls.configs[0]).run(model, split)

    def test_declares_itself(self) -> None:
        assert self.audit.name and self.audit.dimension in DIMENSIONS
        assert self.audit.description and self.audit.needs
        audit = self.audit()
        assert repr(audit).startswith(type(audit).__name__)

    def test_config_round_trip(self) -> None:
        audit = self.make()
        assert self.audit.validate_config(audit.dump_config()) == audit.config
        assert audit.set_params(seed=audit.config.seed + 1).config.seed == audit.config.seed + 1

    def test_result_contract(self, result: AuditResult) -> None:
        assert result.audit == self.audit.name and result.dimension == self.audit.dimension
        assert result.verdict.status in ("pass", "warn", "fail", "not_applicable", "no_threshold")
        if result.verdict.status == "not_applicable":
            assert result.verdict.reasons and result.verdict.reasons[0]
            return
        assert result.estimates and result.summary
        for name, est in result.estimates.items():
            if est.value is not None and est.ci_low is not None:
                assert est.ci_high is not None, name  # a CI with a low end has a high end
                assert est.ci_low <= est.ci_high, name
        for plot in result.plots:
            assert plot.table in result.evidence
        assert result.settings["config"] == self.make().dump_config()

    def test_json_and_save_load(self, result: AuditResult, tmp_path: Path) -> None:
        json.dumps(result.to_dict())
        back = AuditResult.load(result.save(tmp_path / self.audit.name))
        assert back.estimates == result.estimates and back.verdict == result.verdict
        for name, frame in result.evidence.items():
            pd.testing.assert_frame_equal(
                back.evidence[name].reset_index(drop=True), frame.reset_index(drop=True), check_dtype=False
            )

    def test_same_seed_same_result(self, fitted: tuple[Recommender, Split], result: AuditResult) -> None:
        model, split = fitted
        again = self.make().run(model, split)
        assert again.estimates == result.estimates

    def test_does_not_change_the_model(self, fitted: tuple[Recommender, Split]) -> None:
        model, split = fitted
        before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items() if k.endswith("_")}
        self.make().run(model, split)
        for key, value in before.items():
            now = getattr(model, key)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(now, value)
