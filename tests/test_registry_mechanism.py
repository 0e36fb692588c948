"""One registry mechanism (trustrec.registry): built-ins discovered, third-party entries through
entry points of a real (fake) distribution on sys.path, clear errors for a broken entry point, and
every registered built-in reachable through its registry."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from trustrec.errors import ConfigError
from trustrec.registry import NamedRegistry, PluginError, kinds, registry

BUILTINS = {
    "models": {
        "most_popular",
        "item_knn",
        "ease",
        "bpr_mf",
        "mf",
        "sasrec",
        "llm_generative",
        "llm_ranker",
        "text_knn",
        "sasrec_text",
        "calibrated_reranker",
        "exposure_reranker",
        "constrained",
        "rule_enforced",
    },
    "audits": {
        "user_fairness",
        "item_exposure",
        "calibration",
        "counterfactual_attributes",
        "cold_start",
        "hallucination",
        "fairness_mitigations",
        "history_perturbation",
        "poisoning",
        "text_attack",
        "feedback_loop",
        "membership_inference",
        "attribute_inference",
        "unlearning",
        "user_control",
        "platform_rules",
        "prompt_sensitivity",
        "position_bias",
        "explanation_faithfulness",
    },
    "splitters": {"leave_one_out", "temporal", "random", "given_test", "random_exposure", "global_positions"},
    "filters": {"to_implicit", "drop_duplicates", "k_core", "sample_users"},
    "metrics": {
        "recall",
        "precision",
        "hr",
        "ndcg",
        "mrr",
        "map",
        "map_trec",
        "coverage",
        "gini",
        "avg_popularity",
        "aplt",
        "novelty",
        "ild",
    },
    "executors": {"serial", "ray"},
    "datasets": {"ml-100k", "ml-1m", "coat", "yahoo-r3", "kuairec", "amazon-games", "amazon-industrial"},
}

PLUGIN_MODULE = """
import numpy as np


class FakeModel:
    name = "fake_model"

    def __init__(self, alpha=1.0):
        self.alpha = alpha


def fake_metric(hits, n_relevant):
    return np.asarray(hits, dtype=float).sum(1) * 10.0
"""

ENTRY_POINTS = """
[trustrec.models]
fake_model = fakeplug_mod:FakeModel
broken_model = fakeplug_missing_module:Nope
misnamed_model = fakeplug_mod:fake_metric

[trustrec.metrics]
fake_metric = fakeplug_mod:fake_metric

