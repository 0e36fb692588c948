"""The audit trail: what exactly a run or an audit rested on, as checksums and versions.

Data: the interaction fingerprint plus sha256 of the item and user tables and of the split's
parts; model: sha256 of the saved config and of every checkpoint file; config digests, seeds and
library versions. Two trails that agree name the same inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["audit_trail", "data_changes", "data_trail", "file_sha256", "frame_sha256", "model_trail"]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def frame_sha256(frame: pd.DataFrame | None) -> str | None:
    """Order-sensitive sha256 of a table's values and column names (None for no table)."""
    if frame is None:
        return None
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _arrays_sha256(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def data_trail(dataset, split=None) -> dict[str, Any]:
    out = {
        "name": dataset.name,
        "source": dataset.source,
        "interactions_fingerprint": dataset.fingerprint(),
        "items_sha256": frame_sha256(dataset.items),
        "users_sha256": frame_sha256(dataset.users),
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_interactions": dataset.n_interactions,
    }
    if split is not None:
        out["split"] = {
            part: _arrays_sha256(inter.user, inter.item)
            for part, inter in (("train", split.train), ("valid", split.valid), ("test", split.test))
            if inter is not None
        }
    return out


def data_changes(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What differs between a recorded :func:`data_trail` and the current one, in words (empty
    when they name the same data). A trail recorded without a field is not compared on it."""
    if not recorded:
        return ["no data trail was recorded"]

    def short(v):
        return f"{v[:12]}..." if isinstance(v, str) and len(v) > 15 else repr(v)

    labels = {
        "interactions_fingerprint": "interactions",
        "items_sha256": "item table",
        "users_sha256": "user table",
        "n_users": "users",
        "n_items": "items",
        "n_interactions": "interaction count",
    }
    changes = [
        f"{label} ({short(recorded[key])} -> {short(current.get(key))})"
        for key, label in labels.items()
        if key in recorded and recorded[key] != current.get(key)
    ]
    before, now = recorded.get("split") or {}, current.get("split") or {}
    changes += [
        f"split part {part!r}"
        for part in sorted(set(before) | set(now))
        if part in before and before.get(part) != now.get(part)
    ]
    return changes


def model_trail(checkpoint: str | Path) -> dict[str, Any]:
    """sha256 of each file of a saved model folder (config.json, state.safetensors, fitted.json)."""
    checkpoint = Path(checkpoint)
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file()) if checkpoint.exists() else []
    return {"files": {p.relative_to(checkpoint).as_posix(): file_sha256(p) for p in files}}


def audit_trail(
    *, dataset, split, checkpoint, run_config_digest: str | None, seeds: dict[str, int], audit_configs: dict[str, dict]
) -> dict[str, Any]:
    import json

    from trustrec.runs._run import environment_info

    return {
        "data": data_trail(dataset, split),
        "model": model_trail(checkpoint) if checkpoint is not None else {"files": {}},
        "run_config_digest": run_config_digest,
        "seeds": seeds,
        "audit_config_sha256": {
            name: hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
            for name, cfg in audit_configs.items()
        },
        "environment": environment_info(),
    }
