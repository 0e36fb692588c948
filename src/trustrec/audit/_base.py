"""The audit protocol: a frozen config, ``run(model, split) -> AuditResult``, a registry by name.

Audits on one model share an :class:`AuditInputs`: the model's top-K lists on the evaluation
part, per-user accuracy, item popularity and user/item groups are computed once and reused, so a
full audit ranks the catalog once.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, ClassVar

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field, PositiveInt

from trustrec._config import MAX_SEED, Config, Configurable
from trustrec._registry import NamedRegistry
from trustrec.audit._result import DIMENSIONS, AuditResult, Threshold, judge
from trustrec.errors import ConfigError
from trustrec.eval import MAX_N_BOOT

if TYPE_CHECKING:
    import scipy.sparse as sp

    from trustrec.data import Split
    from trustrec.models import Recommender
    from trustrec.parallel import Executor

__all__ = [
    "Audit",
    "AuditConfig",
    "AuditInputs",
    "ModelSpecField",
    "RetrainingAudit",
    "audit_class",
    "available_audits",
    "register_audit",
]


class AuditConfig(Config):
    """Settings every audit shares.

    Each audit's config extends these with its own fields.

    Parameters
    ----------
    k : int
        Length of the top-K lists the audit measures (positive; default 10).
    part : str
        The split part evaluated (default ``"test"``).
    n_boot : int
        Bootstrap resamples for confidence intervals (0: none; at most ``MAX_N_BOOT``).
    seed : int
        Seed of every random choice the audit makes (user sample, bootstrap, attacks).
    max_users : int or None
        Caps the evaluated users (a seeded sample) for audits whose model calls are expensive;
        None: every user with a target in ``part``.
    min_group_size : int
        Groups with fewer members are flagged and get no CI (default 20).
    thresholds : tuple of Threshold
        Rules that judge the estimates into a verdict (see :class:`Verdict`); empty: the verdict
        is ``no_threshold`` unless the audit derives thresholds from its own settings.
    """

    k: PositiveInt = 10
    part: str = "test"
    n_boot: int = Field(500, ge=0, le=MAX_N_BOOT)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    max_users: PositiveInt | None = None
    min_group_size: PositiveInt = 20
    thresholds: tuple[Threshold, ...] = ()


def _check_model_spec(value):
    if value is None:
        return None
    from trustrec.models import ModelSpec, available_models

    spec = ModelSpec.model_validate(value)
    if spec.name not in available_models():
        raise ValueError(f"unknown model {spec.name!r}; known: {', '.join(available_models())}")
    return spec.model_dump(mode="json")


#: A config field naming a model to build and train: ``{"name": ..., "params": {...}}`` or None.
ModelSpecField = Annotated[dict | None, AfterValidator(_check_model_spec)]


class AuditInputs:
    """What audits of one fitted model on one split share, computed on first use.

    The top-K lists, per-user accuracy, item popularity and user/item groups are computed once
    and reused by every audit given these inputs.

    Parameters
    ----------
    model : Recommender
        The fitted model audited.
    split : Split
        The data split it was trained on.
    part : str
        The evaluated part of ``split`` (default ``"test"``).
    k : int
        Length of the top-K lists.
    max_users : int or None
        Evaluate a seeded sample of this many users; None: all users with a target in ``part``.
    seed : int
        Seed of the user sample and of the evaluation.
    progress : bool
        Whether to show progress while ranking.
    batch_size : int or None
        Queries scored per batch; None: the model's default.
    executor : executor or None
        Runs the cells of grid audits (poisoning's attacks x budgets), see
        :mod:`trustrec.parallel`; None: serial. Results do not depend on it.

    Raises
    ------
    NotFittedError
        If ``model`` is not fitted.
    """

    def __init__(
        self,
        model: Recommender,
        split: Split,
        *,
        part: str = "test",
        k: int = 10,
        max_users: int | None = None,
        seed: int = 0,
        progress: bool = False,
        batch_size: int | None = None,
        executor: Executor | None = None,
    ):
        model._check_fitted()
        self.model, self.split, self.part, self.k = model, split, part, k
        self.seed, self.progress, self.batch_size = seed, progress, batch_size
        self.executor = executor
        eval_set = split.eval_set(part)
        self.n_users_total = len(eval_set)
        if max_users is not None and max_users < len(eval_set):
            rows = np.sort(np.random.default_rng(seed).choice(len(eval_set), max_users, replace=False))
            eval_set = eval_set[rows]
        self.eval_set = eval_set

    @property
    def dataset(self):
        return self.split.dataset

    @property
    def queries(self):
        return self.eval_set.queries

    @cached_property
    def item_popularity(self) -> np.ndarray:
        return np.bincount(self.split.train.item, minlength=self.dataset.n_items)

    @cached_property
    def train_counts(self) -> np.ndarray:
        """Training interactions per user index."""
        return np.bincount(self.split.train.user, minlength=self.dataset.n_users)

    @cached_property
    def evaluation(self):
        """The evaluator's result on the (sampled) eval users: per-user accuracy and the top-K."""
        from trustrec.eval import evaluate

        metrics = [f"{m}@{self.k}" for m in ("ndcg", "hr", "recall", "mrr")]
        return evaluate(
            self.model,
            self.eval_set,
            metrics=metrics,
            n_boot=0,
            keep_topk=True,
            batch_size=self.batch_size,
            progress=self.progress,
            seed=self.seed,
        )

    @property
    def topk(self) -> np.ndarray:
        return self.evaluation.topk.items

    @cached_property
    def user_groups(self) -> pd.DataFrame:
        """One row per evaluated user: attribute groups (age banded, missing as "(missing)") and
        activity level; empty of attributes when the dataset has no user table."""
        from trustrec.data import user_group_table

        users = self.dataset.users
        table = user_group_table(
            users if users is not None else pd.DataFrame(index=range(self.dataset.n_users)), self.train_counts
        )
        return table.iloc[self.queries.users].reset_index(drop=True)

    def item_groups(self, column: str | None = None) -> tuple[str, sp.csr_matrix, list[str], dict] | None:
        """(membership matrix, group names, counts) of an item column (``None``: guessed), or
        None when the dataset has no such column."""
        from trustrec.data import guess_item_group_column, item_group_matrix

        items = self.dataset.items
        if items is None:
            return None
        column = column or guess_item_group_column(items)
        if column is None:
            return None
        key = f"_item_groups_{column}"
        if key not in self.__dict__:
            self.__dict__[key] = (column, *item_group_matrix(items, column))
        return self.__dict__[key]


class Audit(Configurable):
    """Base class of every audit.

    Subclasses set ``name``, ``dimension``, ``description``, ``needs`` (what the audit needs, in
    words, for ``trustrec audit --list``) and implement ``_run``; ``_why_not`` returns the reason
    it does not apply to a model/data, or None.

    Parameters
    ----------
    config : AuditConfig, mapping or None
        The audit's settings, validated against ``config_class``; None: build them from the
        keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).

    Raises
    ------
    ConfigError
        If both a config and keyword arguments are given, or the settings are invalid.
    """

    name: ClassVar[str] = ""
    dimension: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[str] = "a fitted model and a split"
    # What the audit asks of the model (Recommender.audit_gap): "lists" (only the top-K lists of
    # the evaluation queries), "queries" (answers to new queries) or "retraining" (fresh copies).
    requires: ClassVar[str] = "queries"
    config: AuditConfig
    config_class: ClassVar[type[Config]] = AuditConfig

    def inputs_for(self, model: Recommender, split: Split, progress: bool = False) -> AuditInputs:
        """The :class:`AuditInputs` this audit's config asks for (its k, part, user sample and seed).

        Parameters
        ----------
        model : Recommender
            The fitted model.
        split : Split
            The data split.
        progress : bool
            Whether to show progress while ranking.

        Returns
        -------
        AuditInputs
        """
        c = self.config
        return AuditInputs(model, split, part=c.part, k=c.k, max_users=c.max_users, seed=c.seed, progress=progress)

    def run(
        self, model: Recommender, split: Split, *, inputs: AuditInputs | None = None, progress: bool = False
    ) -> AuditResult:
        """Audit a fitted ``model`` on ``split``.

        Parameters
        ----------
        model : Recommender
            The fitted model audited.
        split : Split
            The data split it was trained on.
        inputs : AuditInputs or None
            Shared inputs, to share work with other audits (its k, part and user sample must
            match this audit's config); None: computed for this audit.
        progress : bool
            Whether to show progress.

        Returns
        -------
        AuditResult
            The estimates, evidence and settings, judged against the thresholds; a
            ``not_applicable`` result when the audit does not apply to the model or data.

        Raises
        ------
        ConfigError
            If ``inputs`` were computed for a different model.
        """
        if inputs is None:
            inputs = self.inputs_for(model, split, progress)
        elif inputs.model is not model:
            raise ConfigError(f"{self.name}: inputs were computed for a different model")
        settings = {
            "audit": self.name,
            "config": self.dump_config(),
            "model": getattr(model, "name", ""),
            "model_config": model.dump_config() if hasattr(model, "dump_config") else None,
            "dataset": inputs.dataset.name,
            "part": inputs.part,
            "n_users": len(inputs.eval_set),
            "n_users_total": inputs.n_users_total,
        }
        reason = self._model_gap(model)
        if reason is None and len(inputs.eval_set) == 0:
            reason = f"no users with a target in the '{inputs.part}' part"
        if reason is None:
            reason = self._why_not(inputs)
        if reason:
            return AuditResult.not_applicable(self.name, self.dimension, reason, settings)
        result = self._run(inputs)
        verdict = judge(result.estimates, self._thresholds(result.estimates))
        return AuditResult(
            result.audit,
            result.dimension,
            result.estimates,
            result.evidence,
            {**settings, **result.settings},
            verdict,
            result.warnings,
            result.plots,
            result.summary,
        )

    def _why_not(self, inputs: AuditInputs) -> str | None:
        return None

    def _model_gap(self, model) -> str | None:
        """Why ``model`` cannot serve this audit's ``requires`` (its ``audit_gap``), or None."""
        gap = getattr(model, "audit_gap", None)
        return gap(self.requires) if callable(gap) else None

    def _thresholds(self, estimates) -> list[Threshold]:
        """The configured thresholds plus any an audit derives from its own settings."""
        return list(self.config.thresholds)

    def _run(self, inputs: AuditInputs) -> AuditResult:
        raise NotImplementedError

    def _result(self, estimates, **kw) -> AuditResult:
        return AuditResult(self.name, self.dimension, estimates, **kw)


class RetrainingAudit(Audit):
    """An audit that trains fresh copies of the model (poisoning, feedback loops, unlearning).

    What to train is the config's ``model_spec``, else the audited model's own name and config.

    Parameters
    ----------
    config : AuditConfig, mapping or None
        The audit's settings (a config with a ``model_spec`` field); None: build them from the
        keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).

    Raises
    ------
    ConfigError
        If both a config and keyword arguments are given, or the settings are invalid.
    """

    needs: ClassVar[str] = "a model that can be rebuilt from its name and config (or a model_spec) and retrained"
    requires: ClassVar[str] = "retraining"

    def _model_gap(self, model) -> str | None:
        gap = getattr(model, "audit_gap", None)
        if not callable(gap):
            return None
        if getattr(self.config, "model_spec", None) is None:
            why = gap("retraining")
            if why is not None:
                return f"{why}; or give this audit model_spec={{'name': ..., 'params': ...}} to retrain instead"
        return gap("queries")

    def _spec(self, model):
        from trustrec.models import ModelSpec

        if self.config.model_spec is not None:
            return ModelSpec.model_validate(self.config.model_spec)
        if not getattr(model, "name", "") or not hasattr(model, "dump_config"):
            raise ConfigError(
                f"{self.name}: the audited {type(model).__name__} has no registered name; "
                "give model_spec={'name': ..., 'params': ...}"
            )
        return ModelSpec(name=model.name, params=model.dump_config())


def fit_spec(spec, data, *, seed: int, progress: bool = False):
    """Build ``spec`` (a ModelSpec) and fit it on ``data`` (a Split or Dataset); returns the model
    and the seconds it took. ``progress`` shows the fit's own progress bar, so a long retraining
    audit is never silent."""
    from trustrec.models import FitOptions

    t0 = time.perf_counter()
    model = spec.build().fit(data, FitOptions(seed=seed, progress=progress))
    return model, time.perf_counter() - t0


# -- registry ----------------------------------------------------------------------------------------
def _check_audit(name: str, obj) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, Audit)):
        return f"expected an Audit subclass, got {obj!r}"
    if obj.name != name or obj.dimension not in DIMENSIONS:
        return (
            f"{obj.__name__} has name {obj.name!r} and dimension {obj.dimension!r}; expected the name "
            f"{name!r} and a dimension in {DIMENSIONS}"
        )
    return None


