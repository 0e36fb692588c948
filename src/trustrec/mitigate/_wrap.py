"""Recommenders that wrap a fitted base model (re-rankers, constraint filters, rule enforcement):
fitting, wrapping an already fitted base, and saving with the base nested, in one place."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustrec.data import Dataset, Split
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import ModelSpec

__all__ = ["WrapperRecommender", "train_dataset"]


def train_dataset(data: Dataset | Split) -> Dataset:
    """The training Dataset of ``data`` (a Split's training part, or a Dataset as it is)."""
    if isinstance(data, Split):
        return data.train_dataset()
    if isinstance(data, Dataset):
        return data
    raise DataError(f"expected the training Dataset or a Split, got {type(data).__name__}")


class WrapperRecommender(Recommender):
    """A fitted ``base_`` (built from ``config.base``) plus the wrapper's own fitted state, which
    subclasses compute in ``_setup(train)``; saved with the base's state nested under ``base_/``."""

    capabilities = frozenset({"uses_history", "candidates"})
    devices = ("cpu", "cuda", "mps")   # the base model checks the device it is fitted on

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self.base_ = self.config.base.build().fit(train, options)
        self._setup(train)

    def _setup(self, train: Dataset) -> None:
        raise NotImplementedError

    @classmethod
    def from_fitted(cls, base: Recommender, train: Dataset | Split, **params):
        """A fitted wrapper over an already fitted ``base`` (trained on ``train``, a Dataset or the
        Split it was fitted on), without refitting it; ``params``: the wrapper's other settings."""
        if not base.is_fitted():
            raise ConfigError(f"{cls.__name__}.from_fitted: the base {type(base).__name__} is not fitted")
        train = train_dataset(train)
        if base.n_items_ != train.n_items:
            raise ConfigError(f"{cls.__name__}.from_fitted: the base knows {base.n_items_} items but the dataset "
                              f"'{train.name}' has {train.n_items}")
        spec = ModelSpec(name=getattr(base, "name", "") or type(base).__name__,
                         params=base.dump_config() if hasattr(base, "dump_config") else {})
        wrapper = cls(**{**params, "base": spec})
        wrapper.n_users_, wrapper.n_items_ = base.n_users_, base.n_items_
        wrapper.adopt_vocabulary(base)
        wrapper.base_ = base
        wrapper._setup(train)
        return wrapper

    def _state(self):
        arrays: dict[str, np.ndarray] = {}
        values: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key == "base_":
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            else:
                values[key] = value
        base_arrays, base_values = self.base_._state()
        arrays.update({f"base_/{k}": v for k, v in base_arrays.items()})
        values["base_"] = base_values
        return arrays, values

    def _restore(self, arrays, values) -> None:
        for key, value in values.items():
            if key != "base_":
                setattr(self, key, value)
        for key, value in arrays.items():
            if not key.startswith("base_/"):
                setattr(self, key, value)
        base = self.config.base.build()
        base._restore({k[len("base_/"):]: v for k, v in arrays.items() if k.startswith("base_/")}, values["base_"])
        self.base_ = base
