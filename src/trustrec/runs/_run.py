"""Run an experiment from a config and write its directory atomically.

Layout: ``config.yaml`` (as resolved), ``environment.json`` (versions, platform, data
fingerprint, seed), ``metrics.json`` (means with CIs, aggregates, counts, fit history, timings),
``per_user.parquet`` (one row per evaluated user), ``checkpoint/`` (safetensors + JSON).
Work happens in a hidden ``.partial-<name>-<digest>`` folder renamed at the end; a crashed run
with the same config resumes from its saved checkpoint instead of refitting (unless the data
changed since), and a run that stops before its checkpoint removes its folder.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trustrec._cache import atomic_write_bytes, atomic_write_text, folder_lock, swap_in
from trustrec.errors import DataError
from trustrec.runs._config import RunConfig, check_fitted_stages, load_run_config

if TYPE_CHECKING:
    from trustrec.data import Dataset, Split

__all__ = ["RunResult", "environment_info", "prepare_data", "run_experiment"]

_PACKAGES = ("trustrec", "numpy", "pandas", "scipy", "torch", "pydantic", "pyarrow", "safetensors")


def environment_info() -> dict[str, Any]:
    """The Python version, platform, processor, CPU count and versions of key packages.

    Returns
    -------
    dict
        ``python``, ``platform``, ``processor``, ``cpu_count`` and ``packages`` (name -> version,
        None when not installed).
    """
    versions: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # noqa: PERF203  # per package; a short, cold loop
            versions[pkg] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it is and what it measured.

    Parameters
    ----------
    path : Path
        The run directory.
    metrics : dict
        The contents of its ``metrics.json``.
    """

    path: Path
    metrics: dict[str, Any]


def prepare_data(config: RunConfig) -> tuple[Dataset, Split]:
    """The dataset and split a run config describes: loaded, filtered, then split.

    A random split without its own seed takes the config's ``seed``.

    Parameters
    ----------
    config : RunConfig
        The run config.

    Returns
    -------
    dataset : Dataset
        The filtered dataset.
    split : Split
        Its split.
    """
    from trustrec.data import FILTERS, load_dataset, make_split

    ds = load_dataset(config.dataset.name, data_dir=config.dataset.data_dir)
    for f in config.dataset.filters:
        ds = FILTERS.get(f.kind)(ds, **f.arguments())
    params = dict(config.split.params)
    if config.split.method == "random":
        params.setdefault("seed", config.seed)
    return ds, make_split(ds, config.split.method, **params)


def run_experiment(
    config: RunConfig | str | Path | dict,
    out_dir: str | Path = "runs",
    *,
    progress: bool = True,
    log: Callable[[str], object] = print,
    overwrite: bool = False,
) -> RunResult:
    """Fit and evaluate the model ``config`` describes into ``out_dir/<run name>/``.

    The run folder is always a plain name inside ``out_dir``. A finished run of the same config
    on the same data is reused as it is (its audits and report kept); a finished run of another
    config, or of data that changed since, is replaced only with ``overwrite=True``; a folder
    trustrec did not write is never replaced. One process at a time writes a run (a lock). An
    interrupted run resumes from its checkpoint when the data is unchanged.

    Parameters
    ----------
    config : RunConfig, str, Path or dict
        The run config, or a YAML file or mapping for :func:`load_run_config`.
    out_dir : str or Path
        Folder holding the run folders.
    progress : bool
        Whether to show progress bars.
    log : callable
        Called with one-line messages (reused or removed runs, warnings).
    overwrite : bool
        Whether to replace a finished run of another config or of changed data.

    Returns
    -------
    RunResult
        The run folder and its metrics.

    Raises
    ------
    ConfigError
        When the config is invalid.
    DataError
        When ``out_dir`` is not a folder, or without ``overwrite`` the run folder holds a
        finished run of another config or of data (or fitted stages) that changed since.
    """
    if not isinstance(config, RunConfig):
        config = load_run_config(config)
    out_dir = Path(out_dir)
    name = config.run_name()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir}: exists and is not a folder")
    with folder_lock(out_dir, name, what=f"run {name!r} in {out_dir}"):
        return _run_locked(config, out_dir, name, progress=progress, log=log, overwrite=overwrite)