#: Every audit by name (kind ``audits`` of :mod:`trustrec.registry`): the built-ins are the
#: classes decorated with :func:`register_audit` in the modules of ``trustrec.audit`` (imported
#: on the first lookup); third-party audits come from the entry-point group ``trustrec.audits``.
AUDITS: NamedRegistry[type[Audit]] = NamedRegistry(
    "audit",
    None,
    ConfigError,
    "See `trustrec audit --list`.",
    list_up_to=40,
    group="trustrec.audits",
    packages=("trustrec.audit",),
    check=_check_audit,
)


def register_audit(cls: type[Audit]) -> type[Audit]:
    """Class decorator: register an audit under ``cls.name`` (a later one of the same name wins).

    Parameters
    ----------
    cls : type of Audit
        The audit class.

    Returns
    -------
    type of Audit
        ``cls`` itself.

    Raises
    ------
    ConfigError
        If ``cls`` has no name or its dimension is not one of ``DIMENSIONS``.
    """
    if not cls.name or cls.dimension not in DIMENSIONS:
        raise ConfigError(f"{cls.__name__}: an audit needs a name and a dimension in {DIMENSIONS}")
    AUDITS.register(cls)
    return cls


def audit_class(name: str) -> type[Audit]:
    """The audit class registered under ``name``.

    Parameters
    ----------
    name : str
        The audit's registered name (see ``trustrec audit --list``).

    Returns
    -------
    type of Audit

    Raises
    ------
    ConfigError
        If no audit has that name.
    """
    return AUDITS.get(name)


def available_audits(dimension: str | None = None) -> dict[str, type[Audit]]:
    """The registered audits, in the order of ``DIMENSIONS``, then discovery order.

    Parameters
    ----------
    dimension : str or None
        Only the audits of this trust dimension; None: all.

    Returns
    -------
    dict of str to type of Audit
        Audit classes by name.

    Raises
    ------
    ConfigError
        If ``dimension`` is not one of ``DIMENSIONS``.
    """
    if dimension is not None and dimension not in DIMENSIONS:
        raise ConfigError(f"unknown dimension {dimension!r}; one of {', '.join(DIMENSIONS)}")
    # the taxonomy's order (DIMENSIONS), then discovery order: runs, index.json and tables follow it
    chosen = [(n, c) for n, c in AUDITS.all().items() if dimension is None or c.dimension == dimension]
    return dict(sorted(chosen, key=lambda nc: DIMENSIONS.index(nc[1].dimension)))
