"""The Recommender protocol: config-only constructor, ``fit -> self``, queries in, TopK out.

Save format: a folder with ``config.json`` (model name, config, trustrec version), ``state.safetensors``
(every fitted array, name ending in ``_``) and ``fitted.json`` (fitted scalars); never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from trustrec._config import Config, Configurable
from trustrec.data import Dataset, QueryBatch, Split
from trustrec.errors import ConfigError, DataError, NotFittedError
from trustrec.models._topk import TopK, topk_from_scores

__all__ = ["Recommender", "FitOptions", "TopK", "topk_from_scores"]


@dataclass(frozen=True)
class FitOptions:
    """How to fit, not what to fit: seed, device, progress display, and optional early stopping.

    ``validator`` maps a (partly trained) model to a score where higher is better (the eval layer
    builds one from a validation set, e.g. NDCG@10); iterative models check it every
    ``eval_every`` epochs and stop after ``patience`` checks without improvement, restoring the
    best state.
    """

    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    validator: Callable[["Recommender"], float] | None = field(default=None, compare=False)
    eval_every: int = 1
    patience: int = 5
    threads: int | None = None

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Recommender(Configurable):
    """Base class. Subclasses set ``config_class`` and implement ``_fit`` and ``score`` (full
    ranking) or override ``recommend``.

    ``capabilities`` says what a model can do, for the conformance checks and the audits:
    ``"score"`` (full-ranking scores), ``"user_embeddings"``, ``"uses_history"`` (answers change
    with the query's history), ``"stochastic_training"``, ``"text"`` ...
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Config]] = Config
    capabilities: ClassVar[frozenset[str]] = frozenset({"score"})

    # -- fitting ------------------------------------------------------------------------
    def fit(self, data: Dataset | Split, options: FitOptions | None = None) -> "Recommender":
        """Fit on a Dataset (all its interactions) or a Split (its training part). Returns self."""
        options = options or FitOptions()
        train = data.train_dataset() if isinstance(data, Split) else data
        if not isinstance(train, Dataset):
            raise DataError(f"{type(self).__name__}.fit expects a Dataset or a Split, got {type(data).__name__}")
        if train.n_interactions == 0:
            raise DataError(f"{type(self).__name__}.fit: the training data '{train.name}' has no interactions")
        for key in [k for k in vars(self) if k.endswith("_")]:
            delattr(self, key)  # a second fit starts from scratch
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self._fit(train, options)
        return self

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        raise NotImplementedError

    def is_fitted(self) -> bool:
        return hasattr(self, "n_items_")

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(train) first")

    # -- answering queries --------------------------------------------------------------
    def score(self, queries: QueryBatch) -> np.ndarray:
        """(n_queries, n_items) scores; NaN where the model cannot score."""
        raise NotImplementedError(f"{type(self).__name__} does not score the full catalog")

    def _prepare(self, queries: QueryBatch) -> QueryBatch:
        self._check_fitted()
        if not isinstance(queries, QueryBatch):
            raise DataError(f"{type(self).__name__}: expected a QueryBatch, got {type(queries).__name__}")
        cleaned, _ = queries.restrict(self.n_users_, self.n_items_)
        return cleaned

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """Top-``k`` in-catalog items per query (from the query's candidates when it has them);
        history items are excluded unless ``exclude_seen=False``."""
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        scores = np.asarray(self.score(queries), dtype=np.float64)
        return topk_from_scores(scores, k, exclusion_mask(queries, self.n_items_, exclude_seen))

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted arrays (for safetensors) and fitted JSON-able values."""
        arrays, values = {}, {}
        for key, value in vars(self).items():
            if not key.endswith("_"):
                continue
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            if isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            else:
                values[key] = value
        return arrays, values

    def _restore(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        for key, value in {**values, **arrays}.items():
            setattr(self, key, value)

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        from trustrec._cache import atomic_directory, atomic_write_text
        from trustrec._version import __version__

        path = Path(path)
        with atomic_directory(path) as tmp:
            atomic_write_text(tmp / "config.json", json.dumps(
                {"model": self.name, "config": self.dump_config(), "trustrec_version": __version__}, indent=1))
            if self.is_fitted():
                arrays, values = self._state()
                save_file(arrays, str(tmp / "state.safetensors"))
                atomic_write_text(tmp / "fitted.json", json.dumps(values, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        """Load any saved model (``Recommender.load``) or check the type (``SASRec.load``)."""
        from safetensors.numpy import load_file

        from trustrec.models._registry import model_class

        path = Path(path)
        meta_path = path / "config.json"
        if not meta_path.exists():
            raise DataError(f"{path}: not a saved trustrec model (no config.json)")
        meta = json.loads(meta_path.read_text())
        klass = model_class(meta["model"])
        if cls is not Recommender and not issubclass(klass, cls):
            raise DataError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        model = klass(meta["config"])
        if (path / "state.safetensors").exists():
            arrays = load_file(str(path / "state.safetensors"))
            values = json.loads((path / "fitted.json").read_text())
            model._restore(arrays, values)
        return model


def exclusion_mask(queries: QueryBatch, n_items: int, exclude_seen: bool) -> np.ndarray | None:
    """Items a query must not get: its history (unless asked) and, with candidates, all others."""
    mask = queries.seen_mask(n_items) if exclude_seen else None
    if queries.candidates is not None:
        outside = ~queries.candidates.to_dense_mask(n_items)
        mask = outside if mask is None else (mask | outside)
    return mask
