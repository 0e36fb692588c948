"""The built-in mitigation arms (see :mod:`trustrec._arms` for the kinds and their interfaces).

==========================  ================  =============================================
name                        kind              what it builds
==========================  ================  =============================================
``fake_user_detector``      data_defence      :class:`FakeUserDetector` (params: its config)
``calibrated``              reranker          calibrated re-ranking (Steck 2018)
``exposure``                reranker          popularity-aware xQuAD (label ``xquad``)
``injection_flag``          text_guard        the prompt's ``"flag"`` injection guard
``injection_strip``         text_guard        the prompt's ``"strip"`` injection guard
``randomised_response``     training_defence  randomised response on training items (``epsilon``)
``history_minimisation``    input_defence     drop / generalise sensitive history items (``mode``)
``constrained``             control           :class:`ConstraintControl` (``n_different_groups``)
``rule_enforced``           rule_enforcer     :class:`RuleEnforcement`
``exact_retrain``           unlearning        :class:`ForgetMethod` ``exact`` (retrain without the users)
``gradient_ascent``         unlearning        :class:`ForgetMethod` ``gradient_ascent`` (approximate)
==========================  ================  =============================================
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from trustrec._arms import MitigationArm
from trustrec.mitigate.control import (
    ConstrainedRecommender,
    ControlCatalog,
    RuleEnforcedRecommender,
    allowed_items,
)
from trustrec.mitigate.defences.detection import FakeUserDetector
from trustrec.mitigate.defences.privacy import (
    keep_probability,
    minimise_history,
    noise_training,
    revealing_items,
    sensitive_mask,
)
from trustrec.mitigate.defences.tradeoff import RerankerArm
from trustrec.models.llm import find_injections, guard_text

if TYPE_CHECKING:
    import pandas as pd

    from trustrec.data import QueryBatch, Split
    from trustrec.models import Recommender

__all__ = [
    "ConstraintControl",
    "ForgetMethod",
    "HistoryMinimisation",
    "InjectionGuard",
    "RandomisedResponse",
    "RuleEnforcement",
    "builtin_arms",
]


class InjectionGuard:
    """A text guard: ``mode`` ``"flag"`` or ``"strip"`` (:func:`trustrec.models.llm.guard_text`),
    rendered by the model's own prompt (``prompt_mode``); ``detect`` is
    :func:`trustrec.models.llm.find_injections`.

    Parameters
    ----------
    mode : {"off", "flag", "strip"}
        The guard mode: ``"flag"`` shows instruction-like text escaped and flagged,
        ``"strip"`` removes it, ``"off"`` leaves the text as it is.
    """

    def __init__(self, mode: Literal["off", "flag", "strip"] = "flag"):
        self.mode = self.prompt_mode = mode

    def guard(self, text: str) -> str:
        """The text as shown under this guard (:func:`trustrec.models.llm.guard_text`).

        Parameters
        ----------
        text : str
            An item text.

        Returns
        -------
        str
            The guarded text.
        """
        return guard_text(text, self.mode)

    @staticmethod
    def detect(text: str) -> bool:
        """Whether ``text`` has instruction-like content.

        Parameters
        ----------
        text : str
            An item text.

        Returns
        -------
        bool
            True when :func:`trustrec.models.llm.find_injections` finds anything.
        """
        return bool(find_injections(text))


class RandomisedResponse:
    """Randomised response on the training items (:func:`noise_training`) at ``epsilon``.

    Parameters
    ----------
    epsilon : float
        The strength of the keep/replace coin (at least 0; ``inf`` keeps every item).

    Raises
    ------
    ConfigError
        When ``epsilon`` is not a number, NaN or negative.
    """

    def __init__(self, epsilon: float):
        self.epsilon = float(epsilon)
        p = keep_probability(self.epsilon)
        self.label = f"rr eps={self.epsilon:g}"
        self.what = f"training items through randomised response, eps={self.epsilon:g}"
        self.short = f"randomised response at eps={self.epsilon:g}"
        self.title = f"{self.short} (keep probability {p:.3f})"
        self.absent, self.applied = "noise", "noised"  # wording of the audit's descriptions
        self.settings = {"epsilon": self.epsilon, "keep_probability": p}

    def apply(self, split: Split, *, seed: int, users: npt.ArrayLike | None = None) -> Split:
        """The training data the model is retrained on (:func:`noise_training`).

        Parameters
        ----------
        split : Split
            The split whose training part is noised.
        seed : int
            Seed of the random draws.
        users : array_like or None
            User indices whose rows are noised; None: every user's.

        Returns
        -------
        Split
            The split with noised training interactions.
        """
        return noise_training(split, self.epsilon, seed=seed, users=users)


def _check_epsilon(params: dict) -> dict:
    eps: Any = params.get("epsilon")  # checked by keep_probability
    keep_probability(eps)  # raises a ConfigError naming a bad epsilon
    if set(params) - {"epsilon"}:
        raise ValueError(f"randomised_response takes 'epsilon' only; got {sorted(params)}")
    return {"epsilon": float(eps)}


class HistoryMinimisation:
    """History minimisation (:func:`minimise_history`): ``mode`` ``"drop"`` or ``"generalise"``.

    Parameters
    ----------
    mode : {"drop", "generalise"}
        Drop sensitive items from the histories, or show them by their generalised text.

    Raises
    ------
    ValueError
        When ``mode`` is neither.
    """

    def __init__(self, mode: Literal["drop", "generalise"] = "drop"):
        if mode not in ("drop", "generalise"):
            raise ValueError(f"history_minimisation: mode must be 'drop' or 'generalise'; got {mode!r}")
        self.mode = self.label = mode

    def apply(
        self, model: Recommender, queries: QueryBatch, sensitive: np.ndarray, *, items: pd.DataFrame | None = None
    ) -> tuple[Recommender, QueryBatch]:
        """What to ask instead (:func:`minimise_history` with this ``mode``).

        Parameters
        ----------
        model : Recommender
            The fitted recommender.
        queries : QueryBatch
            The queries.
        sensitive : numpy.ndarray
            Boolean per item index: the sensitive items.
        items : pandas.DataFrame or None
            The items table (needed by ``"generalise"``).

        Returns
        -------
        tuple of (Recommender, QueryBatch)
            The model and the queries to ask.
        """
        return minimise_history(model, queries, sensitive, self.mode, items=items)

    @staticmethod
    def sensitive_mask(dataset, items, owner: str = "sensitive items") -> np.ndarray:
        """:func:`sensitive_mask`: a boolean mask over ``dataset``'s items.

        Parameters
        ----------
        dataset : Dataset
            The dataset whose items are meant.
        items : array_like
            Raw item ids, item indices or a boolean mask.
        owner : str
            Who asks, for error messages.

        Returns
        -------
        numpy.ndarray
            Boolean per item index.
        """
        return sensitive_mask(dataset, items, owner)

    @staticmethod
    def revealing_items(train, labels, n_items: int, n: int) -> np.ndarray:
        """:func:`revealing_items`: the items that most reveal the attribute ``labels``.

        Parameters
        ----------
        train : Interactions
            The training interactions.
        labels : array_like
            One attribute value per user index (None/NaN: missing).
        n_items : int
            The catalog size.
        n : int
            How many items to return (at most).

        Returns
        -------
        numpy.ndarray
            Item indices, most revealing first.
        """
        return revealing_items(train, labels, n_items, n)


def _check_minimisation(params: dict) -> dict:
    HistoryMinimisation(**params)
    return dict(params)


class ConstraintControl:
    """User control (``control`` arm ``constrained``): the :class:`ControlCatalog` constraints are
    stated over, :func:`allowed_items` and :class:`ConstrainedRecommender` around a fitted model.
    ``settings`` (``n_different_groups``) go to every wrapper; the audit's settings win.

    Parameters
    ----------
    **settings
        :class:`~trustrec.mitigate.ConstrainedConfig` fields given to every wrapper.
    """

    def __init__(self, **settings):
        self.settings = dict(settings)

    @staticmethod
    def catalog(
        items, *, n_items: int | None = None, group_column: str | None = None, year_column: str | None = None
    ) -> ControlCatalog:
        """The catalog constraints are stated over (:meth:`ControlCatalog.from_items`).

        Parameters
        ----------
        items : pandas.DataFrame or None
            The items table.
        n_items : int or None
            The catalog size when there is no items table.
        group_column : str or None
            The item-group column; None: guessed.
        year_column : str or None
            The year column; None: guessed.

        Returns
        -------
        ControlCatalog
            The catalog.
        """
        return ControlCatalog.from_items(items, n_items=n_items, group_column=group_column, year_column=year_column)

    @staticmethod
    def allowed(parsed, catalog: ControlCatalog, histories) -> np.ndarray:
        """:func:`allowed_items`: the items each parsed request allows.

        Parameters
        ----------
        parsed : sequence of ParsedConstraint or None
            One parsed request per user.
        catalog : ControlCatalog
            The catalog.
        histories : Ragged
            The users' histories, rows aligned with ``parsed``.

        Returns
        -------
        numpy.ndarray
            ``(len(parsed), n_items)`` boolean.
        """
        return allowed_items(parsed, catalog, histories)

    def constrain(self, model, split, **settings) -> ConstrainedRecommender:
        """The fitted ``model`` with each query's constraints enforced.

        Parameters
        ----------
        model : Recommender
            The fitted model.
        split : Dataset or Split
            The data it was fitted on.
        **settings
            :class:`~trustrec.mitigate.ConstrainedConfig` fields (over the arm's ``settings``).

        Returns
        -------
        ConstrainedRecommender
            The wrapper around ``model``.
        """
        return ConstrainedRecommender.from_fitted(model, split, **{**self.settings, **settings})


def _check_control(params: dict) -> dict:
    extra = set(params) - {"n_different_groups"}
    if extra:
        raise ValueError(f"constrained takes 'n_different_groups' only; got {sorted(params)}")
    if "n_different_groups" in params:
        n = params["n_different_groups"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"constrained: n_different_groups must be a positive integer; got {n!r}")
    return dict(params)


class RuleEnforcement:
    """Platform rules (``rule_enforcer`` arm ``rule_enforced``): :class:`RuleEnforcedRecommender`
    around a fitted model."""

    @staticmethod
    def enforce(
        model, split, *, blocked_items=(), max_exposure_share: float | None = None, n_candidates: int = 100
    ) -> RuleEnforcedRecommender:
        """The fitted ``model`` with the rules enforced on every call.

        Parameters
        ----------
        model : Recommender
            The fitted model.
        split : Dataset or Split
            The data it was fitted on (its item ids resolve ``blocked_items``).
        blocked_items : sequence
            Raw item ids never shown.
        max_exposure_share : float or None
            The exposure cap, in (0, 1]; None: none.
        n_candidates : int
            How deep into the base's lists are read, at least.

        Returns
        -------
        RuleEnforcedRecommender
            The wrapper around ``model``.
        """
        return RuleEnforcedRecommender.from_fitted(
            model,
            split,
            blocked_items=tuple(blocked_items),
            max_exposure_share=max_exposure_share,
            n_candidates=n_candidates,
        )


def _no_params(name: str):
    def check(params: dict) -> dict:
        if params:
            raise ValueError(f"{name} takes no parameters; got {sorted(params)}")
        return {}

    return check


def _detector_params(params: dict) -> dict:
    return FakeUserDetector.validate_config(params).model_dump(mode="json")


class ForgetMethod:
    """An ``unlearning`` arm: :func:`trustrec.mitigate.forget` with one ``method``.

    Parameters
    ----------
    method : {"exact", "gradient_ascent"}
        The forget method.
    """

    def __init__(self, method: Literal["exact", "gradient_ascent"]):
        self.method = method

    def supports(self, model) -> bool:
        """Whether the method applies to ``model``.

        Parameters
        ----------
        model : Recommender
            A fitted model.

        Returns
        -------
        bool
            Always for ``exact``; for ``gradient_ascent``, whether the model has approximate
            unlearning.
        """
        from trustrec.models import has_capability
        from trustrec.models.training import supports_approximate_unlearning

        return self.method == "exact" or (
            has_capability(model, "unlearnable") and supports_approximate_unlearning(model)
        )

    def forget(self, model, split, users, *, seed: int = 0, **settings):
        """A new model that has forgotten the user indices ``users`` (:func:`trustrec.mitigate.forget`).

        Parameters
        ----------
        model : Recommender
            The fitted model (unchanged).
        split : Dataset or Split
            The data it was fitted on.
        users : array_like
            User indices to forget.
        seed : int
            Seed of the retrain or of the ascent's batches.
        **settings
            Further keywords of :func:`trustrec.mitigate.forget` (``steps``, ...).

        Returns
        -------
        Recommender
            The model without the users.
        """
        from trustrec.mitigate._unlearning import forget

        return forget(model, split, users, by="index", method=self.method, seed=seed, **settings)


def builtin_arms() -> list[MitigationArm]:
    """The built-in mitigation arms (module docstring), which :data:`trustrec.mitigate.MITIGATIONS`
    loads on first lookup.

    Returns
    -------
    list of MitigationArm
        A fresh arm for each built-in name.
    """
    return [
        MitigationArm(
            "fake_user_detector",
            "data_defence",
            FakeUserDetector,
            check=_detector_params,
            label="detector",
            title="fake-user detector",
            description="unsupervised fake-user detection on profile features; flagged users dropped",
        ),
        MitigationArm(
            "calibrated",
            "reranker",
            partial(RerankerArm, "calibrated"),
            title="calibrated re-ranking",
            description="calibrated recommendations (Steck 2018)",
        ),
        MitigationArm(
            "exposure",
            "reranker",
            partial(RerankerArm, "exposure"),
            label="xquad",
            title="xQuAD",
            description="popularity-aware xQuAD (Abdollahpouri et al. 2019)",
        ),
        MitigationArm(
            "injection_flag",
            "text_guard",
            partial(InjectionGuard, "flag"),
            label="flag",
            description="instruction-like item text shown escaped and flagged",
        ),
        MitigationArm(
            "injection_strip",
            "text_guard",
            partial(InjectionGuard, "strip"),
            label="strip",
            description="instruction-like item text removed",
        ),
        MitigationArm(
            "randomised_response",
            "training_defence",
            RandomisedResponse,
            check=_check_epsilon,
            title="randomised response",
            description="training items through randomised response",
        ),
        MitigationArm(
            "history_minimisation",
            "input_defence",
            HistoryMinimisation,
            check=_check_minimisation,
            defaults={"mode": "drop"},
            title="history minimisation",
            description="sensitive history items dropped or shown by their generalised text",
        ),
        MitigationArm(
            "constrained",
            "control",
            ConstraintControl,
            check=_check_control,
            label="constrained",
            title="constraint filtering",
            description="each query's stated constraints enforced on any model (allowed items as "
            "candidates, or the deeper list post-filtered)",
        ),
        MitigationArm(
            "rule_enforced",
            "rule_enforcer",
            RuleEnforcement,
            check=_no_params("rule_enforced"),
            label="enforced",
            title="platform rule enforcement",
            description="blocked items and per-item exposure caps enforced over the whole call",
        ),
        MitigationArm(
            "exact_retrain",
            "unlearning",
            partial(ForgetMethod, "exact"),
            check=_no_params("exact_retrain"),
            label="exact",
            title="exact unlearning",
            description="a fresh copy retrained, same seed, without the users' interactions",
        ),
        MitigationArm(
            "gradient_ascent",
            "unlearning",
            partial(ForgetMethod, "gradient_ascent"),
            check=_no_params("gradient_ascent"),
            label="approximate",
            title="approximate unlearning",
            description="gradient ascent on the forgotten users' sequences with a retain term",
        ),
    ]
