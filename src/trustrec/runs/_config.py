"""The run config: plain, validated data (YAML on disk). Every key is named in its error."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from trustrec._config import MAX_SEED
from trustrec._safeio import load_yaml
from trustrec.errors import ConfigError
from trustrec.eval import MAX_N_BOOT

__all__ = ["FittedStage", "RunConfig", "check_plain_name", "load_run_config"]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_plain_name(value: str, what: str = "name") -> str:
    """A run name is one folder name inside ``--out``: letters, digits, ``. _ + -``, starting
    with a letter or digit, at most 128 characters; never a path, ``.``, ``..`` or hidden."""
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not a plain name: use letters, digits and . _ + - "
            "(starting with a letter or digit, at most 128 characters; no paths)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FilterConfig(_Strict):
    """One dataset filter by name (any in :mod:`trustrec.registry` ``filters``: the built-ins or a
    third-party one). The built-ins' parameters are fields; ``params`` holds a third-party
    filter's. A field is passed when the filter's signature takes it and it is set."""

    kind: str
    threshold: float | None = None
    n_users: PositiveInt | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    keep: Literal["first", "last"] = "last"
    user_k: PositiveInt | None = None
    item_k: PositiveInt | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_filter(cls, value: str) -> str:
        from trustrec.data import FILTERS

        FILTERS.get(value)  # an unknown name lists the known ones and close matches
        return value

    @model_validator(mode="after")
    def _complete(self):
        self.arguments()  # a missing or unknown parameter fails when the config is read
        return self

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of the filter: the set fields its signature names, then ``params``;
        a required parameter left unset is a :class:`ConfigError` naming it."""
        import inspect

        from trustrec.data import FILTERS

        signature = inspect.signature(FILTERS.get(self.kind))
        kwargs = {}
        for name, param in list(signature.parameters.items())[1:]:  # the first is the dataset
            value = self.params.get(name, getattr(self, name, None))
            if value is not None:
                kwargs[name] = value
            elif param.default is inspect.Parameter.empty and param.kind is not param.VAR_KEYWORD:
                raise ConfigError(f"dataset.filters: {self.kind} needs {name!r}")
        extra = set(self.params) - set(kwargs)
        if extra and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            raise ConfigError(f"dataset.filters: {self.kind} takes no parameter {', '.join(sorted(map(repr, extra)))}")
        return kwargs


class DatasetConfig(_Strict):
    name: str
    data_dir: str | None = None
    filters: list[FilterConfig] = Field(default_factory=list)


class SplitConfig(_Strict):
    method: str = "leave_one_out"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_splitter(cls, value: str) -> str:
        from trustrec.data import SPLITTERS

        SPLITTERS.get(value)  # any registered splitter (built-in or third-party)
        return value


_FITTED_KEYS = ("checkpoint", "from_run")


class FittedStage(_Strict):
    """A stage of a composed model (an LLM ranker's ``retriever``, a re-ranker's ``base``) taken
    already fitted instead of a model spec: a saved model folder (``checkpoint``) or the
    checkpoint of a finished run in the same output folder (``from_run``: its name); exactly one."""

    checkpoint: str | None = None
    from_run: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in _FITTED_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a fitted stage names exactly one of checkpoint (a saved model folder) or from_run "
                f"(a finished run's name); got {given or 'neither'}"
            )
        if self.checkpoint is not None and not self.checkpoint.strip():
            raise ValueError("checkpoint: give the folder of a saved model")
        if self.from_run is not None:
            check_plain_name(self.from_run, "from_run")
        return self


