"""Mitigation arms: audits take mitigations by name through the registry (trustrec._arms), never
by import. A mitigation defined here and registered by name reaches the audit that takes its kind
with no audit edit; unknown names fail with the known ones listed; the old config fields are
aliases of the built-in arms and give the same numbers; no audit module imports trustrec.mitigate."""

import ast
import pathlib
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from tests.audit.conftest import attributed_frames
from trustrec.audit._mitigations import FairnessMitigationsAudit
from trustrec.audit._robustness import PoisoningAudit
from trustrec.audit._safety import FeedbackLoopAudit
from trustrec.audit._text_attacks import TextAttackAudit
from trustrec.audit.controllability import PlatformRulesAudit, UserControlAudit
from trustrec.audit.privacy import AttributeInferenceAudit, MembershipInferenceAudit
from trustrec.data import Dataset, split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.mitigate import MITIGATIONS, MitigationArm, available_mitigations, register_mitigation
from trustrec.models import FitOptions, make_model

FIT = FitOptions(seed=0, progress=False)
SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "trustrec"


# -- mitigations defined here ------------------------------------------------------------------------
class OracleDefence:
    """Flags every user with training rows and no test rows (the injected fake users)."""

    description = "oracle on the held-out part"

    def fit(self, split):
        has_train = np.bincount(split.train.user, minlength=split.dataset.n_users) > 0
        has_test = np.bincount(split.test.user, minlength=split.dataset.n_users) > 0
        self.flagged_ = has_train & ~has_test
        return self

    def report(self, is_fake):
        tp = int((self.flagged_ & is_fake).sum())
        return {
            "precision": tp / max(self.flagged_.sum(), 1),
            "recall": tp / max(is_fake.sum(), 1),
            "f1": float("nan"),
            "n_flagged": int(self.flagged_.sum()),
        }

    def drop_flagged(self, split):
        return split.without_users(np.flatnonzero(self.flagged_), parts=("train",))


class IdentityReranker:
    def wrap(self, model, train, *, strength):
        return model


class KeepTraining:
    label, what, title, settings = "kept", "training data unchanged", "no change", {}

    def apply(self, split, *, seed, users=None):
        return split


class RedactGuard:
    """Cuts item text at the word 'recommend' (applied to the text by the audit: no prompt mode)."""

    prompt_mode = None

    def guard(self, text):
        cut = text.lower().find("recommend")
        return text if cut < 0 else text[:cut] + "[redacted]"

    def detect(self, text):
        return "recommend" in text.lower()


class CountingControl:
    """The built-in ``constrained`` control arm, counting what the audit asks of it (over every
    instance the audit builds)."""

    calls: ClassVar[dict] = {}

    def __init__(self):
        self.inner = MITIGATIONS.get("constrained").create()

    def catalog(self, items, **kw):
        self.calls["catalog"] = self.calls.get("catalog", 0) + 1
        return self.inner.catalog(items, **kw)

    def allowed(self, parsed, catalog, histories):
        self.calls["allowed"] = self.calls.get("allowed", 0) + 1
        return self.inner.allowed(parsed, catalog, histories)

    def constrain(self, model, split, **settings):
        self.calls["constrain"] = self.calls.get("constrain", 0) + 1
        return self.inner.constrain(model, split, **settings)


@pytest.fixture(scope="module", autouse=True)
def test_arms():
    arms = [
        MitigationArm("_test_oracle", "data_defence", OracleDefence, label="oracle"),
        MitigationArm("_test_identity", "reranker", IdentityReranker, label="identity"),
        MitigationArm("_test_keep", "training_defence", KeepTraining),
        MitigationArm("_test_redact", "text_guard", RedactGuard, label="redact"),
        MitigationArm("_test_counting_control", "control", CountingControl, label="counting"),
    ]
    for arm in arms:
        register_mitigation(arm, overwrite=True)
    yield
    for arm in arms:
        MITIGATIONS.all().pop(arm.name, None)


