"""Read a run directory (and its audits, when there are any) into the report's data.

``collect_run`` loads everything once; ``report_data`` turns it into the JSON-ready dict that is
``report.json`` and that the HTML is rendered from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trustrec._version import __version__
from trustrec.audit import DIMENSIONS, AuditResult
from trustrec.errors import DataError

__all__ = ["STATUS_ORDER", "AuditEntry", "RunContents", "collect_run", "report_data", "worst_status"]

# Worst first. "error": the audit's result could not be loaded; unknown statuses rank with it.
STATUS_ORDER = ("fail", "error", "warn", "pass", "no_threshold", "not_applicable")
FORMAT = "trustrec-report/1"


@dataclass(frozen=True)
class AuditEntry:
    """One audit listed by ``audits/index.json``: its loaded result, or why it could not be loaded.

    Parameters
    ----------
    name : str
        The audit's name.
    dimension : str
        Its trust dimension (``"unknown"`` when the index does not say).
    status : str
        The verdict's status, or ``"error"`` when the result could not be loaded.
    summary : str
        The result's one-line summary.
    dir : str
        The result's folder, relative to ``audits/``.
    result : AuditResult or None
        The loaded result; None when it could not be loaded.
    error : str or None
        Why the result could not be loaded; None when it was.
    """

    name: str
    dimension: str
    status: str
    summary: str
    dir: str
    result: AuditResult | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunContents:
    """What a run directory holds.

    Parameters
    ----------
    path : Path
        The run directory.
    metrics : dict
        The contents of ``metrics.json``.
    environment : dict or None
        The contents of ``environment.json``; None when it is missing.
    config : dict or None
        The run's ``config.yaml``; None when it is missing.
    index : dict or None
        The contents of ``audits/index.json`` (empty when audits were found by scanning);
        None when the run has not been audited.
    audits : tuple of AuditEntry
        The audits, in the index's order.
    notes : tuple of str
        What was missing or found otherwise than expected.
    """

    path: Path
    metrics: dict[str, Any]
    environment: dict[str, Any] | None
    config: dict[str, Any] | None
    index: dict[str, Any] | None
    audits: tuple[AuditEntry, ...] = ()
    notes: tuple[str, ...] = field(default=())


def collect_run(run_dir: str | Path) -> RunContents:
    """Load ``run_dir`` and its audits.

    Audits that cannot be loaded become entries with an error.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (what ``trustrec run`` wrote).

    Returns
    -------
    RunContents

    Raises
    ------
    DataError
        If ``run_dir`` is missing or not a finished run (no ``metrics.json``), or one of its
        JSON files is unreadable or not an object.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such run directory; pass the folder `trustrec run` wrote")
    if not (path / "metrics.json").is_file():
        raise DataError(
            f"{path}: not a finished trustrec run (no metrics.json); finish `trustrec run` on its config first"
        )
    notes = []
    metrics = _read_json(path / "metrics.json")
    environment = _read_json(path / "environment.json") if (path / "environment.json").is_file() else None
    if environment is None:
        notes.append("environment.json is missing: library versions and data fingerprints are unknown")
    config = None
    if (path / "config.yaml").is_file():
        from trustrec._safeio import load_yaml

        config = load_yaml(path / "config.yaml", what="a run config", error=DataError)
    audits_dir = path / "audits"
    index, entries = None, []
    if audits_dir.is_dir():
        if (audits_dir / "index.json").is_file():
            index = _read_json(audits_dir / "index.json")
            listed = index.get("audits") or []
            if not isinstance(listed, list):
                raise DataError(f"{audits_dir / 'index.json'}: 'audits' must be a list, got {type(listed).__name__}")
        else:
            index = {}
            listed = [{"dir": d.name} for d in sorted(audits_dir.iterdir()) if (d / "result.json").is_file()]
            notes.append(f"audits/index.json is missing; {len(listed)} audit folder(s) found by scanning audits/")
        entries = [_load_entry(audits_dir, e, i) for i, e in enumerate(listed)]
    return RunContents(path, metrics, environment, config, index, tuple(entries), tuple(notes))


def _load_entry(audits_dir: Path, entry: Any, i: int) -> AuditEntry:
    if not isinstance(entry, dict):
        return AuditEntry(
            f"audit #{i + 1}", "unknown", "error", "", "", error=f"index entry is not an object: {entry!r:.100}"
        )
    name = str(entry.get("name") or entry.get("dir") or f"audit #{i + 1}")
    dimension = str(entry.get("dimension") or "unknown")
    summary, rel = str(entry.get("summary") or ""), str(entry.get("dir") or "")
    folder = (audits_dir / rel).resolve()
    if not rel or not folder.is_relative_to(audits_dir.resolve()):
        return AuditEntry(
            name, dimension, "error", summary, rel, error=f"index entry's dir {rel!r} is not a folder inside audits/"
        )
    try:
        result = AuditResult.load(folder)
    except Exception as exc:  # noqa: BLE001  # one unreadable audit must not hide the others
        return AuditEntry(
            name, dimension, "error", summary, rel, error=f"could not load audits/{rel}: {type(exc).__name__}: {exc}"
        )
    return AuditEntry(result.audit, result.dimension, result.verdict.status, result.summary or summary, rel, result)