class ModelConfig(_Strict):
    """A registered model and its parameters. A parameter naming a stage of a composed model may
    hold ``{checkpoint: <saved model folder>}`` or ``{from_run: <run name>}`` instead of a model
    spec: that stage is taken fitted, as it is, and never refitted, e.g.
    ``{name: llm_ranker, params: {retriever: {from_run: sasrec-ml-100k}, n_candidates: 20}}``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def fitted_stages(self) -> dict[str, FittedStage]:
        """The stages given fitted (``{checkpoint: ...}`` / ``{from_run: ...}``), by stage name; a
        malformed one raises a ConfigError naming its key."""
        out = {}
        for key, value in self.params.items():
            if not _is_fitted_ref(value):
                continue
            try:
                out[key] = FittedStage.model_validate(value)
            except ValidationError as exc:
                problems = "; ".join(
                    (f"'{'.'.join(map(str, e['loc']))}': " if e["loc"] else "")
                    + (
                        e["msg"].removeprefix("Value error, ")
                        if e["type"] != "extra_forbidden"
                        else "not a key of a fitted stage (it holds only checkpoint or from_run)"
                    )
                    for e in exc.errors()
                )
                raise ConfigError(f"'model.params.{key}': {problems}") from None
            except ConfigError as exc:
                raise ConfigError(f"'model.params.{key}': {exc}") from None
        return out

    def spec_params(self) -> dict[str, Any]:
        """The parameters that build the model (the stages given fitted left out)."""
        return {k: v for k, v in self.params.items() if not _is_fitted_ref(v)}


def _is_fitted_ref(value) -> bool:
    return isinstance(value, dict) and any(k in value for k in _FITTED_KEYS)


class EarlyStopping(_Strict):
    metric: str = "ndcg@10"
    patience: PositiveInt = 5
    eval_every: PositiveInt = 1


class FitConfig(_Strict):
    early_stopping: EarlyStopping | None = None
    threads: PositiveInt | None = None
    # cpu, cuda, cuda:N, mps or auto; a device the machine or the model lacks stops the run at once.
    device: str = "cpu"


Scheme = Literal["full", "traditional-random", "ure"]


def _full_scheme_only() -> list[Scheme]:
    return ["full"]


class EvalConfig(_Strict):
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "hr@10", "recall@10", "mrr@10", "coverage@10", "aplt@10"]
    )
    part: Literal["valid", "test"] = "test"
    n_boot: int = Field(1000, ge=0, le=MAX_N_BOOT)
    batch_size: PositiveInt | None = None  # None: sized so one score matrix stays ~20M cells
    sampled_negatives: PositiveInt | None = None
    # Ties at the top-K cut: "index" (to the lower item index) or "expected" (every metric's
    # expected value over a random order of the tied items); labels say "(ties-expected)".
    ties: Literal["index", "expected"] = "index"
    # Evaluation schemes (trustrec.eval): "full" (rank the catalog, the ordinary evaluator),
    # "traditional-random" (rank only each user's randomly-exposed items) and "ure" (unbiased
    # recall evaluation); the last two need a random-exposure split and use the recall@K /
    # precision@K among `metrics`. Outputs label them: "recall@10 (ure)".
    schemes: list[Scheme] = Field(default_factory=_full_scheme_only)

    @field_validator("metrics")
    @classmethod
    def _known(cls, v):
        from trustrec.eval import parse_metric

        for m in v:
            parse_metric(m)
        return v

    @field_validator("schemes", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _schemes_have_metrics(self):
        from trustrec.eval import UNBIASED_METRICS, parse_metric

        if not self.schemes:
            raise ValueError("schemes: give at least one of 'full', 'traditional-random', 'ure'")
        if len(set(self.schemes)) != len(self.schemes):
            raise ValueError(f"schemes: {self.schemes} repeats a scheme")
        random = [s for s in self.schemes if s != "full"]
        if random and not any(parse_metric(m).name in UNBIASED_METRICS for m in self.metrics):
            raise ValueError(
                f"schemes {random} measure {list(UNBIASED_METRICS)} at K: add e.g. 'recall@10' "
                f"to metrics (got {self.metrics})"
            )
        return self


class RunConfig(_Strict):
    """One experiment as a run config file states it: the data, its split, the model, and how the
    model is fitted and evaluated.

    Parameters
    ----------
    name : str or None
        The run folder's name; None: ``<model>-<dataset>`` (:meth:`run_name`).
    dataset : DatasetConfig
        The dataset to load and its filters.
    split : SplitConfig
        How to split it (a random split without its own seed takes ``seed``).
    model : ModelConfig
        The model to fit and its settings.
    fit : FitConfig
        How to fit it.
    eval : EvalConfig
        How to evaluate it.
    seed : int
        The run's seed (non-negative).
    """

    name: str | None = None
    dataset: DatasetConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig
    fit: FitConfig = Field(default_factory=FitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v):
        return None if v is None else check_plain_name(v, "name")

    def run_name(self) -> str:
        """The run folder's name: ``name``, else ``<model>-<dataset>`` made plain (a dataset
        given as a path contributes its last part, other characters become ``_``)."""
        if self.name:
            return self.name
        last = Path(os.path.normpath(self.dataset.name)).name
        dataset = re.sub(r"[^A-Za-z0-9._+-]", "_", last).lstrip("._+-") or "data"
        return check_plain_name(f"{self.model.name}-{dataset}"[:128], "run name")

    def digest(self) -> str:
        data = self.model_dump(mode="json")
        for key, default in (("schemes", ["full"]), ("ties", "index")):
            if data["eval"][key] == default:
                del data["eval"][key]  # defaults: digests of configs written before the key stay as they were
        if data["fit"]["device"] == "cpu":
            del data["fit"]["device"]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _refuse_nul(data, where: str, key: str = "") -> None:
    """No text in a config may hold a NUL character (it cannot be part of a name or a path)."""
    stack = [(key, data)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            raise ConfigError(f"{where}: '{at or '(root)'}' = {value!r} contains a NUL character (\\x00)")
        if isinstance(value, dict):
            stack.extend((f"{at}.{k}" if at else str(k), v) for k, v in value.items())
            stack.extend((at or "(root)", k) for k in value if isinstance(k, str))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{at}[{i}]", v) for i, v in enumerate(value))


def load_run_config(source: str | Path | dict) -> RunConfig:
    """Read and validate a run config from a YAML file or a mapping.

    Parameters
    ----------
    source : str, Path or dict
        A YAML file's path, or the config as a mapping.

    Returns
    -------
    RunConfig
        The validated config.

    Raises
    ------
    ConfigError
        When the config is not a mapping, is invalid, names an unknown model, or its model
        settings or fitted stages are invalid.
    """
    if isinstance(source, dict):
        data, where = source, "run config"
    else:
        path = Path(source)
        data = load_yaml(path, what="a run config (YAML)")  # bounded: no alias bombs, UTF-8 only
        where = str(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with keys dataset, split, model, eval, seed")
    _refuse_nul(data, where)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"'{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    from trustrec.models import Recommender, model_class

    klass: type[Recommender] = model_class(config.model.name)  # unknown names list the valid ones
    try:
        check_fitted_stages(config, klass)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    klass.validate_config(config.model.spec_params())
    return config


def check_fitted_stages(config: RunConfig, klass) -> None:
    """The stages given fitted are stages of the model (a composed one), and no run nests itself."""
    fitted = config.model.fitted_stages()
    stages = tuple(getattr(klass, "stages", ()))
    for stage, ref in fitted.items():
        if stage not in stages:
            raise ConfigError(
                f"'model.params.{stage}': {{{', '.join(f'{k}: ...' for k in ref.model_dump(exclude_none=True))}}} "
                f"names a fitted model, but {stage!r} is not a stage of {config.model.name!r} "
                f"({'its stages: ' + ', '.join(stages) if stages else 'it is not a composed model and has no stages'})"
            )
        if ref.from_run is not None and ref.from_run == config.run_name():
            raise ConfigError(f"'model.params.{stage}': from_run {ref.from_run!r} is this run itself")
