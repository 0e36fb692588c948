"""Audit a finished run directory: rebuild its data and split from the saved config, load its
checkpoint, run every audit that applies (or the chosen dimensions / names), and write
``audits/<name>/`` (result.json + evidence parquet) and ``audits/index.json`` with the trail."""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trustrec._cache import atomic_write_text, folder_lock
from trustrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from trustrec.audit import Audit
    from trustrec.data import Dataset, Split
    from trustrec.models import Recommender
    from trustrec.parallel import Executor
    from trustrec.runs._config import RunConfig

__all__ = ["audit_model", "audit_plan", "load_audit_results", "run_audits", "write_audit_index"]


def _load_finished_run(run_dir: Path):
    from trustrec.runs._config import load_run_config

    for needed in ("config.yaml", "metrics.json", "checkpoint"):
        if not (run_dir / needed).exists():
            raise DataError(
                f"{run_dir}: not a finished trustrec run (missing {needed}); create one with `trustrec run CONFIG`"
            )
    return load_run_config(run_dir / "config.yaml")


def audit_plan(
    dimensions: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list:
    """The audits to run, configured: every registered audit in ``dimensions`` (all when None),
    or exactly ``names``; ``params`` maps an audit name to its config overrides.

    Parameters
    ----------
    dimensions : iterable of str or None
        Audit dimensions whose registered audits to run; None: every dimension.
    names : iterable of str or None
        Exactly these audits (``dimensions`` is then ignored); None or empty: by dimension.
    params : mapping or None
        Audit name -> its config overrides; each name must be in the plan.

    Returns
    -------
    list of Audit
        The configured audits.

    Raises
    ------
    ConfigError
        When a dimension or an audit name is unknown, ``params`` names an audit not in the plan,
        or an override is invalid.
    """
    from trustrec.audit import DIMENSIONS, audit_class, available_audits

    params = dict(params or {})
    if names:
        classes = [audit_class(n) for n in names]
    else:
        dims = list(dimensions or DIMENSIONS)
        for d in dims:
            if d not in DIMENSIONS:
                raise ConfigError(f"unknown dimension {d!r}; one of {', '.join(DIMENSIONS)}")
        classes = [c for c in available_audits().values() if c.dimension in dims]
    unknown = set(params) - {c.name for c in classes}
    if unknown:
        raise ConfigError(
            f"audit parameters given for {sorted(unknown)}, which are not in this plan "
            f"({', '.join(c.name for c in classes)})"
        )
    return [c(**params.get(c.name, {})) for c in classes]


def audit_model(
    model: Recommender,
    split: Split,
    plan: Sequence[Audit],
    *,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
    executor: Executor | str | None = None,
) -> tuple[list[dict[str, Any]], list]:
    """Run ``plan`` (from :func:`audit_plan`) on a fitted ``model`` and its ``split``; audits with
    the same k, part, user sample and seed share their inputs (one ranking pass). Each result is
    saved to ``out/<name>/`` when ``out`` is given. Returns the index entries (name, dimension,
    status, summary, seconds) and the results, in plan order.

    ``executor`` (:mod:`trustrec.parallel`: ``None`` or ``"serial"``, ``"ray"``, or an executor
    object; one built here from its name is shut down at the end) runs the audits. Serially each
    audit runs, is saved and logged in turn. Through any other executor the audits run
    independently, each as one call: the shared ranking pass of audits with the same inputs is
    computed once here, before they are sent out, and travels with the model and split (the
    cheaper shared parts, popularity counts and group tables, are computed on each worker);
    results are then saved and logged here in plan order. Results and saved files are identical
    to the serial run's; ``seconds`` is each audit's own time. The cells of grid audits
    (poisoning's attacks x budgets) run through the same executor (on Ray, as nested tasks).

    Parameters
    ----------
    model : Recommender
        The fitted model to audit.
    split : Split
        The split it was fitted on.
    plan : list of Audit
        The configured audits (:func:`audit_plan`).
    out : str, Path or None
        Folder to save each result in (``out/<name>/``, created when missing); None: nothing
        is saved.
    progress : bool
        Whether to show progress bars.
    log : callable
        Called with one line per finished audit.
    executor : Executor, str or None
        Runs the audits (:func:`~trustrec.parallel.resolve_executor`); None: serially.

    Returns
    -------
    entries : list of dict
        One index entry per audit: name, dimension, status, summary, dir and seconds.
    results : list of AuditResult
        The audits' results, in plan order.
    """
    from tqdm.auto import tqdm

    from trustrec.audit import AuditInputs
    from trustrec.parallel import SerialExecutor, resolve_executor

    owned = isinstance(executor, str)  # built here from its name
    executor = resolve_executor(executor)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    shared: dict[tuple, AuditInputs] = {}
    entries, results = [], []

    def record(audit, result, seconds):
        if out is not None:
            result.save(out / audit.name)
        entries.append(
            {
                "name": audit.name,
                "dimension": audit.dimension,
                "status": result.verdict.status,
                "summary": result.summary,
                "dir": audit.name,
                "seconds": round(seconds, 3),
            }
        )
        results.append(result)
        log(f"{audit.dimension:>12} {audit.name:<28} {result.verdict.status:<15} {result.summary}")

    if isinstance(executor, SerialExecutor):
        for audit in tqdm(plan, desc="audits", disable=not progress):
            key = _inputs_key(audit)
            if key not in shared:
                shared[key] = _inputs(model, split, audit, progress, executor)
            record(audit, *_run_one(audit, model, split, shared[key], progress))
        return entries, results
    keys = [_inputs_key(a) for a in plan]
    for key, audit in zip(keys, plan):
        if key not in shared:
            shared[key] = _inputs(model, split, audit, progress, executor)
            if keys.count(key) > 1:
                _ = shared[key].evaluation  # the ranking pass, once, before it is shipped
    try:
        done = executor.map(_AuditCall(model, split, shared), list(plan))
    finally:
        if owned and hasattr(executor, "shutdown"):
            executor.shutdown()  # a Ray instance started for this call only
    for audit, (result, seconds) in zip(plan, done):
        record(audit, result, seconds)
    return entries, results


def _inputs_key(audit) -> tuple:
    c = audit.config
    return (c.k, c.part, c.max_users, c.seed)


def _inputs(model, split, audit, progress: bool, executor):
    from trustrec.audit import AuditInputs

    c = audit.config
    return AuditInputs(
        model, split, part=c.part, k=c.k, max_users=c.max_users, seed=c.seed, progress=progress, executor=executor
    )


def _run_one(audit, model, split, inputs, progress: bool):
    t0 = time.perf_counter()
    result = audit.run(model, split, inputs=inputs, progress=progress)
    return result, time.perf_counter() - t0


class _AuditCall:
    """One audit of the plan, as an executor call: holds the model, the split and the shared
    inputs (pickled together, once per executor map, so ``inputs.model is model`` on the worker)."""

    def __init__(self, model, split, shared: dict):
        self.model, self.split, self.shared = model, split, shared

    def __call__(self, audit):
        inputs = self.shared[_inputs_key(audit)]
        inputs.progress = False  # no progress bars from workers
        return _run_one(audit, self.model, self.split, inputs, False)


def run_audits(
    run_dir: str | Path,
    *,
    dimensions: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
    executor: Executor | str | None = None,
) -> dict[str, Any]:
    """Audit the run in ``run_dir``; returns the index written to ``audits/index.json``.
    ``executor`` runs the audits (see :func:`audit_model`).

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory.
    dimensions, names, params
        Which audits to run and their config overrides, as for :func:`audit_plan`.
    progress : bool
        Whether to show progress bars.
    log : callable
        Called with one line per finished audit.
    executor : Executor, str or None
        Runs the audits; None: serially.

    Returns
    -------
    dict
        The index: run, model, dataset, creation time, trail and the audits' entries (those of
        earlier audits not rerun are kept).

    Raises
    ------
    DataError
        When ``run_dir`` is not a finished run, or its data or checkpoint changed since it
        finished.
    ConfigError
        When the plan is invalid (see :func:`audit_plan`).
    """
    from trustrec.models import Recommender
    from trustrec.runs._run import prepare_data

    run_dir = Path(run_dir)
    config = _load_finished_run(run_dir)
    plan = audit_plan(dimensions, names, params)
    with folder_lock(run_dir.parent, run_dir.name, what=f"run {run_dir.name!r} in {run_dir.parent}"):
        dataset, split = prepare_data(config)
        _check_unchanged(run_dir, dataset, split)
        model = Recommender.load(run_dir / "checkpoint")
        out = run_dir / "audits"
        entries, _ = audit_model(model, split, plan, out=out, progress=progress, log=log, executor=executor)
        metrics = _read_object(run_dir / "metrics.json")
        head = {"run": metrics.get("run", run_dir.name), "model": config.model.name}
        return write_audit_index(out, head, config, dataset, split, plan, entries, checkpoint=run_dir / "checkpoint")


def _check_unchanged(run_dir: Path, dataset, split) -> None:
    """The data and checkpoint an audit reads are those the run recorded; else say what changed."""
    from trustrec.runs._trail import data_changes, data_trail, model_trail

    environment, metrics = (_read_object(run_dir / name) for name in ("environment.json", "metrics.json"))
    changes = data_changes(environment.get("data_checksums"), data_trail(dataset, split))
    recorded = metrics.get("checkpoint_sha256")
    if recorded and recorded != model_trail(run_dir / "checkpoint")["files"]:
        changes.append("checkpoint files (sha256 differ from those the run recorded)")
    if changes:
        raise DataError(
            f"{run_dir}: changed since the run finished: {'; '.join(changes)}. The checkpoint "
            "would be audited on other data; rerun the config (`trustrec run CONFIG --overwrite`)"
        )


def _read_object(path: Path) -> dict:
    from trustrec._safeio import load_json_object

    return load_json_object(path)


def write_audit_index(
    out: Path,
    head: dict[str, Any],
    config: RunConfig,
    dataset: Dataset,
    split: Split,
    plan: Sequence[Audit],
    entries: list[dict[str, Any]],
    *,
    checkpoint: Path | None,
) -> dict[str, Any]:
    """Write ``out/index.json`` (``head``, then dataset, time, trail and the audits' entries, those
    of earlier audits not rerun kept) and ``out/audit_config.yaml``; returns the index.

    Parameters
    ----------
    out : Path
        The audits folder.
    head : dict
        The index's first keys (run name, model ...).
    config : RunConfig
        The config the model and data came from (its digest and seed go to the trail).
    dataset, split
        The audited data.
    plan : list of Audit
        The audits run.
    entries : list of dict
        Their index entries (:func:`audit_model`).
    checkpoint : Path or None
        The audited model's saved folder (its files' sha256 go to the trail); None: not saved.

    Returns
    -------
    dict
        The index written.
    """
    from trustrec.runs._trail import audit_trail

    index = {
        **head,
        "dataset": dataset.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trail": audit_trail(
            dataset=dataset,
            split=split,
            checkpoint=checkpoint,
            run_config_digest=config.digest(),
            seeds={"run": config.seed, **{a.name: a.config.seed for a in plan}},
            audit_configs={a.name: a.dump_config() for a in plan},
        ),
        "audits": _merge_entries(out, entries),
    }
    atomic_write_text(out / "index.json", json.dumps(index, indent=1, default=str))
    atomic_write_text(
        out / "audit_config.yaml", yaml.safe_dump({a.name: a.dump_config() for a in plan}, sort_keys=False)
    )
    return index


def _merge_entries(out: Path, entries: list[dict]) -> list[dict]:
    """Keep earlier results of audits not rerun this time (``--dimension`` runs add up)."""
    previous = []
    index = out / "index.json"
    if index.exists():
        try:
            previous = json.loads(index.read_text()).get("audits", [])
        except json.JSONDecodeError:
            previous = []
    rerun = {e["name"] for e in entries}
    kept = [e for e in previous if e["name"] not in rerun and (out / e["dir"] / "result.json").exists()]
    return kept + entries


def load_audit_results(run_dir: str | Path) -> tuple[dict[str, Any], list]:
    """The index and every saved ``AuditResult`` of a run (empty when it was never audited).

    Parameters
    ----------
    run_dir : str or Path
        A run directory.

    Returns
    -------
    index : dict
        The contents of ``audits/index.json`` (empty when absent).
    results : list of AuditResult
        The saved results of the audits the index lists.
    """
    from trustrec.audit import AuditResult

    out = Path(run_dir) / "audits"
    if not (out / "index.json").exists():
        return {}, []
    index = json.loads((out / "index.json").read_text())
    return index, [AuditResult.load(out / e["dir"]) for e in index.get("audits", [])]