def _run_locked(config: RunConfig, out_dir: Path, name: str, *, progress: bool, log, overwrite: bool) -> RunResult:
    from trustrec._device import check_device_supported
    from trustrec.models import Recommender, model_class
    from trustrec.runs._trail import data_changes, data_trail

    klass: type[Recommender] = model_class(config.model.name)
    check_device_supported(klass.__name__, config.fit.device, klass.devices)  # before any data is read
    check_fitted_stages(config, klass)
    final = out_dir / name
    work = out_dir / f".partial-{name}-{config.digest()}"
    previous = _finished_run(final)
    for stale in out_dir.glob(f".partial-{glob.escape(name)}-*"):
        if stale != work and stale.is_dir() and (stale / "config.yaml").exists():
            shutil.rmtree(stale)
            log(f"removed {stale.name}: the unfinished run of an earlier config named {name!r}")

    t0 = time.perf_counter()
    dataset, split = prepare_data(config)
    t_data = time.perf_counter() - t0
    trail = data_trail(dataset, split)
    stages = _fitted_stage_sources(config, out_dir, trail)
    if previous is not None and not overwrite:
        if previous["environment"].get("config_digest") != config.digest():
            raise DataError(
                f"{final}: holds a finished run of another config (digest "
                f"{previous['environment'].get('config_digest')}, this config {config.digest()}); "
                "give this run another name, or overwrite it (--overwrite; its audits and report go too)"
            )
        changed = data_changes(previous["environment"].get("data_checksums"), trail)
        if changed:
            raise DataError(
                f"{final}: the data changed since this run finished: {'; '.join(changed)}; "
                "rerun with --overwrite to refit on the current data (its audits and report go too)"
            )
        changed = _fitted_stage_changes(previous["environment"].get("fitted_stages"), stages)
        if changed:
            raise DataError(
                f"{final}: {'; '.join(changed)} since this run finished; rerun with --overwrite to "
                "fit it over the current one (its audits and report go too)"
            )
        log(f"{final}: already finished with this config and data; reused as it is (--overwrite runs it again)")
        return RunResult(final, previous["metrics"])
    _check_schemes(config, split)
    warnings_ = _masked_target_warnings(config, split, log)

    resumable = (work / "checkpoint" / "state.safetensors").exists()
    if resumable:
        recorded = _read_json(work / "environment.json") or {}
        changed = data_changes(recorded.get("data_checksums"), trail)
        if changed:
            shutil.rmtree(work / "checkpoint")
            resumable = False
            log(
                f"the data changed since the interrupted run in {work.name} ({'; '.join(changed)}): "
                "its checkpoint was discarded and the model is fitted again"
            )
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = _fit_and_evaluate(
            config,
            work,
            final,
            dataset,
            split,
            trail,
            t_data,
            warnings_,
            stages,
            resume=resumable,
            progress=progress,
            log=log,
        )
    except BaseException:
        if (work / "checkpoint" / "state.safetensors").exists():
            log(f"the run stopped; {work} keeps its checkpoint: the same command resumes from it")
        else:
            shutil.rmtree(work, ignore_errors=True)
            log(f"the run stopped before a checkpoint was saved; removed {work.name}")
        raise
    return result