@pytest.fixture(scope="module")
def attributed():
    inter, users, items = attributed_frames()
    ds = Dataset.from_frame(inter, name="attributed", items=items, users=users)
    return split_leave_one_out(ds)


def uniform_sequences(n_users, n_items, length, seed):
    """Users with random sequences of distinct items (as in tests/audit/test_privacy.py, which is
    not imported: it registers test models for the whole session)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(rng.choice(n_items, length, replace=False))]
    ds = Dataset.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), name="uniform")
    return split_leave_one_out(ds)


def planted_attributes(n_users, n_items=60, seed=0):
    """Gender drives consumption: F users take 5 of the items 0-9, M users 5 of 10-19, everyone 5 of 20+."""
    rng = np.random.default_rng(seed)
    gender = np.where(np.arange(n_users) % 2 == 0, "F", "M").astype(object)
    rows = []
    for u in range(n_users):
        block = rng.choice(10, 5, replace=False) + (0 if gender[u] == "F" else 10)
        items = np.r_[block, rng.choice(np.arange(20, n_items), 5, replace=False)]
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(rng.permutation(items))]
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "gender": gender})
    ds = Dataset.from_frame(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), name="planted", users=users
    )
    return split_leave_one_out(ds)


def _values(result):
    return {k: (e.value, e.ci_low, e.ci_high) for k, e in result.estimates.items()}


# -- the registry --------------------------------------------------------------------------------------
def test_builtin_arms_are_registered_by_kind():
    kinds = {n: a.kind for n, a in available_mitigations().items()}
    assert kinds["fake_user_detector"] == "data_defence" and kinds["exposure"] == "reranker"
    assert kinds["injection_flag"] == "text_guard" and kinds["randomised_response"] == "training_defence"
    assert kinds["history_minimisation"] == "input_defence"
    assert kinds["constrained"] == "control" and kinds["rule_enforced"] == "rule_enforcer"
    assert set(available_mitigations("reranker")) >= {"calibrated", "exposure", "_test_identity"}


def test_unknown_arm_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown mitigation 'nope'.*fake_user_detector"):
        PoisoningAudit(defences=["nope"])
    with pytest.raises(ConfigError, match=r"is a reranker arm.*data_defence arms.*fake_user_detector"):
        PoisoningAudit(defences=["exposure"])
    with pytest.raises(ConfigError, match="Did you mean fake_user_detector"):
        PoisoningAudit(defences=["fake_user_detectr"])
    with pytest.raises(ConfigError, match="not both"):
        PoisoningAudit(detector={}, defences=["fake_user_detector"])
    with pytest.raises(ConfigError, match="already registered"):
        register_mitigation(name="exposure", kind="reranker", build=IdentityReranker)
    with pytest.raises(ConfigError, match="kind must be one of"):
        MitigationArm("x", "magic", IdentityReranker)


def test_arm_params_are_checked_when_the_config_is_built():
    with pytest.raises(ConfigError, match="method"):
        PoisoningAudit(defences=[{"name": "fake_user_detector", "params": {"method": "svm"}}])
    with pytest.raises(ConfigError, match="epsilon"):
        MembershipInferenceAudit(training_defences=[{"name": "randomised_response", "params": {"epsilon": -1}}])
    cfg = PoisoningAudit(defences=["fake_user_detector"]).config
    assert cfg.defences[0].params["method"] == "isolation_forest"  # normalised, dumped with the config
    assert PoisoningAudit(**cfg.model_dump(mode="json")).config == cfg


# -- a mitigation registered here reaches the audit of its kind ---------------------------------------------
def test_a_registered_data_defence_is_measured_by_the_poisoning_audit(attributed):
    model = make_model("most_popular").fit(attributed, FIT)
    res = PoisoningAudit(
        attacks=["bandwagon"], budgets=[0.05], filler_size=20, n_boot=10, defences=["_test_oracle"]
    ).run(model, attributed)
    assert res.estimates["oracle_recall [bandwagon @0.05]"].value == 1.0
    assert "oracle on the held-out part" in res.estimates["oracle_precision [bandwagon @0.05]"].description
    lift = res.estimates["target_hr@10 lift [bandwagon @0.05]"].value
    assert abs(res.estimates["target_hr@10 lift defended [bandwagon @0.05]"].value) < lift / 4


def test_a_registered_reranker_is_an_arm_of_the_feedback_loop(attributed):
    model = make_model("most_popular").fit(attributed, FIT)
    res = FeedbackLoopAudit(rounds=1, n_boot=10, max_users=60, rerankers=["_test_identity"]).run(model, attributed)
    table = res.evidence["rounds"].set_index(["arm", "round"])
    assert set(res.evidence["rounds"].arm) == {"model", "model + identity"}
    same = ["coverage", "exposure_gini", "avg_popularity", "n_accepted", "n_train"]
    assert (table.loc["model", same].to_numpy() == table.loc["model + identity", same].to_numpy()).all()


def test_a_registered_training_defence_is_an_arm_of_membership_inference():
    split = uniform_sequences(n_users=120, n_items=60, length=8, seed=1)
    model = make_model("most_popular").fit(split, FIT)
    res = MembershipInferenceAudit(
        n_boot=20, n_candidates=20, n_canaries=0, reference="none", training_defences=["_test_keep"]
    ).run(model, split)
    assert res.estimates["auc [loss, kept]"].value == pytest.approx(res.estimates["auc [loss]"].value)
    assert len(res.evidence["noise"]) == 2


def test_a_registered_text_guard_defends_an_llm_ranker():
    from tests.audit.test_text_attacks import _obedient, _ranker, llm_split

    split = llm_split.__wrapped__()
    model = _ranker(split, _obedient)
    res = TextAttackAudit(
        max_users=60,
        n_boot=50,
        n_targets=4,
        k=1,
        n_candidates=10,
        attacks=("injection",),
        guards=("off",),
        text_guards=["_test_redact"],
        fusion_weight=0.0,
        sum_scoring=False,
    ).run(model, split)
    rows = res.evidence["by_setting"].set_index(["attack", "defence"])
    assert rows.loc[("injection", "none"), "target_rate"] >= 0.9
    assert rows.loc[("injection", "redact"), "target_rate"] < 0.5


def test_a_control_arm_named_in_the_config_is_used_by_user_control(attributed):
    model = make_model("item_knn").fit(attributed, FIT)
    kw = {"n_boot": 20, "max_users": 40, "kinds": ("exclude_genre", "include_genre")}
    base = UserControlAudit(**kw).run(model, attributed)
    CountingControl.calls.clear()
    counted = UserControlAudit(**kw, control="_test_counting_control").run(model, attributed)
    calls = CountingControl.calls
    assert calls["constrain"] == 3 and calls["allowed"] >= 1 and calls["catalog"] >= 1  # the parser + 2 modes
    assert _values(base) == _values(counted)  # (the summary has timings: not compared)
    assert base.evidence["satisfaction"].equals(counted.evidence["satisfaction"])
    with pytest.raises(ConfigError, match=r"is a reranker arm.*control arms.*constrained"):
        UserControlAudit(control="exposure")
    with pytest.raises(ConfigError, match=r"rule_enforcer arms.*rule_enforced"):
        PlatformRulesAudit(rules="constrained")


def test_controllability_defaults_name_the_builtin_arms(attributed):
    assert UserControlAudit().config.control.name == "constrained"
    assert PlatformRulesAudit().config.rules.name == "rule_enforced"
    model = make_model("item_knn").fit(attributed, FIT)
    kw = {"n_boot": 20, "n_blocked": 3, "max_exposure_share": 0.2}
    old = PlatformRulesAudit(**kw).run(model, attributed)
    new = PlatformRulesAudit(**kw, rules={"name": "rule_enforced"}).run(model, attributed)
    assert _values(old) == _values(new) and old.summary == new.summary
    with pytest.raises(ConfigError, match="n_different_groups"):
        UserControlAudit(control={"name": "constrained", "params": {"n_groups": 2}})


# -- the old config fields are aliases of the built-in arms: same numbers ------------------------------------
def test_poisoning_detector_alias_equals_the_named_arm(attributed):
    model = make_model("most_popular").fit(attributed, FIT)
    kw = {"attacks": ["bandwagon"], "budgets": [0.05], "filler_size": 20, "n_boot": 10}
    params = {"method": "lof", "contamination": 0.05}
    old = PoisoningAudit(**kw, detector=params).run(model, attributed)
    new = PoisoningAudit(**kw, defences=[{"name": "fake_user_detector", "params": params}]).run(model, attributed)
    assert _values(old) == _values(new) and "detector_recall [bandwagon @0.05]" in new.estimates
    cols = [c for c in old.evidence["by_attack"].columns if "seconds" not in c]
    assert old.evidence["by_attack"][cols].equals(new.evidence["by_attack"][cols])


def test_feedback_mitigation_alias_equals_the_named_arm(attributed):
    model = make_model("most_popular").fit(attributed, FIT)
    kw = {"rounds": 1, "n_boot": 10, "max_users": 60, "mitigation_strength": 0.8}
    old = FeedbackLoopAudit(**kw, mitigation="exposure").run(model, attributed)
    new = FeedbackLoopAudit(**kw, rerankers=["exposure"]).run(model, attributed)
    assert _values(old) == _values(new) and "coverage change [model + xquad]" in new.estimates
    assert old.summary == new.summary and "with xQuAD" in new.summary


def test_noise_epsilons_alias_equals_the_named_arm():
    split = uniform_sequences(n_users=120, n_items=60, length=8, seed=1)
    model = make_model("most_popular").fit(split, FIT)
    kw = {"n_boot": 20, "n_candidates": 20, "n_canaries": 0, "reference": "none"}
    old = MembershipInferenceAudit(**kw, noise_epsilons=(0.0,)).run(model, split)
    new = MembershipInferenceAudit(
        **kw, training_defences=[{"name": "randomised_response", "params": {"epsilon": 0.0}}]
    ).run(model, split)
    assert _values(old) == _values(new) and "auc [loss, rr eps=0]" in new.estimates
    assert old.evidence["noise"].equals(new.evidence["noise"])


def test_minimise_alias_equals_the_named_arm():
    split = planted_attributes(n_users=120)
    model = make_model("item_knn").fit(split, FIT)
    kw = {"n_boot": 20, "n_permutations": 0, "attributes": ("gender",), "n_sensitive": 20}
    old = AttributeInferenceAudit(**kw, minimise="drop").run(model, split)
    new = AttributeInferenceAudit(**kw, minimisation="history_minimisation").run(model, split)
    assert _values(old) == _values(new) and "auc [gender, minimised]" in new.estimates
    with pytest.raises(ConfigError, match="not both"):
        AttributeInferenceAudit(minimise="drop", minimisation="history_minimisation")
    with pytest.raises(ConfigError, match="input_defence"):
        AttributeInferenceAudit(minimisation="exposure")


def test_text_guard_aliases_name_the_builtin_arms():
    cfg = TextAttackAudit(guards=("flag",), text_guards=["injection_flag", "injection_strip"]).config
    assert [a.name for a in cfg.guard_arms()] == ["injection_flag", "injection_strip"]
    with pytest.raises(ConfigError, match="text_guard"):
        TextAttackAudit(injection_detector="exposure")


def test_fairness_mitigations_curves_are_reranker_arms(attributed):
    model = make_model("most_popular").fit(attributed, FIT)
    res = FairnessMitigationsAudit(strengths=(0.0, 0.5), n_boot=10, n_candidates=20).run(model, attributed)
    assert {"calibrated_ndcg_drop", "exposure_aplt_gain"} <= set(res.estimates)


# -- the arm registry (that audits never import mitigations is tests/test_layout.py's) -----------------
def test_the_arm_registry_does_not_import_the_mitigation_layer_at_module_level():
    tree = ast.parse((SRC / "_arms.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any(isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("trustrec.mitigate") for n in top)
