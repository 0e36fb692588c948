"""The composed recommender: nested parameters, nested save/load, fitted stages reused, and run
configs that nest a fitted stage."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.models import ComposedRecommender, FitOptions, Recommender, compose, make_model
from trustrec.testing import toy_dataset

QUIET = FitOptions(progress=False)


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


@pytest.fixture(scope="module")
def base(split):
    return make_model("item_knn", k=10).fit(split, QUIET)


def test_nested_params_round_trip():
    model = make_model("exposure_reranker", base={"name": "item_knn", "params": {"k": 10}}, strength=0.3)
    assert isinstance(model, ComposedRecommender) and model.stages == ("base",)
    deep = model.get_params(deep=True)
    assert deep["base__k"] == 10 and deep["strength"] == 0.3 and "base__shrink" in deep  # defaults too
    assert "base__k" not in model.get_params()  # shallow as before
    changed = model.set_params(base__k=5, strength=0.1)
    assert changed.get_params(deep=True)["base__k"] == 5 and changed.config.strength == 0.1
    assert changed.config.base.params == {"k": 5} and model.config.base.params == {"k": 10}  # fresh object
    assert model.with_params(base__shrink=2.0).get_params(deep=True)["base__shrink"] == 2.0
    # setting back every deep parameter gives the same config
    again = changed.set_params(**{k: v for k, v in deep.items() if k != "base"})
    assert again.get_params(deep=True) == {**deep, "base": again.get_params()["base"]}
    assert again.config.strength == model.config.strength and again.get_params(deep=True)["base__k"] == 10
    with pytest.raises(ConfigError, match="not a stage"):
        model.set_params(retriever__k=3)
    with pytest.raises(ConfigError, match="base__"):
        model.set_params(base__not_a_param=3)


def test_llm_ranker_retriever_is_a_stage():
    ranker = make_model("llm_ranker", retriever={"name": "item_knn", "params": {"k": 7}})
    assert ranker.stages == ("retriever",)
    assert ranker.get_params(deep=True)["retriever__k"] == 7
    assert ranker.set_params(retriever__k=3).config.retriever.params["k"] == 3
    # two levels: an LLM ranker over a re-ranker over item-kNN
    nested = make_model(
        "llm_ranker",
        retriever={"name": "exposure_reranker", "params": {"base": {"name": "item_knn", "params": {"k": 4}}}},
    )
    assert nested.get_params(deep=True)["retriever__base__k"] == 4
    assert nested.set_params(retriever__base__k=9).get_params(deep=True)["retriever__base__k"] == 9


def test_saved_and_loaded_gives_identical_topk(split, tmp_path):
    model = make_model(
        "exposure_reranker", base={"name": "item_knn", "params": {"k": 10}}, strength=0.6, n_candidates=10
    ).fit(split, QUIET)
    path = model.save(tmp_path / "m")
    arrays = load_file(str(path / "state.safetensors"))
    values = json.loads((path / "fitted.json").read_text())
    assert any(k.startswith("base_/") for k in arrays) and "base_" in values  # the layout checkpoints have
    loaded = Recommender.load(path)
    q = split.eval_set("test").queries
    a, b = model.recommend(q, 5), loaded.recommend(q, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert loaded.get_params(deep=True) == model.get_params(deep=True)


def test_fitted_stage_is_reused_not_refitted(split, base):
    before = {k: v.copy() for k, v in vars(base).items() if isinstance(v, np.ndarray)}
    # fit with a held stage: the base is the same object and untouched
    wrapped = make_model("exposure_reranker", strength=0.6, n_candidates=10).with_fitted(base=base).fit(split, QUIET)
    assert wrapped.base_ is base and wrapped.config.base.params["k"] == 10
    for key, value in before.items():
        np.testing.assert_array_equal(getattr(base, key), value)
    # compose by name: nothing is fitted when every stage is given
    composed = compose("exposure_reranker", split, base=base, strength=0.6, n_candidates=10)
    assert composed.base_ is base
    q = split.eval_set("test").queries
    np.testing.assert_array_equal(composed.recommend(q, 5).items, wrapped.recommend(q, 5).items)
    # a ranker over a fitted retriever
    ranker = compose("llm_ranker", split, retriever=base, model="tiny-smollm2-random", n_candidates=4)
    assert ranker.retriever_ is base and ranker.config.retriever.name == "item_knn"


def test_fitted_stage_errors(split, base):
    with pytest.raises(ConfigError, match="not a composed model"):
        compose("item_knn", split, k=3)
    with pytest.raises(ConfigError, match="not a stage"):
        make_model("exposure_reranker").with_fitted(retriever=base)
    with pytest.raises(ConfigError, match="not a fitted"):
        make_model("exposure_reranker").with_fitted(base=make_model("item_knn"))
    other = split_leave_one_out(toy_dataset(n_items=base.n_items_ + 5), short_users="train")
    with pytest.raises(ConfigError, match="items"):
        make_model("exposure_reranker").with_fitted(base=base).fit(other, QUIET)


# -- run configs ------------------------------------------------------------------------------------
def _config(tmp_path, name, model, params):
    from tests.test_runs import toy_folder

    return {
        "name": name,
        "dataset": {"name": str(toy_folder(tmp_path))},
        "split": {"method": "leave_one_out", "params": {"short_users": "train"}},
        "model": {"name": model, "params": params},
        "eval": {"metrics": ["ndcg@5", "hr@5"], "n_boot": 20},
    }


def test_run_config_with_a_fitted_stage(tmp_path):
    from trustrec.runs import load_run_config, run_experiment

    out, quiet = tmp_path / "runs", {"progress": False, "log": lambda *_: None}
    knn = run_experiment(_config(tmp_path, "knn", "item_knn", {"k": 10}), out, **quiet)
    wrapped = {"strength": 0.0, "n_candidates": 10}
    by_run = run_experiment(
        _config(tmp_path, "rerank", "exposure_reranker", {**wrapped, "base": {"from_run": "knn"}}), out, **quiet
    )
    by_ckpt = run_experiment(
        _config(
            tmp_path, "rerank2", "exposure_reranker", {**wrapped, "base": {"checkpoint": str(knn.path / "checkpoint")}}
        ),
        out,
        **quiet,
    )
    env = json.loads((by_run.path / "environment.json").read_text())
    assert env["fitted_stages"]["base"]["from_run"] == "knn"
    # strength 0 keeps the base's order: the same metrics as the base run; the base was not refitted
    for res in (by_run, by_ckpt):
        assert res.metrics["metrics"]["ndcg@5"]["mean"] == pytest.approx(knn.metrics["metrics"]["ndcg@5"]["mean"])
    base_state = load_file(str(knn.path / "checkpoint" / "state.safetensors"))
    nested = load_file(str(by_run.path / "checkpoint" / "state.safetensors"))
    for key, value in base_state.items():
        np.testing.assert_array_equal(nested[f"base_/{key}"], value)
    assert Recommender.load(by_run.path / "checkpoint").config.base.params["k"] == 10
    # a second call reuses the finished run
    again = run_experiment(
        _config(tmp_path, "rerank", "exposure_reranker", {**wrapped, "base": {"from_run": "knn"}}), out, **quiet
    )
    assert again.metrics == by_run.metrics
    # ... unless the fitted stage changed since
    run_experiment(_config(tmp_path, "knn", "item_knn", {"k": 3}), out, overwrite=True, **quiet)
    with pytest.raises(DataError, match=r"fitted base .* changed since this run finished"):
        run_experiment(
            _config(tmp_path, "rerank", "exposure_reranker", {**wrapped, "base": {"from_run": "knn"}}), out, **quiet
        )
    assert load_run_config(
        _config(tmp_path, "r", "llm_ranker", {"retriever": {"from_run": "knn"}})
    ).model.fitted_stages()


def test_run_config_bad_fitted_stage_errors_clearly(tmp_path):
    from trustrec.runs import load_run_config, run_experiment

    with pytest.raises(ConfigError, match=r"model.params.k.*not a stage of 'item_knn'.*no stages"):
        load_run_config(_config(tmp_path, "x", "item_knn", {"k": {"from_run": "knn"}}))
    with pytest.raises(ConfigError, match=r"retriever.*exactly one of checkpoint.*from_run"):
        load_run_config(_config(tmp_path, "x", "llm_ranker", {"retriever": {"from_run": "a", "checkpoint": "b"}}))
    with pytest.raises(ConfigError, match=r"model.params.base.*.name.: not a key of a fitted stage"):
        load_run_config(_config(tmp_path, "x", "exposure_reranker", {"base": {"checkpoint": "b", "name": "x"}}))
    with pytest.raises(ConfigError, match=r"from_run.*not a plain name"):
        load_run_config(_config(tmp_path, "x", "exposure_reranker", {"base": {"from_run": "../up"}}))
    with pytest.raises(ConfigError, match="this run itself"):
        load_run_config(_config(tmp_path, "x", "exposure_reranker", {"base": {"from_run": "x"}}))
    quiet = {"progress": False, "log": lambda *_: None}
    with pytest.raises(ConfigError, match="no finished run of that name"):
        run_experiment(
            _config(tmp_path, "x", "exposure_reranker", {"base": {"from_run": "missing"}}), tmp_path / "runs", **quiet
        )
    with pytest.raises(ConfigError, match="not a saved trustrec model"):
        run_experiment(
            _config(tmp_path, "x", "exposure_reranker", {"base": {"checkpoint": str(tmp_path)}}),
            tmp_path / "runs",
            **quiet,
        )
    assert not (tmp_path / "runs" / "x").exists()
