"""The Recommender protocol: config-only constructor, ``fit -> self``, queries in, TopK out.

Save format: a folder with ``config.json`` (model name, config, trustrec version), ``state.safetensors``
(every fitted array, name ending in ``_``) and ``fitted.json`` (fitted scalars, and the raw item / user
ids of the training data, ``item_ids_`` / ``user_ids_``, so a loaded model answers raw ids without
the dataset: :meth:`Recommender.recommend_raw`); never pickle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trustrec._config import Config, Configurable
from trustrec.data import Dataset, QueryBatch, Split
from trustrec.errors import ConfigError, DataError, NotFittedError
from trustrec.models._topk import RawTopK, TopK, topk_from_scores

__all__ = [
    "FitOptions",
    "RawTopK",
    "Recommender",
    "TopK",
    "check_checkpoint_version",
    "is_saved_model",
    "topk_from_scores",
]


@dataclass(frozen=True)
class FitOptions:
    """How to fit, not what to fit: seed, device, progress display, and optional early stopping.

    ``validator`` maps a (partly trained) model to a score where higher is better (the eval layer
    builds one from a validation set, e.g. NDCG@10); iterative models check it every
    ``eval_every`` epochs and stop after ``patience`` checks without improvement, restoring the
    best state.

    Parameters
    ----------
    seed : int
        Seed of the random number generator (:meth:`rng`).
    device : str
        Device to fit on (``"cpu"``, ``"cuda"`` ...); a model refuses a device kind it does not
        list in its ``devices``.
    progress : bool
        Whether to show a progress display while fitting.
    validator : callable or None
        Maps a (partly trained) model to a score, higher is better; None: no early stopping.
    eval_every : int
        Epochs between two calls of ``validator``.
    patience : int
        Checks without improvement after which fitting stops.
    threads : int or None
        CPU threads for torch (``torch.set_num_threads``) in torch-based models; None leaves
        the default.
    """

    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    validator: Callable[[Recommender], float] | None = field(default=None, compare=False)
    eval_every: int = 1
    patience: int = 5
    threads: int | None = None

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Recommender(Configurable):
    """Base class. Subclasses set ``config_class`` and implement ``_fit`` and ``score`` (full
    ranking) or override ``recommend``.

    ``capabilities`` says what a model can do, for the conformance checks and the audits:
    ``"score"`` (full-ranking scores), ``"user_embeddings"``, ``"uses_history"`` (answers change
    with the query's history), ``"stochastic_training"``, ``"text"`` ...

    Parameters
    ----------
    config : Config, mapping or None
        The model's settings, validated against ``config_class``; None: build them from the
        keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).

    Raises
    ------
    ConfigError
        When both ``config`` and keyword arguments are given, or the settings are invalid.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Config]] = Config
    capabilities: ClassVar[frozenset[str]] = frozenset({"score"})
    # Device kinds ``FitOptions.device`` may name; any other is refused, never silently ignored.
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    # what approximate unlearning did (trustrec.models.training.approximate_unlearn); only on a model it changed
    unlearning_: dict[str, Any]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The config's parameters (``deep``: also those of nested stages, as ``<stage>__<param>``;
        only composed recommenders have stages)."""
        return super().get_params()

    # -- fitting ------------------------------------------------------------------------
    def fit(self, data: Dataset | Split, options: FitOptions | None = None) -> Recommender:
        """Fit on a Dataset (all its interactions) or a Split (its training part). Returns self."""
        options = options or FitOptions()
        from trustrec._device import check_device_supported

        check_device_supported(type(self).__name__, options.device, self.devices)
        train = data.train_dataset() if isinstance(data, Split) else data
        if not isinstance(train, Dataset):
            raise DataError(f"{type(self).__name__}.fit expects a Dataset or a Split, got {type(data).__name__}")
        if train.n_interactions == 0:
            raise DataError(f"{type(self).__name__}.fit: the training data '{train.name}' has no interactions")
        for key in [k for k in vars(self) if k.endswith("_")]:
            delattr(self, key)  # a second fit starts from scratch
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self.item_ids_, self.user_ids_ = _vocabulary(train)
        self._fit(train, options)
        return self

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        raise NotImplementedError

    def is_fitted(self) -> bool:
        return hasattr(self, "n_items_")

    def audit_gap(self, need: str) -> str | None:
        """None when this model can serve an audit that needs ``need``; otherwise why not.

        ``need`` is what an audit asks of the model (its ``requires``): ``"lists"`` (the top-K
        lists of the evaluation queries only), ``"queries"`` (answers to new queries: edited
        histories, other users, candidate lists) or ``"retraining"`` (a fresh copy rebuilt from
        its name and config and fitted on other data). Every model trustrec trains can do all
        three; adapters of models trained elsewhere (:mod:`trustrec.models.external`) say what
        they cannot, so those audits come out not applicable with the reason.

        Parameters
        ----------
        need : str
            ``"lists"``, ``"queries"`` or ``"retraining"``.

        Returns
        -------
        str or None
            None when the model can; otherwise the reason it cannot.
        """
        return None

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(train) first")

    # -- answering queries --------------------------------------------------------------
    def score(self, queries: QueryBatch) -> np.ndarray:
        """(n_queries, n_items) scores; NaN where the model cannot score."""
        raise NotImplementedError(f"{type(self).__name__} does not score the full catalog")

    def _prepare(self, queries: QueryBatch) -> QueryBatch:
        self._check_fitted()
        if not isinstance(queries, QueryBatch):
            raise DataError(f"{type(self).__name__}: expected a QueryBatch, got {type(queries).__name__}")
        cleaned, _ = queries.restrict(self.n_users_, self.n_items_)
        return cleaned

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """Top-``k`` in-catalog items per query (from the query's candidates when it has them);
        history items are excluded unless ``exclude_seen=False``."""
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        scores = np.asarray(self.score(queries), dtype=np.float64)
        return topk_from_scores(scores, k, exclusion_mask(queries, self.n_items_, exclude_seen))

    # -- raw ids: the fit-time vocabulary -------------------------------------------------
    def has_vocabulary(self) -> bool:
        """Whether the model knows the raw ids of its training data (every model fitted or saved
        since vocabularies were recorded; not a checkpoint saved before)."""
        return self.is_fitted() and hasattr(self, "item_ids_") and hasattr(self, "user_ids_")

    def adopt_vocabulary(self, fitted: Recommender) -> None:
        """Take the raw-id vocabulary of ``fitted`` (a model this one wraps or builds on)."""
        for key in ("item_ids_", "user_ids_"):
            if hasattr(fitted, key):
                setattr(self, key, list(getattr(fitted, key)))

    def queries_from_raw(
        self,
        histories: Collection[Iterable[object]],
        *,
        users: Collection[object] | None = None,
        candidates: Collection[Iterable[object]] | None = None,
    ) -> QueryBatch:
        """A :class:`QueryBatch` from raw ids: ``histories`` one list of item ids per query (oldest
        first), ``users`` one user id (or ``None``: anonymous) per query, ``candidates`` one list
        of item ids per query. Unknown ids raise a :class:`DataError` naming them."""
        self._check_fitted()
        if not self.has_vocabulary():
            raise DataError(
                f"{type(self).__name__}: this model has no id vocabulary (a checkpoint saved before trustrec "
                "recorded the training data's item and user ids), so it cannot answer raw ids; map them with "
                "the training Dataset (Dataset.item_index / user_index) and call recommend, or refit and save again"
            )
        who = f"{type(self).__name__}.queries_from_raw"
        rows = _id_rows(histories, "histories", who)
        n = len(rows)
        if users is None:
            user_idx = np.full(n, -1, np.int64)
        else:
            if isinstance(users, (str, bytes)) or len(users) != n:
                raise DataError(
                    f"{who}: users must hold one user id (or None) per query ({n} queries), got {users!r:.80}"
                )
            given = [u is not None for u in users]
            user_idx = np.full(n, -1, np.int64)
            user_idx[given] = _lookup_ids([u for u in users if u is not None], self.user_ids_, "user", who)
        hist = _ragged_ids(rows, self.item_ids_, who)
        cands = None
        if candidates is not None:
            cand_rows = _id_rows(candidates, "candidates", who)
            if len(cand_rows) != n:
                raise DataError(f"{who}: {n} histories but {len(cand_rows)} candidate lists")
            cands = _ragged_ids(cand_rows, self.item_ids_, who)
        return QueryBatch(user_idx, hist, candidates=cands)

    def recommend_raw(
        self,
        histories: Collection[Iterable[object]],
        k: int = 10,
        *,
        users: Collection[object] | None = None,
        candidates: Collection[Iterable[object]] | None = None,
        exclude_seen: bool = True,
    ) -> RawTopK:
        """:meth:`recommend` in raw ids: queries as in :meth:`queries_from_raw`, the answer as
        :class:`RawTopK` (raw item ids and scores, rows aligned with the queries)."""
        queries = self.queries_from_raw(histories, users=users, candidates=candidates)
        return RawTopK.from_topk(self.recommend(queries, k, exclude_seen=exclude_seen), self.item_ids_)

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted arrays (for safetensors) and fitted JSON-able values."""
        arrays, values = {}, {}
        for key, value in vars(self).items():
            if not key.endswith("_"):
                continue
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            if isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            else:
                values[key] = value
        return arrays, values

    def _restore(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        for key, value in {**values, **arrays}.items():
            setattr(self, key, value)

    def save(self, path: str | Path) -> Path:
        """Write the model into the folder ``path`` in one rename. An existing folder is replaced
        only when it is empty or a saved trustrec model; any other folder is refused, untouched."""
        from safetensors.numpy import save_file

        from trustrec._cache import atomic_directory, atomic_write_text, file_digest
        from trustrec._version import __version__

        path = Path(path)
        with atomic_directory(path, replaceable=is_saved_model) as tmp:
            if self.is_fitted():
                arrays, values = self._state()
                save_file(arrays, str(tmp / "state.safetensors"))
                atomic_write_text(tmp / "fitted.json", json.dumps(values, indent=1))
            # Written last, with the state files' checksums: a state edited afterwards is refused.
            files = {p.name: file_digest(p) for p in sorted(tmp.iterdir())}
            atomic_write_text(
                tmp / "config.json",
                json.dumps(
                    {
                        "model": self.name,
                        "config": self.dump_config(),
                        "trustrec_version": __version__,
                        "files_sha256": files,
                    },
                    indent=1,
                ),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model (``Recommender.load``) or check the type (``SASRec.load``).

        Every file is validated before use: a tampered or foreign folder raises a
        :class:`~trustrec.errors.DataError` naming the file and the problem, never a traceback."""
        from trustrec.errors import ModelNotFoundError
        from trustrec.models._registry import model_class

        path = Path(path)
        if not path.is_dir():
            raise DataError(f"{path}: not a saved trustrec model (a saved model is a folder with config.json)")
        meta = _read_json_object(path / "config.json", "not a saved trustrec model")
        check_checkpoint_version(path)
        if not isinstance(meta.get("model"), str) or not isinstance(meta.get("config"), dict):
            raise DataError(f"{path / 'config.json'}: needs 'model' (a name) and 'config' (a mapping)")
        try:
            klass = model_class(meta["model"])
        except (ModelNotFoundError, ConfigError) as exc:
            raise DataError(f"{path / 'config.json'}: {exc}") from None
        if cls is not Recommender and not issubclass(klass, cls):
            raise DataError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        try:
            model = klass(meta["config"])
        except (ConfigError, TypeError, ValueError) as exc:
            raise DataError(f"{path / 'config.json'}: invalid config for {meta['model']!r}: {exc}") from None
        _check_file_digests(path, meta)
        if (path / "state.safetensors").exists() or (path / "fitted.json").exists():
            arrays = _read_safetensors(path / "state.safetensors")
            values = _read_json_object(path / "fitted.json", "the fitted values of a saved model are missing")
            try:
                model._restore(arrays, values)
                model._check_restored()
            except (DataError, ConfigError) as exc:
                raise DataError(f"{path}: the saved state does not fit the model: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a tampered state file must never surface as a traceback
                raise DataError(
                    f"{path}: the saved state does not fit the model ({type(exc).__name__}: {exc})"
                ) from None
        return model

    def _check_restored(self) -> None:
        """After loading: the fitted sizes are sane and, for full-ranking models, one query is
        answered with a score row over the whole catalog (catches arrays of the wrong shape)."""
        for key in ("n_users_", "n_items_"):
            value = getattr(self, key, None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"fitted value {key} must be a positive integer, got {value!r}")
        for key, size in (("item_ids_", self.n_items_), ("user_ids_", self.n_users_)):
            ids = getattr(self, key, None)  # absent in checkpoints saved before vocabularies
            if ids is not None and not (
                isinstance(ids, list)
                and len(ids) == size
                and all(isinstance(i, str) for i in ids)
                and len(set(ids)) == size
            ):
                raise DataError(
                    f"fitted value {key} must list {size} distinct id strings (one per index), got "
                    f"{type(ids).__name__} of length {len(ids) if hasattr(ids, '__len__') else '?'}"
                )
        if "score" not in self.capabilities or "text" in self.capabilities:
            return  # text models read item text and an LLM/encoder: checked when first used
        probe = QueryBatch.from_histories([[0]], users=[0])
        scores = np.asarray(self.score(probe))
        if scores.shape != (1, self.n_items_):
            raise DataError(f"a query scored as shape {scores.shape}, expected (1, {self.n_items_})")
        if np.isnan(scores).all():
            raise DataError("a query scored only NaN values (damaged weights?)")


def _check_file_digests(path: Path, meta: dict) -> None:
    """The state files are those saved with this config (checkpoints from before checksums were
    recorded have none to compare)."""
    from trustrec._cache import file_digest

    recorded = meta.get("files_sha256")
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise DataError(f"{path / 'config.json'}: 'files_sha256' must be a mapping")
    present = {name for name in _SAVED_FILES - {"config.json"} if (path / name).exists()}
    if present != set(recorded):
        raise DataError(f"{path}: holds {sorted(present)} but was saved with {sorted(recorded)}")
    for name, digest in recorded.items():
        if not (path / name).is_file():
            raise DataError(f"{path / name}: not a regular file")
        if file_digest(path / name) != digest:
            raise DataError(
                f"{path / name}: changed since the model was saved (sha256 differs from "
                "the one recorded in config.json)"
            )


def _read_json_object(path: Path, missing: str) -> dict:
    if not path.exists():
        raise DataError(f"{path.parent}: {missing} (no {path.name})")
    from trustrec._safeio import load_json_object

    return load_json_object(path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise DataError(f"{path}: missing or not a regular file")
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        raise DataError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {str(exc)[:200]})") from None
    return arrays


def _vocabulary(train: Dataset) -> tuple[list[str], list[str]]:
    """The raw item and user ids of ``train``, by index (JSON-able: saved in fitted.json)."""
    return [str(i) for i in train.item_ids], [str(u) for u in train.user_ids]


def _id_rows(rows, what: str, who: str) -> list[list]:
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__"):
        raise DataError(f"{who}: {what} must be a list with one list of item ids per query, got {rows!r:.80}")
    rows = list(rows)
    bad = [i for i, r in enumerate(rows) if isinstance(r, (str, bytes)) or not hasattr(r, "__iter__")]
    if bad:
        raise DataError(
            f"{who}: {what} must be a list with one list of item ids per query; entry {bad[0]} is "
            f"{rows[bad[0]]!r:.80} (for one query pass [[id, id, ...]])"
        )
    return [list(r) for r in rows]


def _lookup_ids(raw: list, vocabulary: list[str], kind: str, who: str) -> np.ndarray:
    import pandas as pd

    raw = [str(r) for r in raw]
    idx = pd.Index(vocabulary).get_indexer(raw) if raw else np.empty(0, np.int64)
    if (idx < 0).any():
        unknown = list(dict.fromkeys(r for r, i in zip(raw, idx) if i < 0))
        raise DataError(
            f"{who}: {len(unknown)} {kind} ids are unknown to the model (not in its training data): "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}; known {kind} ids look like "
            f"{vocabulary[:3]}"
        )
    return np.asarray(idx, np.int64)


def _ragged_ids(rows: list[list], vocabulary: list[str], who: str):
    from trustrec.data import Ragged

    flat = _lookup_ids([x for r in rows for x in r], vocabulary, "item", who)
    return Ragged(np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64), flat)


_SAVED_FILES = frozenset({"config.json", "state.safetensors", "fitted.json"})


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", str(text))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def check_checkpoint_version(checkpoint: str | Path, current: str | None = None) -> str:
    """The trustrec version a checkpoint was written by; refuses one written by a newer trustrec
    (its format may hold what this version cannot read correctly).

    Parameters
    ----------
    checkpoint : str or Path
        A saved model folder (with ``config.json``).
    current : str or None
        The running trustrec version (default: the installed one).

    Returns
    -------
    str
        The checkpoint's ``trustrec_version`` ("unknown" when it records none).

    Raises
    ------
    ConfigError
        When the checkpoint was written by a newer trustrec, or its version is unreadable.
    DataError
        When ``config.json`` is missing or not a JSON object.
    """
    from trustrec._version import __version__

    current = current or __version__
    path = Path(checkpoint) / "config.json"
    meta = _read_json_object(path, "not a saved trustrec model")
    saved = meta.get("trustrec_version")
    if saved is None:
        return "unknown"
    ours, theirs = _version_tuple(current), _version_tuple(str(saved))
    if theirs is None:
        raise ConfigError(f"{path}: unreadable trustrec_version {saved!r}")
    if ours is not None and theirs > ours:
        raise ConfigError(
            f"{checkpoint}: written by trustrec {saved}, newer than this trustrec {current}; "
            "upgrade trustrec (pip install -U trustrec) to load it"
        )
    return str(saved)


def is_saved_model(path: str | Path) -> bool:
    """Whether ``path`` is a folder ``Recommender.save`` wrote: its files and a config.json naming
    the model and the trustrec version, nothing else beside them."""
    path = Path(path)
    try:
        names = {p.name for p in path.iterdir()}
        meta = json.loads((path / "config.json").read_text(encoding="utf-8")) if "config.json" in names else None
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"model", "trustrec_version"} <= meta.keys() and names <= _SAVED_FILES


def exclusion_mask(queries: QueryBatch, n_items: int, exclude_seen: bool) -> np.ndarray | None:
    """Items a query must not get: its history (unless asked) and, with candidates, all others.

    Parameters
    ----------
    queries : QueryBatch
        The queries (their histories and optional candidate sets).
    n_items : int
        Number of items in the catalog (the mask's width).
    exclude_seen : bool
        Whether each query's history items are excluded.

    Returns
    -------
    numpy.ndarray or None
        Boolean (n_queries, n_items) mask, True where an item is excluded; None when nothing is.
    """
    mask = queries.seen_mask(n_items) if exclude_seen else None
    if queries.candidates is not None:
        outside = ~queries.candidates.to_dense_mask(n_items)
        mask = outside if mask is None else (mask | outside)
    return mask
