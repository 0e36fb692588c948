"""Recommenders that wrap a fitted base model (re-rankers, constraint filters, rule enforcement):
a :class:`~trustrec.models.ComposedRecommender` with one stage, ``base``. Fitting, wrapping an
already fitted base (``from_fitted``), ``base__<param>`` parameters and saving with the base
nested under ``base_/`` all come from the composed base class."""

from __future__ import annotations

from trustrec.data import Dataset, Split
from trustrec.errors import DataError
from trustrec.models import ComposedRecommender, Recommender

__all__ = ["WrapperRecommender", "train_dataset"]


def train_dataset(data: Dataset | Split) -> Dataset:
    """The training Dataset of ``data`` (a Split's training part, or a Dataset as it is).

    Parameters
    ----------
    data : Dataset or Split
        The data a model is fitted on.

    Returns
    -------
    Dataset
        Its training Dataset.

    Raises
    ------
    DataError
        When ``data`` is neither a Dataset nor a Split.
    """
    if isinstance(data, Split):
        return data.train_dataset()
    if isinstance(data, Dataset):
        return data
    raise DataError(f"expected the training Dataset or a Split, got {type(data).__name__}")


class WrapperRecommender(ComposedRecommender):
    """A fitted ``base_`` (built from ``config.base``) plus the wrapper's own fitted state, which
    subclasses compute in ``_setup(train)``; saved with the base's state nested under ``base_/``.

    Parameters
    ----------
    config : Config, mapping or None
        The wrapper's settings (``base`` among them), validated against ``config_class``;
        None: build them from the keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).
    """

    stages = ("base",)
    capabilities = frozenset({"uses_history", "candidates"})
    devices = ("cpu", "cuda", "mps")  # the base model checks the device it is fitted on

    base_: Recommender  # set by fitting (or from_fitted)

    def _setup(self, train: Dataset) -> None:
        raise NotImplementedError
