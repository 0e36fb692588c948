"""Composed recommenders: a recommender made of named, nested recommenders (its *stages*).

A re-ranker or a rule filter holds a ``base`` model, the LLM ranker a ``retriever``. Each stage is
a config field holding a :class:`~trustrec.models.ModelSpec`; the fitted stage is the attribute
``<stage>_``. One class does for all of them what each did by hand:

- ``fit`` fits every stage it does not already hold fitted (:meth:`ComposedRecommender.with_fitted`
  hands it fitted stages, reused as they are, never refitted), then the composed model's own state
  (``_setup``);
- :meth:`ComposedRecommender.from_fitted` wraps fitted stages without fitting anything;
- ``save`` nests each stage's state under ``<stage>_/`` (arrays ``<stage>_/<name>`` in
  ``state.safetensors``, values under the key ``<stage>_`` in ``fitted.json``), the layout
  checkpoints have always had;
- ``get_params(deep=True)`` adds ``<stage>__<param>`` for every parameter of every stage and
  ``set_params(**{"base__k": 20})`` reaches into a stage (scikit-learn's ``__`` convention).

:func:`compose` builds a registered composed model by name over fitted stages: the one call that
puts an LLM ranker over an already fitted retriever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

import numpy as np

from trustrec.data import Dataset, Split
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import ModelSpec, model_class

__all__ = ["ComposedRecommender", "compose"]

_C = TypeVar("_C", bound="ComposedRecommender")


def _train_dataset(data: Dataset | Split) -> Dataset:
    """The training Dataset of ``data`` (a Split's training part, or a Dataset as it is)."""
    if isinstance(data, Split):
        return data.train_dataset()
    if isinstance(data, Dataset):
        return data
    raise DataError(f"expected the training Dataset or a Split, got {type(data).__name__}")


def _spec_of(model: Recommender) -> ModelSpec:
    """The :class:`ModelSpec` that builds another (unfitted) ``model``: its registered name and config."""
    return ModelSpec(
        name=getattr(model, "name", "") or type(model).__name__,
        params=model.dump_config() if hasattr(model, "dump_config") else {},
    )


class ComposedRecommender(Recommender):
    """A recommender made of named stages (see the module docstring).

    Subclasses name their stages in ``stages`` (config fields of type :class:`ModelSpec`) and
    compute their own fitted state from the training data in ``_setup(train)``; the fitted stages
    are ``<stage>_`` by then.

    Parameters
    ----------
    config : Config, mapping or None
        The model's settings, the stages' :class:`ModelSpec` among them; None: build them from
        the keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).
    """

    stages: ClassVar[tuple[str, ...]] = ()
    _held_stages: dict[str, Recommender]  # set by with_fitted on the copy it returns; absent otherwise

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Dataset, options: FitOptions) -> None:
        held = getattr(self, "_held_stages", {})
        for stage in self.stages:
            if stage in held:
                setattr(self, f"{stage}_", _check_stage(type(self).__name__, stage, held[stage], train))
            else:
                setattr(self, f"{stage}_", getattr(self.config, stage).build().fit(train, options))
        self._setup(train)

    def _setup(self, train: Dataset) -> None:
        """The composed model's own fitted state, from the training data (stages are fitted)."""

    def with_fitted(self: _C, **fitted: Recommender) -> _C:
        """A fresh, unfitted copy whose ``fit`` reuses these fitted stages as they are (never
        refitting them) and fits the others; each stage's spec in the config becomes the given
        model's. ``fitted``: stage name -> fitted Recommender."""
        who = type(self).__name__
        for stage, model in fitted.items():
            if stage not in self.stages:
                raise ConfigError(f"{who}: {stage!r} is not a stage (stages: {list(self.stages)})")
            if not isinstance(model, Recommender) or not model.is_fitted():
                raise ConfigError(f"{who}: the {stage} {type(model).__name__} is not a fitted Recommender")
        out = type(self)(**{**self.get_params(), **{s: _spec_of(m) for s, m in fitted.items()}})
        out._held_stages = {**getattr(self, "_held_stages", {}), **fitted}
        return out

    @classmethod
    def from_fitted(cls, fitted: Recommender | Mapping[str, Recommender], train: Dataset | Split, **params):
        """A fitted composed model over already fitted stages (trained on ``train``, a Dataset or
        the Split they were fitted on), fitting nothing: ``fitted`` is the model of the first stage
        (``base``, ``retriever``) or a mapping stage -> fitted model naming every stage;
        ``params``: the composed model's other settings."""
        fitted = dict(fitted) if isinstance(fitted, Mapping) else {cls.stages[0]: fitted}
        missing = [s for s in cls.stages if s not in fitted]
        if missing:
            raise ConfigError(f"{cls.__name__}.from_fitted: give a fitted model for every stage; missing {missing}")
        unknown = [s for s in fitted if s not in cls.stages]
        if unknown:
            raise ConfigError(f"{cls.__name__}.from_fitted: {unknown} are not stages (stages: {list(cls.stages)})")
        train = _train_dataset(train)
        for stage, model in fitted.items():
            if not isinstance(model, Recommender) or not model.is_fitted():
                raise ConfigError(f"{cls.__name__}.from_fitted: the {stage} {type(model).__name__} is not fitted")
            if model.n_items_ != train.n_items:
                raise ConfigError(
                    f"{cls.__name__}.from_fitted: the {stage} knows {model.n_items_} items but the "
                    f"dataset '{train.name}' has {train.n_items}"
                )
        composed = cls(**{**params, **{s: _spec_of(m) for s, m in fitted.items()}})
        first = fitted[cls.stages[0]]
        composed.n_users_, composed.n_items_ = first.n_users_, first.n_items_
        composed.adopt_vocabulary(first)
        for stage, model in fitted.items():
            setattr(composed, f"{stage}_", model)
        composed._setup(train)
        return composed

    # -- parameters ------------------------------------------------------------------------------
    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The config's parameters; with ``deep=True`` also ``<stage>__<param>`` for every
        parameter of every stage (its full config, defaults included; nested stages recursively)."""
        params = super().get_params()
        if deep:
            for stage in self.stages:
                for key, value in self._stage_model(stage).get_params(deep=True).items():
                    params[f"{stage}__{key}"] = value
        return params

    def set_params(self: _C, **params: Any) -> _C:
        """A fresh, unfitted object with these parameters changed; ``<stage>__<param>`` changes a
        parameter of that stage (``base__k=20``), deeper stages as ``retriever__base__k``."""
        own = {k: v for k, v in params.items() if "__" not in k}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            if "__" in key:
                stage, rest = key.split("__", 1)
                if stage not in self.stages:
                    raise ConfigError(
                        f"{type(self).__name__}.set_params: {key!r}: {stage!r} is not a stage "
                        f"(stages: {list(self.stages)}; parameters: {list(super().get_params())})"
                    )
                nested.setdefault(stage, {})[rest] = value
        merged = {**super().get_params(), **own}
        for stage, changes in nested.items():
            spec = merged[stage]
            spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
            merged[stage] = _changed_spec(spec, changes, f"{type(self).__name__}.set_params({stage}__...)")
        return type(self)(**merged)

    def with_params(self: _C, **params: Any) -> _C:
        """:meth:`set_params` under the name the run and audit code reads better with."""
        return self.set_params(**params)

    def _stage_model(self, stage: str) -> Recommender:
        fitted = getattr(self, f"{stage}_", None)
        if fitted is None:
            fitted = getattr(self, "_held_stages", {}).get(stage)
        return fitted if fitted is not None else getattr(self.config, stage).build()

    # -- persistence -----------------------------------------------------------------------------
    def _state(self):
        nested = {f"{stage}_" for stage in self.stages}
        arrays: dict[str, np.ndarray] = {}
        values: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key in nested:
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            else:
                values[key] = value
        for stage in self.stages:
            stage_arrays, stage_values = getattr(self, f"{stage}_")._state()
            arrays.update({f"{stage}_/{k}": v for k, v in stage_arrays.items()})
            values[f"{stage}_"] = stage_values
        return arrays, values

    def _restore(self, arrays, values) -> None:
        nested = {f"{stage}_" for stage in self.stages}
        for key, value in values.items():
            if key not in nested:
                setattr(self, key, value)
        for key, value in arrays.items():
            if key.split("/", 1)[0] not in nested:
                setattr(self, key, value)
        for stage in self.stages:
            prefix = f"{stage}_/"
            if f"{stage}_" not in values:
                raise DataError(f"the saved state has no fitted {stage} (no '{stage}_' in fitted.json)")
            model = getattr(self.config, stage).build()
            model._restore(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, values[f"{stage}_"]
            )
            setattr(self, f"{stage}_", model)


def _changed_spec(spec: ModelSpec, changes: dict[str, Any], who: str) -> ModelSpec:
    """``spec`` with ``changes`` applied (its own keys, or ``<stage>__<param>`` of a composed stage);
    validated by building the stage, so a typo fails here."""
    klass = model_class(spec.name)
    own = {k: v for k, v in changes.items() if "__" not in k}
    deep = {k: v for k, v in changes.items() if "__" in k}
    params = {**spec.params, **own}
    try:
        model = klass(**params)
        if deep:
            params = model.set_params(**deep).get_params()
    except ConfigError as exc:
        raise ConfigError(f"{who}: {exc}") from None
    return ModelSpec(name=spec.name, params=params)


def _check_stage(who: str, stage: str, model: Recommender, train: Dataset) -> Recommender:
    """A held fitted stage fits the training data: same items, in the same order when both know ids."""
    if model.n_items_ != train.n_items:
        raise ConfigError(
            f"{who}: the fitted {stage} knows {model.n_items_} items but the training data "
            f"'{train.name}' has {train.n_items}"
        )
    if model.has_vocabulary() and list(model.item_ids_) != [str(i) for i in train.item_ids]:
        raise ConfigError(
            f"{who}: the fitted {stage} was trained on other items than '{train.name}' (its item "
            "ids differ); fit it on this data"
        )
    return model


def compose(
    name: str, data: Dataset | Split, *, options: FitOptions | None = None, **params: Any
) -> ComposedRecommender:
    """The registered composed model ``name`` (``"llm_ranker"``, ``"calibrated_reranker"`` ...)
    on ``data`` (a Dataset or a Split: its training part), over fitted stages: a ``params`` value
    that is a fitted Recommender for a stage (``retriever=sasrec``) is used as it is, never
    refitted; the other params are the model's settings. When every stage is given fitted nothing
    is fitted (:meth:`ComposedRecommender.from_fitted`); otherwise the missing stages and the model
    are fitted with ``options``.

    Parameters
    ----------
    name : str
        Registered name of a composed model.
    data : Dataset or Split
        The training data (a Split: its training part).
    options : FitOptions or None
        How to fit the missing stages and the model; None: the defaults.
    **params
        The model's settings, and fitted Recommenders for stages to reuse as they are.

    Returns
    -------
    ComposedRecommender
        The fitted composed model.

    Raises
    ------
    ConfigError
        When ``name`` is not a registered composed model, or a setting is invalid.
    """
    klass = model_class(name)
    if not (isinstance(klass, type) and issubclass(klass, ComposedRecommender)):
        raise ConfigError(f"compose: {name!r} is not a composed model (it has no stages to nest)")
    fitted = {k: v for k, v in params.items() if k in klass.stages and isinstance(v, Recommender)}
    settings = {k: v for k, v in params.items() if k not in fitted}
    if len(fitted) == len(klass.stages):
        return klass.from_fitted(fitted, data, **settings)
    # fit returns the model itself
    return cast(ComposedRecommender, klass(**settings).with_fitted(**fitted).fit(data, options))