def _fit_and_evaluate(
    config: RunConfig,
    work: Path,
    final: Path,
    dataset,
    split,
    trail,
    t_data: float,
    warnings_: list[str],
    stages: dict[str, dict[str, Any]],
    *,
    resume: bool,
    progress: bool,
    log,
) -> RunResult:
    from trustrec.eval import Validator, evaluate_split
    from trustrec.models import ComposedRecommender, FitOptions, ModelSpec, Recommender
    from trustrec.runs._trail import model_trail

    atomic_write_text(work / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    env = {
        **environment_info(),
        "seed": config.seed,
        "config_digest": config.digest(),
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint(),
            "source": dataset.source,
            "stats": dataset.stats(),
        },
        "split": split.describe(),
        "data_checksums": trail,
    }
    if stages:
        env["fitted_stages"] = stages
    atomic_write_text(work / "environment.json", json.dumps(env, indent=1, default=str))

    ckpt = work / "checkpoint"
    fit_seconds = None
    if resume:
        log(f"resuming: loading the checkpoint saved by an interrupted run ({ckpt})")
        model = Recommender.load(ckpt)
    else:
        model = ModelSpec(name=config.model.name, params=config.model.spec_params()).build()
        if stages:  # stages given fitted: reused as they are, never refitted
            assert isinstance(model, ComposedRecommender), "check_fitted_stages: only a composed model has stages"
            model = model.with_fitted(
                **{stage: _load_fitted_stage(stage, source["checkpoint"]) for stage, source in stages.items()}
            )
        es = config.fit.early_stopping
        options = FitOptions(
            seed=config.seed,
            progress=progress,
            threads=config.fit.threads,
            device=config.fit.device,
            validator=Validator(split, es.metric) if es else None,
            patience=es.patience if es else 5,
            eval_every=es.eval_every if es else 1,
        )
        t0 = time.perf_counter()
        model.fit(split, options)
        fit_seconds = time.perf_counter() - t0
        model.save(ckpt)

    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for scheme in config.eval.schemes:
        if scheme == "full":
            results[scheme] = evaluate_split(
                model,
                split,
                config.eval.part,
                metrics=config.eval.metrics,
                batch_size=config.eval.batch_size,
                n_boot=config.eval.n_boot,
                sampled_negatives=config.eval.sampled_negatives,
                seed=config.seed,
                ties=config.eval.ties,
                progress=progress,
            )
        else:
            from trustrec.eval import UNBIASED_METRICS, evaluate_random_exposure, parse_metric

            results[scheme] = evaluate_random_exposure(
                model,
                split,
                scheme=scheme,
                part=config.eval.part,
                batch_size=config.eval.batch_size,
                metrics=[m for m in config.eval.metrics if parse_metric(m).name in UNBIASED_METRICS],
                n_boot=config.eval.n_boot,
                seed=config.seed,
                progress=progress,
            )
    eval_seconds = time.perf_counter() - t0
    result = next(iter(results.values()))
    per_user = result.per_user.copy()
    for other in list(results.values())[1:]:  # one row per user, every scheme's columns
        cols = ["user"] + [c for c in other.per_user.columns if c not in per_user.columns]
        per_user = per_user.merge(other.per_user[cols], on="user", how="outer")
    per_user.insert(1, "user_id", dataset.user_ids[per_user["user"].to_numpy()])
    buf = per_user.to_parquet(index=False)
    atomic_write_bytes(work / "per_user.parquet", buf)
    merged = result.to_dict()
    for other in list(results.values())[1:]:
        merged["metrics"].update(other.to_dict()["metrics"])
    merged["schemes"] = {
        scheme: {"metrics": list(r.summary.index), "counts": r.counts, "settings": r.settings}
        for scheme, r in results.items()
    }
    metrics = {
        "run": config.run_name(),
        "model": config.model.name,
        "dataset": dataset.name,
        **merged,
        "fit_history": getattr(model, "history_", None),
        "checkpoint_sha256": model_trail(ckpt)["files"],
        "timings_s": {"data": t_data, "fit": fit_seconds, "evaluate": eval_seconds},
        "warnings": warnings_,
    }
    atomic_write_text(work / "metrics.json", json.dumps(metrics, indent=1, default=_json_default))
    swap_in(work, final)  # an existing final is a finished trustrec run (checked under the lock)
    return RunResult(final, metrics)


