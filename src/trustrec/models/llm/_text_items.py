"""Item text embeddings: every catalog item rendered as text and embedded by a sentence encoder.

These vectors are what the "LLM as encoder" recommenders use as item representations. They
depend only on the item text, never on interactions, so an item nobody has interacted with yet
(cold start) gets a vector like any other.

Encoding a catalog takes seconds to minutes, so the matrix is cached in the trustrec cache
(``<cache>/text-embeddings/<key>.npy``, written atomically) under a hash of the encoder name and
the exact rendered texts: changing a title, the fields or ``max_chars`` gives a new key, and a
second call with the same inputs reads the file instead of loading the encoder.

Items without a title are rendered with :func:`render_item`'s placeholder ("item 123"), so one
item lacking text does not stop a catalog. A catalog where *no* item has a title and no
``fields`` are given raises ``DataError``: its embeddings would encode nothing but item numbers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trustrec._cache import atomic_write_bytes, cache_dir
from trustrec.errors import ConfigError, DataError
from trustrec.models.llm._loading import TextEncoder, load_text_encoder
from trustrec.models.llm._prompts import clean_text, render_item

if TYPE_CHECKING:
    from trustrec.data import Dataset

__all__ = ["item_text_embeddings", "render_item_texts"]

_CACHE_FORMAT = 1  # bump when the rendering or the file layout changes, so old files are not reused


def _items_table(dataset_or_items) -> tuple[pd.DataFrame, str]:
    if isinstance(dataset_or_items, pd.DataFrame):  # checked first: DataFrame.items is a method
        return dataset_or_items, "items table"
    items = getattr(dataset_or_items, "items", None)
    if not isinstance(items, pd.DataFrame):
        raise DataError(
            f"item_text_embeddings: expected a Dataset or an items DataFrame, got {type(dataset_or_items).__name__}"
        )
    return items, getattr(dataset_or_items, "name", "dataset")


def render_item_texts(
    dataset_or_items: Dataset | pd.DataFrame, fields: Sequence[str] = (), *, max_chars: int = 200
) -> list[str]:
    """The text of every item, in item-index order (see :func:`render_item`).

    Raises ``DataError`` for a field that is not a column, and when no item has any text to
    render (no ``title`` column or only missing titles, and no ``fields``).

    Parameters
    ----------
    dataset_or_items : Dataset or pandas.DataFrame
        A Dataset (its ``items``) or an items table, row ``i`` = item index ``i``.
    fields : sequence of str
        Item columns shown after the title (default none).
    max_chars : int
        Character budget of one item's text (default 200).

    Returns
    -------
    list of str
        One text per item, in item-index order.

    Raises
    ------
    DataError
        When ``dataset_or_items`` has no items table, a field is not a column, or (without
        ``fields``) no item has a title.
    """
    items, label = _items_table(dataset_or_items)
    fields = tuple(fields)
    unknown = [f for f in fields if f not in items.columns]
    if unknown:
        raise DataError(
            f"'{label}': item field(s) {unknown} are not columns of the items table; columns: {list(items.columns)}"
        )
    if not fields:
        has_title = "title" in items.columns and items["title"].map(clean_text).astype(bool).any()
        if not has_title:
            what = "has no 'title' column" if "title" not in items.columns else "has no item with a 'title'"
            raise DataError(
                f"'{label}': the items table {what}, so item texts would be placeholders only; "
                "name text columns with fields=(...) or use a dataset with titles"
            )
    records = items.to_dict("records")
    return [render_item(row, fields, index=i, max_chars=max_chars) for i, row in enumerate(records)]


def _cache_path(encoder_name: str, texts: list[str]) -> os.PathLike:
    digest = hashlib.sha256(
        json.dumps({"format": _CACHE_FORMAT, "encoder": encoder_name, "texts": texts}, ensure_ascii=False).encode(
            "utf-8"
        )
    ).hexdigest()
    return cache_dir() / "text-embeddings" / f"{digest[:32]}.npy"


def _read_cached(path, n_texts: int) -> np.ndarray | None:
    """The cached matrix, or None when absent or unusable (then it is computed and rewritten)."""
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if matrix.ndim != 2 or matrix.shape[0] != n_texts or matrix.dtype != np.float32:
        return None
    return matrix


def _write_cached(path, matrix: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def item_text_embeddings(
    dataset_or_items: Dataset | pd.DataFrame,
    encoder: str | os.PathLike | TextEncoder = "all-minilm-l6-v2",
    fields: Sequence[str] = (),
    max_chars: int = 200,
    batch_size: int = 64,
    progress: bool = False,
    cache: bool = True,
) -> np.ndarray:
    """``(n_items, dim)`` float32 embeddings of every item's text, row ``i`` for item index ``i``.

    ``dataset_or_items``: a Dataset (its ``items``) or an items DataFrame indexed by item index.
    ``encoder``: a registered text-encoder name, a checkpoint folder, or a loaded
    :class:`TextEncoder` (or any object with ``encode(texts, batch_size=, progress=)``; its
    ``name`` keys the cache, and an encoder without a name is never cached). Rows are L2-normalised when the encoder
    normalises (the default). With ``cache``, the matrix is read from / written to the trustrec
    cache, keyed by the encoder name and the rendered texts.

    Parameters
    ----------
    dataset_or_items : Dataset or pandas.DataFrame
        A Dataset (its ``items``) or an items table, row ``i`` = item index ``i``.
    encoder : str, path-like or TextEncoder
        Registered text-encoder name, checkpoint folder (loaded only when not cached) or loaded
        encoder (default ``"all-minilm-l6-v2"``).
    fields : sequence of str
        Item columns shown after the title (default none).
    max_chars : int
        Character budget of one item's text (default 200).
    batch_size : int
        Texts per encoder batch (default 64).
    progress : bool
        Whether to show loading and encoding progress (default False).
    cache : bool
        Whether to read and write the trustrec cache (default True).

    Returns
    -------
    numpy.ndarray
        ``(n_items, dim)`` float32 embeddings.

    Raises
    ------
    ConfigError
        When ``max_chars`` is below 1.
    DataError
        As :func:`render_item_texts`.
    """
    if max_chars < 1:
        raise ConfigError(f"item_text_embeddings: max_chars must be >= 1; got {max_chars}")
    texts = render_item_texts(dataset_or_items, fields, max_chars=max_chars)
    encoder_name = os.fspath(encoder) if isinstance(encoder, (str, os.PathLike)) else getattr(encoder, "name", "")
    path = _cache_path(encoder_name, texts) if cache and encoder_name else None
    if path is not None:
        cached = _read_cached(path, len(texts))
        if cached is not None:
            return cached
    if isinstance(encoder, (str, os.PathLike)):  # by name or path: loaded only when not cached
        encoder = load_text_encoder(encoder, progress=progress)
    matrix = np.ascontiguousarray(encoder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)
    if path is not None:
        _write_cached(path, matrix)
    return matrix
