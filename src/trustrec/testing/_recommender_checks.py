"""``RecommenderChecks``: the checks every recommender must pass.

Usage (pytest)::

    class TestSASRec(RecommenderChecks):
        component = SASRec
        configs = [{"epochs": 2, "embedding_size": 8}]

The capability checks (section 13) run by what the component declares
(:func:`trustrec.models.has_capability`); a check whose capability the component lacks is
skipped, and the skip reason says why (not declared, or declared without the protocol's methods).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, Interactions, QueryBatch, Ragged, Split, split_leave_one_out
from trustrec.errors import DataError, NotFittedError
from trustrec.models import CAPABILITIES, FitOptions, Recommender, TopK, capability_gap, declared_capabilities

__all__ = ["RecommenderChecks", "toy_dataset"]


def toy_dataset(n_users: int = 30, n_items: int = 25, n_inter: int = 400, seed: int = 0) -> Dataset:
    """A small dataset with structure (users prefer a block of items) and one unused item.

    Every user has at least three interactions; the last item of the catalog has none.

    Parameters
    ----------
    n_users : int
        Number of users.
    n_items : int
        Number of catalog items (each with a title).
    n_inter : int
        Number of interactions (at least ``3 * n_users``).
    seed : int
        Seed of the random interactions and timestamps.

    Returns
    -------
    Dataset
        The dataset, named ``"toy"``.
    """
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.repeat(np.arange(n_users), 3), rng.integers(0, n_users, n_inter - 3 * n_users)])
    block = users % 3
    items = (block * ((n_items - 1) // 3) + rng.integers(0, (n_items - 1) // 3, len(users))) % (n_items - 1)
    frame = pd.DataFrame(
        {"user_id": users.astype(str), "item_id": items.astype(str), "timestamp": rng.permutation(len(users))}
    )
    catalog = pd.DataFrame({"item_id": np.arange(n_items).astype(str), "title": [f"item {i}" for i in range(n_items)]})
    return Dataset.from_frame(frame, name="toy", items=catalog)


def _fitted_state(model: Recommender) -> dict[str, Any]:
    arrays, values = model._state()
    return {**arrays, **values}


class RecommenderChecks:
    """The conformance checks of the recommender contract, inherited by a pytest test class.

    The class sets ``component`` (the Recommender class), ``configs`` (small, fast settings; the
    first is used to fit) and optionally ``k``. The checks cover construction and config round
    trip, fit and the unfitted error, determinism by seed, the output contract (in-catalog,
    unique, sorted, candidates respected), edge queries, batching, save / load, no mutation,
    unused items and empty data, and each declared capability (skipped, with the reason, when
    the component lacks it). They fit on :func:`toy_dataset` with a leave-one-out split.
    """

    component: ClassVar[type[Recommender]]
    configs: ClassVar[list[dict[str, Any]]] = [{}]
    k: ClassVar[int] = 5

    # -- helpers ------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> tuple[Dataset, Split]:
        ds = toy_dataset()
        return ds, split_leave_one_out(ds, short_users="train")

    def make(self, i: int = 0) -> Recommender:
        return self.component(**self.configs[i])

    def fitted(self, data: tuple[Dataset, Split], seed: int = 0) -> Recommender:
        return self.make().fit(data[1], FitOptions(seed=seed, progress=False))

    def queries(self, data: tuple[Dataset, Split]) -> QueryBatch:
        return data[1].eval_set("test").queries

    def assert_same_recs(self, a: TopK, b: TopK) -> None:
        np.testing.assert_array_equal(a.items, b.items)
        # float32 models: a different batch shape may change the last bits of a score
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)

    # -- 1-3 construction -----------------------------------------------------------------
    def test_default_construction_and_repr(self) -> None:
        model = self.component()
        assert type(model).__name__ in repr(model)

    def test_config_round_trip(self) -> None:
        model = self.make()
        assert model.validate_config(model.dump_config()) == model.config
        assert self.component(model.dump_config()).config == model.config

    def test_init_sets_only_config(self) -> None:
        model = self.make()
        assert list(vars(model)) == ["config"]
        assert not [k for k in dir(model) if k.endswith("_") and not k.startswith("_") and hasattr(model, k)]

    def test_unknown_parameter_is_rejected(self) -> None:
        from trustrec.errors import ConfigError

        with pytest.raises(ConfigError, match="no_such_param"):
            self.component(no_such_param=1)

    # -- 4-5 fit --------------------------------------------------------------------------
    def test_fit_returns_self_keeps_config_adds_only_fitted(self, data: tuple[Dataset, Split]) -> None:
        model = self.make()
        config = copy.deepcopy(model.config)
        before = set(vars(model))
        assert model.fit(data[1], FitOptions(progress=False)) is model
        assert model.config == config
        assert all(k.endswith("_") for k in set(vars(model)) - before)

    def test_unfitted_raises(self, data: tuple[Dataset, Split]) -> None:
        model = self.make()
        assert not model.is_fitted()
        with pytest.raises(NotFittedError, match=type(model).__name__):
            model.recommend(self.queries(data), self.k)
        model.fit(data[1], FitOptions(progress=False))
        assert model.is_fitted()

    # -- 6 determinism ----------------------------------------------------------------------
    def test_deterministic_by_seed(self, data: tuple[Dataset, Split]) -> None:
        q = self.queries(data)
        a = self.fitted(data, 3).recommend(q, self.k)
        b = self.fitted(data, 3).recommend(q, self.k)
        self.assert_same_recs(a, b)
        model = self.fitted(data, 3)
        model.fit(data[1], FitOptions(seed=3, progress=False))
        self.assert_same_recs(a, model.recommend(q, self.k))

    # -- 7 output contract --------------------------------------------------------------
    def test_in_catalog_unique_sorted(self, data: tuple[Dataset, Split]) -> None:
        ds, _split = data
        model = self.fitted(data)
        q = self.queries(data)
        top = model.recommend(q, self.k)
        assert top.items.shape == (len(q), self.k)
        for i in range(len(q)):
            row, scores = top.items[i], top.scores[i]
            valid = row >= 0
            assert np.all(row[valid] < ds.n_items)
            assert len(set(row[valid])) == valid.sum()
            assert not np.any(np.isnan(scores))
            assert np.all(np.diff(scores[valid]) <= 1e-12)
            assert not set(row[valid]) & set(q.histories.row(i))  # history excluded by default
            assert valid[: valid.sum()].all()  # padding only at the end
        everything = model.recommend(q[:2], ds.n_items + 10)
        assert everything.k == ds.n_items

    def test_candidates_are_respected(self, data: tuple[Dataset, Split]) -> None:
        model = self.fitted(data)
        q = self.queries(data)[:3]
        cands = Ragged.from_rows([[0, 1, 2, 3], [5, 6], [7, 8, 9]])
        top = model.recommend(q.with_candidates(cands), 3, exclude_seen=False)
        for i in range(3):
            assert set(top.row(i)) <= set(cands.row(i))

    # -- 8 edge cases -----------------------------------------------------------------------
    def test_edge_queries_do_not_raise(self, data: tuple[Dataset, Split]) -> None:
        ds = data[0]
        model = self.fitted(data)
        edge = QueryBatch(
            np.array([0, -1, 10_000, 1]),
            Ragged.from_rows([[], [1, 2], [3], [ds.n_items + 5, 2]]),
            candidates=Ragged.from_rows([[0, 1, 2], [ds.n_items + 7, 4], [], [1]]),
        )
        top = model.recommend(edge, self.k)
        assert top.items.shape[0] == 4
        assert len(top.row(2)) == 0  # empty candidate list -> empty list
        assert set(top.row(1)) <= {4}  # unknown candidate dropped
        plain = model.recommend(QueryBatch(np.array([-1]), Ragged.from_rows([[]])), self.k)
        assert plain.items.shape == (1, self.k)

    # -- 9 batching -----------------------------------------------------------------------
    def test_batched_equals_unbatched(self, data: tuple[Dataset, Split]) -> None:
        model = self.fitted(data)
        q = self.queries(data)
        batch = model.recommend(q, self.k)
        for i in range(0, len(q), 7):
            self.assert_same_recs(batch[i], model.recommend(q[i : i + 1], self.k))

    # -- 10 persistence ---------------------------------------------------------------------
    def test_save_load_round_trip(self, data: tuple[Dataset, Split], tmp_path: Path) -> None:
        model = self.fitted(data)
        q = self.queries(data)
        model.save(tmp_path / "m")
        assert not list((tmp_path / "m").glob("*.pkl"))
        loaded = Recommender.load(tmp_path / "m")
        assert type(loaded) is type(model) and loaded.config == model.config
        self.assert_same_recs(model.recommend(q, self.k), loaded.recommend(q, self.k))
        unfitted = self.make().save(tmp_path / "u")
        assert not Recommender.load(unfitted).is_fitted()

    # -- 11 no mutation ---------------------------------------------------------------------
    def test_recommend_mutates_nothing(self, data: tuple[Dataset, Split]) -> None:
        model = self.fitted(data)
        q = self.queries(data)
        before = _fitted_state(model)
        model.recommend(q, self.k)
        after = _fitted_state(model)
        assert before.keys() == after.keys()
        for key in before:
            if isinstance(before[key], np.ndarray):
                np.testing.assert_array_equal(before[key], after[key])
            elif callable(getattr(before[key], "equals", None)):  # pandas objects as fitted state
                assert before[key].equals(after[key])
            else:
                assert before[key] == after[key]
        assert not q.histories.values.flags.writeable

    # -- 12 missing data ----------------------------------------------------------------------
    def test_fits_with_unused_items_and_rejects_empty(self, data: tuple[Dataset, Split]) -> None:
        ds = data[0]
        assert np.bincount(ds.interactions.item, minlength=ds.n_items).min() == 0  # an unused item
        empty = ds.with_interactions(Interactions(np.empty(0), np.empty(0), np.empty(0)))
        with pytest.raises(DataError, match="no interactions"):
            self.make().fit(empty, FitOptions(progress=False))

    # -- 13 capabilities: chosen by what the component declares -------------------------------
    def require(self, capability: str) -> None:
        """Skip the calling check, saying why, unless the component has ``capability``."""
        gap = capability_gap(self.component, capability)
        if gap is not None:
            pytest.skip(f"capability check '{capability}' skipped: {gap}")

    def test_declared_capabilities_are_known(self) -> None:
        unknown = declared_capabilities(self.component) - set(CAPABILITIES)
        assert not unknown, f"{self.component.__name__} declares unknown capabilities {sorted(unknown)}"

    def test_capability_score(self, data: tuple[Dataset, Split]) -> None:
        self.require("score")
        model = self.fitted(data)
        q = self.queries(data)[:4]
        assert np.asarray(model.score(q)).shape == (4, data[0].n_items)

    def test_capability_user_embeddings(self, data: tuple[Dataset, Split]) -> None:
        self.require("user_embeddings")
        model: Any = self.fitted(data)  # its capability's methods, not on Recommender
        q = self.queries(data)[:4]
        emb = np.asarray(model.user_embeddings(q))
        assert emb.ndim == 2 and emb.shape[0] == 4 and np.isfinite(emb).all()

    def test_capability_text(self, data: tuple[Dataset, Split]) -> None:
        self.require("text")
        model: Any = self.fitted(data)  # its capability's methods, not on Recommender
        variant = model.with_item_text(data[0].items)
        assert type(variant) is type(model) and variant is not model and variant.is_fitted()

    def test_capability_prompt(self) -> None:
        self.require("prompt")
        model: Any = self.make()  # the capability's method, not on Recommender
        assert hasattr(model.prompt_template(), "item_fields")

    def test_capability_unlearnable(self, data: tuple[Dataset, Split]) -> None:
        self.require("unlearnable")
        model: Any = self.fitted(data)  # the capability's method, not on Recommender
        assert model.can_unlearn()

    def test_capability_answer_likelihood(self, data: tuple[Dataset, Split]) -> None:
        self.require("answer_likelihood")
        model: Any = self.fitted(data)  # its capability's methods, not on Recommender
        q = model._prepare(self.queries(data)[:3])
        candidates = np.asarray(model.answer_candidates(q, 4))
        assert candidates.ndim == 2 and len(candidates) == 3 and (candidates < data[0].n_items).all()
        prompts = model.answer_prompts(q, candidates)
        assert len(prompts) == 3 and all(isinstance(p.text, str) and p.text for p in prompts)
        assert all(0 <= p.n_history <= n for p, n in zip(prompts, q.histories.lengths))
        items = candidates[candidates >= 0][:4]
        texts = model.answer_texts(items)
        assert len(texts) == len(items) and all(isinstance(t, str) for t in texts)
        assert model.answer_reduction in ("sum", "mean") and isinstance(model.answers_from_candidates, bool)
        scored = model.answer_backend.score_continuations(
            [prompts[0].text], [texts[:2]], reduction=model.answer_reduction
        )
        assert np.isfinite(scored[0]).all() and (scored[0] <= 0).all()  # log-probabilities

    def test_capability_sequence_likelihood(self, data: tuple[Dataset, Split]) -> None:
        self.require("sequence_likelihood")
        model: Any = self.fitted(data)  # its capability's methods, not on Recommender
        q = model._prepare(self.queries(data)[:3])
        targets = np.arange(3) % data[0].n_items
        for base in (False, True):
            losses = np.asarray(model.answer_losses(q, targets, base=base))
            assert losses.shape == (3,) and np.isfinite(losses).all() and (losses > 0).all()
        assert isinstance(model.loss_positions, int) and model.loss_positions >= 1