def _fitted_stage_sources(config: RunConfig, out_dir: Path, trail) -> dict[str, dict[str, Any]]:
    """Where each stage given fitted comes from: ``{stage: {"checkpoint": folder, "from_run": name
    or None, "files": sha256 of its files}}``. A ``from_run`` must be a finished run in ``out_dir``
    fitted on this very data and split (else its model has seen this run's held-out items)."""
    from trustrec.errors import ConfigError
    from trustrec.runs._trail import data_changes, model_trail

    sources = {}
    for stage, ref in config.model.fitted_stages().items():
        where = f"model.params.{stage}"
        if ref.from_run is not None:
            run_dir = out_dir / ref.from_run
            previous = _finished_run(run_dir)
            if previous is None:
                raise ConfigError(
                    f"{where}: from_run {ref.from_run!r}: no finished run of that name in {out_dir} "
                    "(run it first, or give its checkpoint folder as checkpoint)"
                )
            changed = data_changes(previous["environment"].get("data_checksums"), trail)
            if changed:
                raise DataError(
                    f"{where}: from_run {ref.from_run!r} was fitted on other data or another split "
                    f"than this run ({'; '.join(changed)}): its model may have seen this run's held-out "
                    "items; use the same dataset, filters and split"
                )
            checkpoint = run_dir / "checkpoint"
        else:
            assert ref.checkpoint is not None  # a fitted stage names exactly one of checkpoint/from_run
            checkpoint = Path(ref.checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise ConfigError(
                f"{where}: {checkpoint} is not a saved trustrec model (a folder Recommender.save "
                "wrote, with config.json)"
            )
        sources[stage] = {
            "checkpoint": str(checkpoint),
            "from_run": ref.from_run,
            "files": model_trail(checkpoint)["files"],
        }
    return sources


def _fitted_stage_changes(recorded: dict | None, current: dict[str, dict[str, Any]]) -> list[str]:
    recorded = recorded or {}
    return [
        f"the fitted {stage} ({source['checkpoint']}) changed"
        for stage, source in current.items()
        if (recorded.get(stage) or {}).get("files") != source["files"]
    ]


def _load_fitted_stage(stage: str, checkpoint: str):
    from trustrec.errors import ConfigError
    from trustrec.models import Recommender

    model = Recommender.load(checkpoint)
    if not model.is_fitted():
        raise ConfigError(f"model.params.{stage}: the model saved in {checkpoint} is not fitted")
    return model


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    from trustrec._safeio import load_json_object

    try:
        return load_json_object(path)
    except DataError:
        return None


def _finished_run(final: Path) -> dict | None:
    """The environment and metrics of the finished run in ``final`` (None when there is none);
    a folder that is not a trustrec run is refused, never replaced."""
    if not final.exists() and not final.is_symlink():
        return None
    if final.is_symlink() or not final.is_dir():
        raise DataError(f"{final}: exists and is not a run folder (a file or a link); refusing to replace it")
    environment, metrics = _read_json(final / "environment.json"), _read_json(final / "metrics.json")
    if environment is None or metrics is None or not (final / "config.yaml").is_file():
        raise DataError(
            f"{final}: exists and is not a finished trustrec run (no readable config.yaml, "
            "environment.json and metrics.json); refusing to replace it: move it, or choose "
            "another run name or --out"
        )
    return {"environment": environment, "metrics": metrics}


def _check_schemes(config: RunConfig, split) -> None:
    """The random-exposure schemes need a random-exposure test set, and the evaluated part needs
    users: fail before fitting."""
    from trustrec.errors import ConfigError, DataError

    part = config.eval.part
    if len(split.eval_set(part)) == 0:
        raise DataError(
            f"the split's '{part}' part has no user with a held-out item ({split.method} split of '{split.dataset.name}', "
            f"params {dict(split.params)}): there is nothing to evaluate; choose another split (or its "
            f"parameters) or eval.part"
        )

    random = [s for s in config.eval.schemes if s != "full"]
    is_random = split.params.get("random_exposure") or (
        split.method == "given_test" and split.params.get("test") == "random_exposure_test"
    )
    if random and not is_random:
        raise ConfigError(
            f"eval.schemes {random} need a random-exposure test set, but the split is {split.method!r}; use "
            "split: {method: random_exposure} on a dataset that has one (coat, yahoo-r3, kuairec)"
        )
    if random and split.params.get("positive_threshold") is None and split.test.rating is not None:
        raise ConfigError(
            f"eval.schemes {random} need split.params.positive_threshold to tell the exposed positives from "
            "the exposed negatives (e.g. 4 on Coat and Yahoo! R3)"
        )


def _masked_target_warnings(config: RunConfig, split, log) -> list[str]:
    """Users whose every held-out target is already in their history cannot be hit (seen items
    are masked): said loudly before fitting, and a run where no user can be hit is an error."""
    import warnings

    from trustrec.errors import DataWarning
    from trustrec.eval import targets_all_seen

    eval_set = split.eval_set(config.eval.part)
    masked = targets_all_seen(eval_set)
    if not masked.any():
        return []
    where = f"the {split.method} split of '{split.dataset.name}', part '{config.eval.part}'"
    if masked.all():
        raise DataError(
            f"{where}: every one of the {len(masked)} users' held-out items is already in their "
            "history and masked as seen, so no model can hit any; the split trains on what it "
            "evaluates (check the test set against the log)"
        )
    text = (
        f"{int(masked.sum())} of {len(masked)} evaluated users ({masked.mean():.1%}) have every held-out item "
        f"already in their history ({where}); seen items are masked, so no model can hit them and they "
        "count as misses"
    )
    warnings.warn(text, DataWarning, stacklevel=3)
    log(f"WARNING: {text}")
    return [text]


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
