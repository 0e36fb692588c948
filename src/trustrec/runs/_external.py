"""Audit a model trustrec did not train: a small YAML names the model (usually an adapter of
:mod:`trustrec.models.external`), the dataset and the split; the model is fitted on the split
(calling your fit function when it has one), the audits run, and the results and index go to an
output folder, as ``trustrec audit RUN_DIR`` writes them for a run.

The YAML is a run config (``dataset``, ``split``, ``model``, ``seed``, ``fit.device``)::

    dataset: {name: ml-100k}
    split: {method: leave_one_out}
    model:
      name: external_scorer
      params: {score: "my_model:score", fit: "my_model:fit", python_path: ["."]}
    seed: 0

Relative paths in the model's ``path`` and ``python_path`` parameters are read relative to the
YAML file's folder. The output folder is created; an existing one is used only when it is empty
or holds audits trustrec wrote for this same config (a user's folder is never written into).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustrec._cache import atomic_write_text, folder_lock
from trustrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from trustrec.parallel import Executor
    from trustrec.runs._config import RunConfig

__all__ = ["audit_external", "load_external_config"]

_MARKER = ".trustrec-audits.json"
_PATH_PARAMS = ("path", "python_path")


def load_external_config(path: str | Path) -> RunConfig:
    """Read the YAML naming an external model, its dataset and split (a run config).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    RunConfig
        The validated config, relative ``path`` / ``python_path`` model parameters made
        absolute against the YAML's folder.

    Raises
    ------
    ConfigError
        When the file is missing or invalid, or names fitted stages (only model specs here).
    """
    from trustrec._safeio import load_yaml
    from trustrec.runs._config import load_run_config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such model config (YAML with dataset, split, model)")
    data = load_yaml(path, what="an external model config (YAML)")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConfigError(f"{path}: expected a mapping with keys dataset, split, model (name, params), seed")
    params = data["model"].get("params")
    if isinstance(params, dict):
        params = dict(params)
        base = path.resolve().parent
        for key in _PATH_PARAMS:
            value = params.get(key)
            if isinstance(value, str):
                params[key] = _absolute(value, base) if key == "path" else [_absolute(value, base)]
            elif isinstance(value, list):
                params[key] = [_absolute(v, base) if isinstance(v, str) else v for v in value]
        data = {**data, "model": {**data["model"], "params": params}}
    try:
        config = load_run_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {str(exc).removeprefix('run config: ')}") from None
    if config.model.fitted_stages():
        raise ConfigError(
            f"{path}: model stages given fitted ({', '.join(config.model.fitted_stages())}) need a run folder; "
            "give their specs, or audit a finished run with `trustrec audit RUN_DIR`"
        )
    return config


def _absolute(value: str, base: Path) -> str:
    return value if os.path.isabs(value) else str(base / value)


def _check_out(out: Path, digest: str) -> None:
    """``out`` is new, empty, or holds audits trustrec wrote for the config with ``digest``."""
    if out.is_symlink():
        raise DataError(f"--out {out}: is a symbolic link; give a real folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    marker = out / _MARKER
    if not marker.is_file():
        raise DataError(
            f"--out {out}: folder exists, is not empty and was not written by `trustrec audit --model`; "
            "refusing to write into it (choose a new or empty folder)"
        )
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("config_digest")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != digest:
        raise DataError(
            f"--out {out}: holds audits of another model config (digest {recorded}, this config {digest}); "
            "choose another folder so their results are not mixed"
        )


def audit_external(
    config: RunConfig | str | Path,
    out: str | Path,
    *,
    dimensions: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
    executor: Executor | str | None = None,
) -> dict[str, Any]:
    """Fit the model a YAML names on its split, run the audits, write ``out/`` (one folder per
    audit, ``index.json``, ``audit_config.yaml``); returns the index.

    Audits the model cannot serve (new queries for a list file, retraining without a fit
    function ...) are recorded as not applicable with the reason.

    Parameters
    ----------
    config : RunConfig, str or Path
        The config, or its YAML file (:func:`load_external_config`).
    out : str or Path
        The output folder (new, empty, or written by an earlier call with this config).
    dimensions, names, params
        Which audits to run and their config overrides, as for :func:`~trustrec.runs.audit_plan`.
    progress : bool
        Whether to show progress bars.
    log : callable
        Called with one line per finished audit.
    executor : Executor, str or None
        Runs the audits (:func:`~trustrec.runs.audit_model`); None: serially.

    Returns
    -------
    dict
        The index written to ``out/index.json``.

    Raises
    ------
    ConfigError
        When the config or the plan is invalid, or the model's functions cannot be imported.
    DataError
        When ``out`` is a folder trustrec did not write (or holds another config's audits), or
        the model's answers break its contract.
    """
    from trustrec.models import FitOptions, ModelSpec
    from trustrec.runs._audit import audit_model, audit_plan, write_audit_index
    from trustrec.runs._config import RunConfig
    from trustrec.runs._run import prepare_data

    if not isinstance(config, RunConfig):
        config = load_external_config(config)
    plan = audit_plan(dimensions, names, params)
    out = Path(os.path.abspath(out))
    digest = config.digest()
    _check_out(out, digest)
    with folder_lock(out.parent, out.name, what=f"audits folder {out}"):
        _check_out(out, digest)  # again, under the lock
        spec = ModelSpec(name=config.model.name, params=config.model.spec_params())
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / _MARKER, json.dumps({"config_digest": digest, "model": spec.model_dump(mode="json")}))
        dataset, split = prepare_data(config)
        model = spec.build().fit(split, FitOptions(seed=config.seed, device=config.fit.device, progress=progress))
        entries, _ = audit_model(model, split, plan, out=out, progress=progress, log=log, executor=executor)
        head = {"run": config.run_name(), "model": config.model.name, "model_spec": spec.model_dump(mode="json")}
        return write_audit_index(out, head, config, dataset, split, plan, entries, checkpoint=None)
