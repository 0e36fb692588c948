"""Mitigation arms by name: the neutral registry audits ask and :mod:`trustrec.mitigate` fills.

fairlearn's rule, kept here: metrics never import mitigations. An audit that measures a
mitigation names it (``defences: ["fake_user_detector"]``), and the arm is resolved through this
module, which imports nothing of the mitigation layer at module level; the built-in arms are
loaded on first lookup from :func:`trustrec.mitigate.defences.builtin_arms` (the mitigation side
declares them), and anyone adds one with :func:`register_mitigation` (the public
``trustrec.mitigate.MITIGATIONS`` / ``register_mitigation`` are this registry) or, from another
distribution, through the entry-point group ``trustrec.mitigations`` (each entry point a
:class:`MitigationArm`; ``trustrec.registry.registry("mitigations")``). So an audit
never imports ``trustrec.mitigate``, and a new mitigation reaches every audit that takes its
kind without an audit edit.

An arm is a :class:`MitigationArm`: a ``name``, a ``kind`` (:data:`ARM_KINDS`), a ``build``
callable (``build(**params)`` returns the configured mitigation), an optional ``check``
(``check(params) -> params``: validated, normalised parameters, run when a config names the
arm), a short ``label`` for tables and a ``title`` for prose. What ``build`` returns depends on
the kind; the audit that takes that kind calls only this interface:

- ``data_defence`` (``poisoning``): an object with ``fit(split) -> fitted``; the fitted one has
  ``report(is_fake) -> {"precision", "recall", "f1", "n_flagged", ...}`` (is_fake: bool per user
  index), ``drop_flagged(split) -> Split`` (the defended training data) and ``description``.
- ``reranker`` (``feedback_loop``, ``fairness_mitigations``): an object with
  ``wrap(model, train, *, strength) -> Recommender`` (re-ranks a fitted model's lists) and,
  for the trade-off audit, ``tradeoff(model, eval_set, strengths, *, train, k, batch_size,
  n_candidates, n_boot, seed) -> (points, table)``.
- ``text_guard`` (``text_attack``): an object with ``prompt_mode`` (a guard mode the model's
  prompt renders itself, ``"flag"`` / ``"strip"``, or ``None``), ``guard(text) -> str`` (the
  text as shown; applied by the audit to the attacked item-text column when ``prompt_mode`` is
  ``None``) and ``detect(text) -> bool``.
- ``training_defence`` (``membership_inference``): an object with ``apply(split, *, seed,
  users) -> Split`` (training data the model is retrained on), ``label``, ``what`` (a clause
  for descriptions), ``title`` and ``settings`` (a dict of table columns); optionally
  ``short``, ``absent`` and ``applied`` (wording of the descriptions).
- ``input_defence`` (``attribute_inference``, history minimisation): an object with
  ``apply(model, queries, sensitive, *, items) -> (model, queries)`` (what to ask instead),
  ``sensitive_mask(dataset, items, owner)``, ``revealing_items(train, labels, n_items, n)``
  and ``label``.
- ``control`` (``user_control``): user-initiated control over any fitted model, constraints
  stated in the query text. An object with ``catalog(items, *, n_items, group_column,
  year_column)`` (the catalog the constraints are stated over: ``n_items``, ``membership``
  (items x groups, bool), ``group_names``, ``titles``, ``years``, ``group_column``,
  ``year_column``, ``items_titled(title)``), ``constrain(model, split, *, n_candidates,
  item_group_column, year_column, min_similarity[, mode]) -> Recommender`` (the model with each
  query's constraints enforced; it also offers ``catalog()`` (its fitted catalog) and
  ``parse(texts, catalog) -> parsed`` (per text: ``constraints``, ``unparsed``, ``structured``,
  ``complete``, ``text``, ``describe()``); without ``mode`` it serves as the parser only) and
  ``allowed(parsed, catalog, histories) -> (n, n_items) bool`` (the items each parsed request
  allows). The built-in ``constrained`` is :class:`trustrec.mitigate.ConstrainedRecommender`.
- ``rule_enforcer`` (``platform_rules``): system-initiated control. An object with
  ``enforce(model, split, *, blocked_items, max_exposure_share, n_candidates) -> Recommender``
  (every call's lists obey the rules); the wrapper offers ``rules`` (``blocked``: item indices;
  ``violations(top, n_items) -> {"slots", "violating_slots", "blocked_slots", "excess_slots",
  "items_over_cap", "lists_with_blocked", "blocked_per_list", "cap"}``), ``unknown_blocked_``
  (blocked ids not in the catalog) and ``depth(k)`` (how deep it reads the base's lists). The
  built-in ``rule_enforced`` is :class:`trustrec.mitigate.RuleEnforcedRecommender`.

- ``unlearning`` (``unlearning``): a forget request's method. An object with ``supports(model)
  -> bool`` (whether it applies to this fitted model) and ``forget(model, split, users, *,
  seed, **settings) -> Recommender`` (a new model that has forgotten the user indices
  ``users``; the given one is unchanged; ``unlearning_`` on the result records ``seconds`` and
  the method's trace). The audit's ``exact`` arm is the reference (default ``exact_retrain``:
  retraining without the users); its ``approximate`` arm is what is verified against it
  (default ``gradient_ascent``: :func:`trustrec.models.training.approximate_unlearn`).

An audit that takes one arm of a kind (``user_control``'s ``control``, ``platform_rules``'s
``rules``) has the built-in arm as its default, so the default config measures what it always did.

Configs name arms as a name or ``{"name": ..., "params": {...}}`` (:class:`ArmSpec`);
:func:`check_arm_specs` validates names and kinds when the config is built (an unknown name
lists the known ones) and :func:`build_arm` turns a spec into the mitigation object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trustrec._registry import NamedRegistry
from trustrec.errors import ConfigError

__all__ = [
    "ARM_KINDS",
    "MITIGATIONS",
    "ArmSpec",
    "MitigationArm",
    "available_mitigations",
    "build_arm",
    "check_arm_specs",
    "mitigation_arm",
    "register_mitigation",
]

ARM_KINDS = (
    "data_defence",
    "reranker",
    "text_guard",
    "training_defence",
    "input_defence",
    "control",
    "rule_enforcer",
    "unlearning",
)
_BUILTINS_FROM = "trustrec.mitigate.defences"


@dataclass(frozen=True)
class MitigationArm:
    """A named mitigation an audit can take (module docstring).

    Parameters
    ----------
    name : str
        The name configs use to take the arm (non-empty).
    kind : str
        What the arm is, one of :data:`ARM_KINDS`; says which audits take it and which
        interface the object ``build`` returns has.
    build : callable
        ``build(**params)`` returns the configured mitigation.
    check : callable or None
        ``check(params) -> params``: the validated, normalised parameters, run when a config
        names the arm (it raises on bad ones); None: the parameters are passed as given.
    label : str
        A short name for tables; empty: ``name``.
    title : str
        A name for prose; empty: ``label``.
    description : str
        One line on what the arm does, for reports.
    defaults : dict
        Parameters used where a config does not give them.

    Raises
    ------
    ConfigError
        When ``name`` is empty, ``kind`` is not one of :data:`ARM_KINDS` or ``build`` is not
        callable.
    """

    name: str
    kind: str
    build: Callable[..., Any]
    check: Callable[[dict], dict] | None = None
    label: str = ""
    title: str = ""
    description: str = ""
    defaults: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a mitigation arm needs a name; got {self.name!r}")
        if self.kind not in ARM_KINDS:
            raise ConfigError(f"mitigation arm {self.name!r}: kind must be one of {ARM_KINDS}; got {self.kind!r}")
        if not callable(self.build):
            raise ConfigError(f"mitigation arm {self.name!r}: build must be callable")
        object.__setattr__(self, "label", self.label or self.name)
        object.__setattr__(self, "title", self.title or self.label)

    def checked(self, params: dict | None) -> dict:
        """The parameters a config gives, over ``defaults``, through ``check``.

        Parameters
        ----------
        params : dict or None
            The parameters given (None: none).

        Returns
        -------
        dict
            The validated, normalised parameters.
        """
        params = {**self.defaults, **(params or {})}
        return dict(self.check(params)) if self.check is not None else params

    def create(self, params: dict | None = None) -> Any:
        """The configured mitigation (``build(**params)``, parameters checked first).

        Parameters
        ----------
        params : dict or None
            The parameters (over ``defaults``; None: the defaults).

        Returns
        -------
        object
            What ``build`` returns; its interface depends on ``kind`` (module docstring).
        """
        return self.build(**self.checked(params))


def _builtins() -> Iterable[MitigationArm]:
    return importlib.import_module(_BUILTINS_FROM).builtin_arms()


def _check_arm(name: str, obj) -> str | None:
    if not isinstance(obj, MitigationArm):
        return f"expected a trustrec.mitigate.MitigationArm, got {type(obj).__name__}"
    if obj.name != name:
        return f"the arm is named {obj.name!r}, the entry point {name!r}"
    return None


MITIGATIONS: NamedRegistry[MitigationArm] = NamedRegistry(
    "mitigation",
    _builtins,
    ConfigError,
    "Register one with trustrec.mitigate.register_mitigation.",
    list_up_to=40,
    group="trustrec.mitigations",
    check=_check_arm,
)


def register_mitigation(arm: MitigationArm | None = None, *, overwrite: bool = False, **fields: Any) -> MitigationArm:
    """Add an arm: a :class:`MitigationArm`, or its fields as keywords (``name``, ``kind``,
    ``build``, ...). A name already taken raises unless ``overwrite``.

    Parameters
    ----------
    arm : MitigationArm or None
        The arm to register; None: build it from ``fields``.
    overwrite : bool
        Whether to replace an arm already registered under the same name.
    **fields
        The fields of a :class:`MitigationArm` (not together with ``arm``).

    Returns
    -------
    MitigationArm
        The registered arm.

    Raises
    ------
    ConfigError
        When both ``arm`` and ``fields`` are given, the fields make no valid arm, or the name
        is taken and ``overwrite`` is false.
    """
    if arm is None:
        arm = MitigationArm(**fields)
    elif fields:
        raise ConfigError("register_mitigation: pass a MitigationArm or its fields, not both")
    MITIGATIONS.add(arm, overwrite=overwrite)
    return arm


def available_mitigations(kind: str | None = None) -> dict[str, MitigationArm]:
    """The registered mitigation arms (built-in ones, entry points and registered ones).

    Parameters
    ----------
    kind : str or None
        Only the arms of this kind (one of :data:`ARM_KINDS`); None: all of them.

    Returns
    -------
    dict of str to MitigationArm
        Each arm by name.

    Raises
    ------
    ConfigError
        When ``kind`` is not one of :data:`ARM_KINDS`.
    """
    if kind is not None and kind not in ARM_KINDS:
        raise ConfigError(f"unknown mitigation kind {kind!r}; one of {', '.join(ARM_KINDS)}")
    return {n: a for n, a in MITIGATIONS.all().items() if kind is None or a.kind == kind}


def mitigation_arm(name: str, kind: str | None = None) -> MitigationArm:
    """The arm registered as ``name``; with ``kind``, an arm of another kind is an error that
    lists the known arms of that kind.

    Parameters
    ----------
    name : str
        The arm's registered name.
    kind : str or None
        The kind the arm must be (one of :data:`ARM_KINDS`); None: any.

    Returns
    -------
    MitigationArm
        The registered arm.

    Raises
    ------
    ConfigError
        When no arm is registered as ``name`` (the known names are listed) or it is of another
        kind than ``kind``.
    """
    arm = MITIGATIONS.get(name)
    if kind is not None and arm.kind != kind:
        known = ", ".join(available_mitigations(kind)) or "none"
        raise ConfigError(f"mitigation {name!r} is a {arm.kind} arm; this takes {kind} arms (known: {known})")
    return arm


class ArmSpec(BaseModel):
    """An arm named in a config: ``name`` and its ``params``.

    Parameters
    ----------
    name : str
        The registered name of the arm.
    params : dict
        The parameters its ``build`` is called with (checked by the arm's ``check``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict = Field(default_factory=dict)


def _as_spec(value) -> ArmSpec:
    if isinstance(value, ArmSpec):
        return value
    if isinstance(value, str):
        return ArmSpec(name=value)
    if isinstance(value, dict):
        return ArmSpec.model_validate(value)
    raise ValueError(f"an arm is a name or {{'name': ..., 'params': {{...}}}}; got {value!r}")


def check_arm_specs(values, kind: str) -> tuple[ArmSpec, ...]:
    """Config values (names or ``{"name", "params"}``) as checked :class:`ArmSpec` of ``kind``:
    known names, the right kind, parameters validated by the arm; a name given twice raises.

    Parameters
    ----------
    values : iterable or None
        The arms as a config gives them: each a name, a ``{"name": ..., "params": {...}}`` dict
        or an :class:`ArmSpec`; None: none.
    kind : str
        The kind every arm must be (one of :data:`ARM_KINDS`).

    Returns
    -------
    tuple of ArmSpec
        The specs in the given order, their parameters as the arms' ``check`` returns them.

    Raises
    ------
    ValueError
        When a value is not a name or spec, a name is given twice, unknown or of another kind,
        or an arm rejects its parameters (a ``ValueError`` so that a pydantic validator reports
        it as a config error).
    """
    specs = tuple(_as_spec(v) for v in (values or ()))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"arms named more than once: {dup}")
    out = []
    try:
        for s in specs:
            arm = mitigation_arm(s.name, kind)
            out.append(ArmSpec(name=s.name, params=arm.checked(s.params)))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return tuple(out)


def build_arm(spec: ArmSpec | str | dict[str, Any], kind: str) -> tuple[MitigationArm, Any]:
    """The arm of ``spec`` (checked to be of ``kind``) and its configured mitigation.

    Parameters
    ----------
    spec : ArmSpec, str or dict
        The arm: a spec, a registered name or ``{"name": ..., "params": {...}}``.
    kind : str
        The kind the arm must be (one of :data:`ARM_KINDS`).

    Returns
    -------
    tuple of (MitigationArm, object)
        The arm and what its ``build`` returns for the (checked) parameters.

    Raises
    ------
    ConfigError
        When the name is unknown or the arm is of another kind.
    """
    spec = _as_spec(spec)
    arm = mitigation_arm(spec.name, kind)
    return arm, arm.create(spec.params)