def _read_json(path: Path) -> dict[str, Any]:
    from trustrec._safeio import load_json

    data = load_json(path, what="a JSON file", error=DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def worst_status(statuses: Iterable[str]) -> str | None:
    """The worst of ``statuses`` by :data:`STATUS_ORDER` (unknown ones count as ``error``).

    Parameters
    ----------
    statuses : iterable of str
        Verdict statuses.

    Returns
    -------
    str or None
        The worst status; None when ``statuses`` is empty.
    """
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    statuses = list(statuses)
    if not statuses:
        return None
    return min(statuses, key=lambda s: rank.get(s, rank["error"]))


def dimensions_of(contents: RunContents) -> list[str]:
    """DIMENSIONS in their order, then any other dimension an index entry names."""
    extra = [e.dimension for e in contents.audits if e.dimension not in DIMENSIONS]
    return list(DIMENSIONS) + list(dict.fromkeys(extra))


def report_data(contents: RunContents, *, evidence_rows: int = 20, base: RunContents | None = None) -> dict[str, Any]:
    """The report as plain data (what ``report.json`` holds); with ``base``, the run next to that
    base run (``data["base"]``, :func:`trustrec.report.base_comparison`)."""
    m, index = contents.metrics, contents.index
    audited = index is not None
    created = (index or {}).get("created")
    date = created or datetime.fromtimestamp((contents.path / "metrics.json").stat().st_mtime, timezone.utc).isoformat(
        timespec="seconds"
    )
    scorecard = []
    for dim in dimensions_of(contents):
        entries = [e for e in contents.audits if e.dimension == dim]
        scorecard.append(
            {
                "dimension": dim,
                "n_audits": len(entries),
                "worst_status": worst_status(e.status for e in entries) if entries else "not_audited",
                "audits": [{"name": e.name, "status": e.status} for e in entries],
            }
        )
    audits = []
    for e in contents.audits:
        if e.result is not None:
            audits.append({**e.result.to_dict(evidence_rows=evidence_rows), "dir": e.dir, "load_error": None})
        else:
            audits.append(
                {
                    "audit": e.name,
                    "dimension": e.dimension,
                    "summary": e.summary,
                    "verdict": {"status": e.status, "reasons": [e.error]},
                    "estimates": {},
                    "settings": {},
                    "warnings": [],
                    "plots": [],
                    "evidence": {},
                    "dir": e.dir,
                    "load_error": e.error,
                }
            )
    notes = [f"warning: {w}" for w in (m.get("warnings") or []) if isinstance(w, str)] + list(contents.notes)
    if not audited:
        notes.insert(0, "not audited yet: this run has no audits/ folder, so only accuracy is reported")
    data = {
        "format": FORMAT,
        "trustrec_version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": m.get("run") or (index or {}).get("run") or contents.path.name,
        "model": m.get("model") or (index or {}).get("model"),
        "dataset": m.get("dataset") or (index or {}).get("dataset"),
        "date": date,
        "audited": audited,
        "notes": notes,
        "accuracy": {
            "metrics": m.get("metrics") or {},
            "aggregates": m.get("aggregates") or {},
            "counts": m.get("counts") or {},
        },
        "evaluation_bias": evaluation_bias(m),
        "scorecard": scorecard,
        "base": None,
        "audits": audits,
        "trail": (index or {}).get("trail") or {},
        "environment": contents.environment,
        "settings": {
            "config": contents.config,
            "evaluation": m.get("settings") or {},
            "timings_s": m.get("timings_s") or {},
        },
    }
    if base is not None:
        from trustrec.report._compare import base_comparison

        data["base"] = base_comparison(contents, base)
    return finite_json(data)


def evaluation_bias(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The "evaluation bias" panel: each metric under every scheme the run was evaluated with
    (``metrics.json['schemes']``, e.g. full, traditional-random, ure), or None with fewer than two."""
    schemes = metrics.get("schemes") or {}
    if not isinstance(schemes, dict) or len(schemes) < 2:
        return None
    values = metrics.get("metrics") or {}
    rows: dict[str, dict[str, Any]] = {}
    for scheme, info in schemes.items():
        for label in (info or {}).get("metrics") or []:
            suffix = f" ({scheme})"
            base = label[: -len(suffix)] if label.endswith(suffix) else label
            rows.setdefault(base, {})[scheme] = values.get(label) or {}
    rows = {base: by for base, by in rows.items() if len(by) > 1}
    return {
        "schemes": list(schemes),
        "rows": rows,
        "counts": {scheme: (info or {}).get("counts") or {} for scheme, info in schemes.items()},
        "explanation": (
            "The test set was randomly exposed. 'traditional-random' ranks only each user's randomly "
            "exposed items, which does not estimate the Recall@K the model would have if every item "
            "were shown; 'ure' (unbiased recall evaluation) ranks the whole catalog and counts the "
            "exposed positives above the user's top-K score threshold, which does; 'full' is the "
            "ordinary full-ranking evaluation with unexposed items counted as irrelevant."
        ),
    }


def finite_json(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None and non-JSON objects by their ``str``, so that it dumps
    as strict JSON."""
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    kind = getattr(getattr(value, "dtype", None), "kind", "")  # numpy scalars
    if kind == "b":
        return bool(value)
    if kind in ("i", "u"):
        return int(value)
    try:
        float(value)
    except (TypeError, ValueError):
        return str(value)
    return finite_number(value)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float (numpy scalars too); None for NaN, inf, booleans and what is not
    a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