[trustrec_test.widgets]
plug_widget = fakeplug_mod:fake_metric
"""


def _distribution(root):
    """A real installed distribution: a dist-info folder with METADATA and entry_points.txt."""
    (root / "fakeplug_mod.py").write_text(PLUGIN_MODULE)
    info = root / "fakeplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    (info / "RECORD").write_text("")


@pytest.fixture
def plugin(tmp_path):
    _distribution(tmp_path)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    for kind in ("models", "metrics"):
        registry(kind).refresh()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("fakeplug_mod", None)
    importlib.invalidate_caches()
    for kind in ("models", "metrics"):
        registry(kind).refresh()


def test_every_kind_lists_its_builtins():
    assert set(BUILTINS) <= set(kinds())
    for kind, names in BUILTINS.items():
        reg = registry(kind)
        assert names <= set(reg.names()), kind
        assert all(reg.origin(n) == "builtin" for n in names), kind
    with pytest.raises(ConfigError, match="unknown registry kind 'widgetz'"):
        registry("widgetz")


def test_public_functions_read_the_registries():
    from trustrec.data import SPLITTERS, make_split
    from trustrec.eval import ACCURACY_METRICS, parse_metric
    from trustrec.models import available_models, model_class
    from trustrec.parallel import SerialExecutor, resolve_executor

    assert BUILTINS["models"] <= set(available_models()) and available_models() == sorted(available_models())
    assert SPLITTERS is registry("splitters") and sorted(SPLITTERS) == sorted(BUILTINS["splitters"])
    assert list(ACCURACY_METRICS) == ["recall", "precision", "hr", "ndcg", "mrr", "map", "map_trec"]
    assert "gini" not in ACCURACY_METRICS and parse_metric("HR@5").name == "hr"
    assert isinstance(resolve_executor("serial"), SerialExecutor)
    # the error messages are those of before the registries moved (other tests may have registered
    # models of their own, so the listing is matched up to the built-ins it must contain)
    with pytest.raises(ConfigError, match=r"unknown model 'eas' \(did you mean ease\?\); valid: (\w+, )*bpr_mf, "):
        model_class("eas")
    with pytest.raises(
        ConfigError, match=r"unknown split method 'nope'; valid: \['given_test', 'global_positions', 'leave_one_out', "
    ):
        make_split(None, "nope")
    with pytest.raises(ConfigError, match="unknown executor 'dask'; one of serial, ray"):
        resolve_executor("dask")
    with pytest.raises(
        ConfigError,
        match="unknown metric 'x' in 'x@3'; valid names: recall, precision, hr, ndcg, "
        "mrr, map, map_trec, coverage, gini, avg_popularity, aplt, novelty, ild",
    ):
        parse_metric("x@3")


def test_a_third_party_model_and_metric_come_from_entry_points(plugin):
    from trustrec.eval import ACCURACY_METRICS, parse_metric
    from trustrec.models import available_models, make_model, model_class

    assert "fake_model" in available_models() and "fakeplug_mod" not in sys.modules  # listed, not loaded
    assert registry("models").origin("fake_model") == "plugin"
    model = make_model("fake_model", alpha=2.0)
    assert type(model).__name__ == "FakeModel" and model.alpha == 2.0 and model_class("fake_model") is type(model)
    assert parse_metric("fake_metric@5").name == "fake_metric"
    hits = np.array([[True, False, True]])
    assert ACCURACY_METRICS["fake_metric"](hits, np.array([2])) == pytest.approx([20.0])
    assert "fake_metric" in registry("metrics") and "fake_metric" in ACCURACY_METRICS


def test_the_evaluator_computes_a_third_party_metric(plugin):
    from trustrec.data import EvalSet, QueryBatch, Ragged
    from trustrec.eval import evaluate
    from trustrec.models import FitOptions
    from trustrec.testing import PrecomputedScores, toy_dataset

    scores = np.tile(np.arange(8, 0, -1, dtype=float), (3, 1))  # item 0 first, then 1, ...
    model = PrecomputedScores(scores).fit(toy_dataset(n_users=3, n_items=8, n_inter=20), FitOptions(progress=False))
    es = EvalSet(QueryBatch(np.arange(3), Ragged.from_rows([[], [], []])), Ragged.from_rows([[0], [1, 2], [7]]), "test")
    res = evaluate(model, es, metrics=["fake_metric@3", "hr@3"], n_boot=0, progress=False)
    assert res.mean("fake_metric@3") == pytest.approx(10.0) and res.mean("hr@3") == pytest.approx(2 / 3)


def test_a_broken_entry_point_is_a_clear_error_never_silent(plugin):
    from trustrec.models import available_models, model_class

    assert "broken_model" in available_models()
    with pytest.raises(
        PluginError,
        match=r"'broken_model'.*'fakeplug_missing_module:Nope'.*trustrec\.models.*"
        r"fakeplug.*ModuleNotFoundError",
    ):
        model_class("broken_model")
    with pytest.raises(
        PluginError,
        match=r"'misnamed_model'.*fakeplug.*not a usable model: expected a recommender "
        r"class, got function",
    ):
        registry("models").get("misnamed_model")
    with pytest.warns(RuntimeWarning, match="fakeplug") as caught:
        everything = registry("models").all()
    assert {"fake_model"} | BUILTINS["models"] <= set(everything)
    assert not {"broken_model", "misnamed_model"} & set(everything)
    assert len(caught) == 2
    with pytest.raises(PluginError):  # listing left it out; looking it up still raises
        model_class("broken_model")


def test_mechanism_builtins_decorators_users_and_plugins(plugin):
    def builtins():
        yield from [_Named("a"), _Named("b")]

    reg = NamedRegistry(
        "widget", builtins, ConfigError, "See the widgets.", group="trustrec_test.widgets", check=lambda name, obj: None
    )
    assert "widgets" not in kinds()  # only trustrec.<kind> groups are public
    user_b = _Named("b")
    reg.register(user_b)  # before discovery: a user's entry beats the built-in
    assert reg.names() == ["b", "a", "plug_widget"] and reg["b"] is user_b
    assert reg.origin("a") == "builtin" and reg.origin("b") == "user" and reg.origin("plug_widget") == "plugin"
    assert reg["plug_widget"](np.array([[True]]), np.array([1])) == pytest.approx([10.0])
    with pytest.raises(ConfigError, match="widget 'a' is already registered; pass overwrite=True"):
        reg.add(_Named("a"))
    reg.add(_Named("a"), overwrite=True)
    with pytest.raises(
        ConfigError,
        match=r"unknown widget 'bb'\. Did you mean b\? Registered widgets: b, a, "
        r"plug_widget\. See the widgets\.",
    ):
        reg.get("bb")
    assert reg.get("bb", None) is None

    @reg.register(name="decorated")
    def decorated():
        return 1

    assert reg["decorated"] is decorated and dict(reg.items())["decorated"] is decorated


def test_a_plugin_clashing_with_a_builtin_is_left_out_with_a_warning(tmp_path):
    info = tmp_path / "clash-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[trustrec_test.clash]\na = json:dumps\n")
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        reg = NamedRegistry("thing", lambda: [_Named("a")], ConfigError, "", group="trustrec_test.clash")
        with pytest.warns(RuntimeWarning, match=r"entry point 'a' = 'json:dumps' of clash is not used"):
            names = reg.names()
        assert names == ["a"] and isinstance(reg["a"], _Named)
    finally:
        sys.path.remove(str(tmp_path))


def test_no_registered_builtin_is_unreachable_through_its_registry():
    """Importing every module of trustrec registers nothing the registries' discovery did not find:
    a registration decorator in a module outside the discovered packages fails here."""
    code = textwrap.dedent("""
        import importlib, json, pkgutil, warnings
        import trustrec
        from trustrec.registry import kinds, registry
        warnings.simplefilter("error")
        before = {k: set(registry(k).names()) for k in kinds()}
        for info in pkgutil.walk_packages(trustrec.__path__, "trustrec."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
        print(json.dumps({k: sorted(set(registry(k).names()) - before.get(k, set())) for k in kinds()}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    missed = {k: v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items() if v}
    assert not missed, f"registered only when their module is imported by hand: {missed}"


def test_the_cli_is_one_thin_module_per_command():
    import trustrec.cli as cli
    from trustrec.cli import _errors

    assert callable(cli.main) and cli.app is not None
    for command in ("data", "demo", "run", "compare", "audit", "models", "report"):
        assert importlib.import_module(f"trustrec.cli.{command}")
    assert cli.EXIT_USER_ERROR == _errors.EXIT_USER_ERROR == 2 and _errors.EXIT_INTERNAL_ERROR == 1
    from trustrec.runs.demo import DemoResult, run_demo  # the demo's logic lives in the library

    assert callable(run_demo) and DemoResult.to_dict


class _Named:
    def __init__(self, name):
        self.name = name
