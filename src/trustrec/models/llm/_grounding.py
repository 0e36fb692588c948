"""BIGRec's grounding: map generated text to catalog items by the LM's own hidden states.

BIGRec (Bao et al., "A Bi-Step Grounding Paradigm for Large Recommendation Language Models",
arXiv 2308.08434) lets a fine-tuned LM write an item title freely and grounds the text in the
catalog afterwards: the text and every catalog title are embedded as the final-layer hidden state
of their *last* token, and items are ranked by the L2 distance between the two (``torch.cdist``).
A second step re-weights the distances with item popularity::

    score = (1 + x) ** (-gamma) * distance        (smaller is better)

where ``x`` is the item's popularity min-max normalised to [0, 1] over the catalog; ``gamma = 0``
is plain L2 grounding, larger ``gamma`` moves popular items up. ``gamma`` is chosen on validation
data (:meth:`HiddenStateGrounder.tune_gamma`).

Choices, all fixed here so every caller grounds the same way:

* **Tokenization and padding.** Each text is tokenized alone with the tokenizer's special tokens
  (``add_special_tokens=True``, as BIGRec's evaluation does: a Llama tokenizer prepends BOS), then
  batched with **left padding**, as BIGRec's batches are, so the last position of every row is
  the text's last real token. Unlike BIGRec, the position ids are counted from each row's first
  real token (``cumsum(attention_mask) - 1``), so a padded row gives the same hidden state as the
  text run alone (up to float rounding) for any position encoding, not only rotary ones.
* **Distances.** ``distance`` is the L2 distance. BIGRec's popularity script min-max normalises
  each text's distances over the catalog before re-weighting (``normalize_distance=True``, the
  default here too; the nearest item then keeps score 0 whatever ``gamma``); with
  ``normalize_distance=False`` the raw L2 distance is re-weighted. Either way ``gamma = 0`` ranks
  by plain L2 distance.
* **Duplicate titles.** Identical titles are embedded once, so their items get identical
  embeddings and identical scores; ties are broken by the lowest item index (a stable sort), as
  :class:`~trustrec.models.llm.TitleTrie` resolves a shared leaf to its lowest item.
* **Empty titles** (empty, whitespace only, or no tokens) have no embedding: those items are never
  returned (``empty_items`` lists them).
* **Empty generated text** (empty or whitespace only, or no tokens): the text names nothing, so it
  is grounded to nothing: its row of :meth:`HiddenStateGrounder.rank` holds no item (all -1,
  scores +inf) and :meth:`HiddenStateGrounder.tune_gamma` counts it as a miss. There is no
  popularity fallback; a caller that wants one backfills the empty rows itself.
* **Only catalog items.** Every returned index is a catalog item with a non-empty title that is
  not excluded for that text; rows hold fewer than ``k`` items (padded with -1, scores +inf)
  when fewer qualify.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "DEFAULT_GAMMAS",
    "HiddenStateGrounder",
    "interleave_rankings",
    "normalize_popularity",
    "popularity_reweight",
]

#: Default grid of :meth:`HiddenStateGrounder.tune_gamma` (ascending; 0 is plain L2 grounding).
DEFAULT_GAMMAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

_TEXT_CHUNK = 256  # texts whose catalog distances are held at once


def normalize_popularity(popularity: npt.ArrayLike, n_items: int | None = None) -> np.ndarray:
    """Min-max normalised popularity, BIGRec's ``x`` in ``(1 + x) ** (-gamma)``.

    Parameters
    ----------
    popularity : array_like of float
        One non-negative, finite value per item (e.g. training interaction counts).
    n_items : int or None
        Expected length (checked when given).

    Returns
    -------
    numpy.ndarray
        float64 values in [0, 1]: 0 for the least popular item, 1 for the most popular; all 0
        when every item is equally popular.

    Raises
    ------
    ValueError
        When the length is not ``n_items``, or a value is negative or not finite.
    """
    pop = np.asarray(popularity, dtype=np.float64).ravel()
    if n_items is not None and len(pop) != n_items:
        raise ValueError(f"popularity has {len(pop)} values for {n_items} items; give one per item")
    if len(pop) and (not np.all(np.isfinite(pop)) or pop.min() < 0):
        raise ValueError("popularity must be finite and non-negative")
    if not len(pop):
        return pop
    span = pop.max() - pop.min()
    return (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)


def popularity_reweight(distance: npt.ArrayLike, popularity: npt.ArrayLike | None, gamma: float) -> np.ndarray:
    """BIGRec's re-weighted score ``(1 + x) ** (-gamma) * distance`` (smaller is better).

    Parameters
    ----------
    distance : array_like of float
        ``(n_texts, n_items)`` distances (+inf marks an item that cannot be chosen; it stays +inf).
    popularity : array_like of float or None
        One value per item, min-max normalised here (:func:`normalize_popularity`); None: no
        re-weighting.
    gamma : float
        Strength of the re-weighting (>= 0; 0 leaves the distances as they are).

    Returns
    -------
    numpy.ndarray
        float64 scores of the same shape.

    Raises
    ------
    ValueError
        When ``gamma`` is negative or not finite, or ``popularity`` has the wrong length.
    """
    dist = np.asarray(distance, dtype=np.float64)
    if not (np.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    if popularity is None or gamma == 0:
        return dist.copy()
    x = normalize_popularity(popularity, dist.shape[-1])
    return np.power(1.0 + x, -float(gamma)) * dist


class HiddenStateGrounder:
    """Grounds generated texts in a catalog by last-token hidden states (BIGRec).

    Catalog titles are embedded once, on first use, and cached; see the module docstring for the
    padding, duplicate, empty-title and empty-text rules.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (anything whose forward takes ``input_ids``, ``attention_mask`` and
        ``output_hidden_states`` and returns ``hidden_states``); it is run in eval mode under
        ``torch.inference_mode`` and left in the mode it was in.
    tokenizer : transformers.PreTrainedTokenizerBase
        The model's tokenizer (its pad token, else eos, else 0 fills the padding; it is not
        modified).
    titles : sequence of str
        Item ``i``'s title at position ``i``.
    batch_size : int
        Texts per forward pass (default 16, as BIGRec).
    add_special_tokens : bool
        Whether texts are tokenized with the tokenizer's special tokens (default True, as BIGRec).
    normalize_distance : bool
        Whether each text's L2 distances are min-max normalised over the catalog before the
        popularity re-weighting (default True, as BIGRec's popularity step).

    Raises
    ------
    ValueError
        When ``batch_size`` is not positive.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        titles: Sequence[str],
        *,
        batch_size: int = 16,
        add_special_tokens: bool = True,
        normalize_distance: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"HiddenStateGrounder: batch_size must be positive; got {batch_size!r}")
        self.model, self.tokenizer = model, tokenizer
        self.titles = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in titles]
        self.batch_size = int(batch_size)
        self.add_special_tokens = bool(add_special_tokens)
        self.normalize_distance = bool(normalize_distance)
        self._catalog: Any = None  # (n_unique, hidden) float32 tensor on the model's device
        self._inverse: np.ndarray | None = None  # item -> row of _catalog, -1 for an empty title

    def __repr__(self) -> str:
        return f"HiddenStateGrounder(n_items={self.n_items}, batch_size={self.batch_size})"

    @property
    def n_items(self) -> int:
        """Number of catalog items."""
        return len(self.titles)

    # -- embedding ------------------------------------------------------------------------------
    def _device(self) -> Any:
        import torch

        try:
            return next(self.model.parameters()).device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    def _pad_id(self) -> int:
        for candidate in (getattr(self.tokenizer, "pad_token_id", None), getattr(self.tokenizer, "eos_token_id", None)):
            if candidate is not None:
                return int(candidate)
        return 0

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = [[] for _ in texts]
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            encoded = self.tokenizer([texts[i] for i in keep], add_special_tokens=self.add_special_tokens)["input_ids"]
            for i, row in zip(keep, encoded):
                ids[i] = [int(x) for x in row]
        return ids

    def _forward_last(self, ids: list[list[int]]) -> Any:
        """Final-layer hidden state of each sequence's last token, (n, hidden) float32 (left
        padding, position ids counted from each row's first real token)."""
        import torch

        device = self._device()
        width = max(len(r) for r in ids)
        input_ids = torch.full((len(ids), width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        kwargs: dict[str, Any] = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
        if _accepts(self.model, "position_ids"):
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        out = self.model(**kwargs, output_hidden_states=True)
        return out.hidden_states[-1][:, -1, :].float()

    def _embed_tensor(self, texts: Sequence[str]) -> tuple[Any, np.ndarray]:
        """(embeddings of the texts that have tokens, on the model's device; boolean mask of
        those texts)."""
        import torch

        texts = [str(t) for t in texts]
        ids = self._token_ids(texts)
        has = np.array([len(r) > 0 for r in ids], dtype=bool)
        order = [int(i) for i in np.argsort([len(r) for r in ids], kind="stable") if has[i]]  # length-sorted batches
        parts: list[Any] = []
        was_training = bool(getattr(self.model, "training", False))
        if hasattr(self.model, "eval"):
            self.model.eval()
        try:
            with torch.inference_mode():
                parts = [
                    self._forward_last([ids[i] for i in order[start : start + self.batch_size]])
                    for start in range(0, len(order), self.batch_size)
                ]
        finally:
            if was_training and hasattr(self.model, "train"):
                self.model.train()
        if not parts:
            hidden = int(getattr(getattr(self.model, "config", None), "hidden_size", 0) or 0)
            return torch.empty((0, hidden), dtype=torch.float32, device=self._device()), has
        stacked = torch.cat(parts)
        back = np.argsort(np.asarray(order, dtype=np.int64), kind="stable")  # stack rows, in text order
        return stacked[torch.as_tensor(back, dtype=torch.long, device=stacked.device)], has

    def _ensure_catalog(self) -> None:
        if self._catalog is not None:
            return
        unique = list(dict.fromkeys(self.titles))
        emb, has = self._embed_tensor(unique)
        row_of_unique = np.full(len(unique), -1, dtype=np.int64)
        row_of_unique[has] = np.arange(int(has.sum()))
        position = {t: j for j, t in enumerate(unique)}
        self._inverse = row_of_unique[np.array([position[t] for t in self.titles], dtype=np.int64)]
        self._catalog = emb

    @property
    def empty_items(self) -> np.ndarray:
        """Items whose title has no embedding (empty, whitespace only, or no tokens); never
        returned."""
        self._ensure_catalog()
        assert self._inverse is not None
        return np.flatnonzero(self._inverse < 0)

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, hidden)`` float32 title embeddings (cached); NaN rows for empty titles."""
        self._ensure_catalog()
        assert self._inverse is not None
        emb = self._catalog.cpu().numpy()
        out = np.full((self.n_items, emb.shape[1] if emb.ndim == 2 else 0), np.nan, dtype=np.float32)
        ok = self._inverse >= 0
        out[ok] = emb[self._inverse[ok]]
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed generated texts as the titles are (last token, final layer).

        Parameters
        ----------
        texts : sequence of str
            The texts; empty ones (no tokens) get a NaN row.

        Returns
        -------
        numpy.ndarray
            ``(n_texts, hidden)`` float32.
        """
        self._ensure_catalog()
        emb, has = self._embed_tensor(list(texts))
        out = np.full((len(has), self._catalog.shape[1]), np.nan, dtype=np.float32)
        out[has] = emb.cpu().numpy()
        return out

    # -- distances and ranking -----------------------------------------------------------------------
    def distances(self, texts: Sequence[str]) -> np.ndarray:
        """L2 distance of every text to every item (``torch.cdist``, one batch per chunk of texts).

        Parameters
        ----------
        texts : sequence of str
            Generated texts.

        Returns
        -------
        numpy.ndarray
            ``(n_texts, n_items)`` float64; +inf for an empty text (whole row) and for items with an
            empty title (whole column). Not normalised.
        """
        import torch

        self._ensure_catalog()
        assert self._inverse is not None
        texts = [str(t) for t in texts]
        out = np.full((len(texts), self.n_items), np.inf, dtype=np.float64)
        ok_items = np.flatnonzero(self._inverse >= 0)
        if not len(ok_items):
            return out
        cols = torch.as_tensor(self._inverse[ok_items], dtype=torch.long, device=self._catalog.device)
        for start in range(0, len(texts), _TEXT_CHUNK):
            emb, has = self._embed_tensor(texts[start : start + _TEXT_CHUNK])
            if not has.any():
                continue
            # distances to the unique titles, then spread: duplicate titles get bit-identical values
            dist = torch.cdist(emb, self._catalog, p=2, compute_mode="donot_use_mm_for_euclid_dist")
            rows = start + np.flatnonzero(has)
            out[np.ix_(rows, ok_items)] = dist[:, cols].double().cpu().numpy()
        return out

    def _scores(self, dist: np.ndarray, popularity: npt.ArrayLike | None, gamma: float, exclude: Any) -> np.ndarray:
        """Re-weighted scores (smaller better), +inf where an item cannot be returned."""
        if self.normalize_distance:
            finite = np.isfinite(dist)
            low = np.where(finite, dist, np.inf).min(axis=1, keepdims=True)
            high = np.where(finite, dist, -np.inf).max(axis=1, keepdims=True)
            span = high - low
            with np.errstate(invalid="ignore", divide="ignore"):
                norm = np.where(span > 0, (dist - low) / np.where(span > 0, span, 1.0), 0.0)
            dist = np.where(finite, norm, np.inf)
        scores = popularity_reweight(dist, popularity, gamma)
        mask = self._exclude_mask(exclude, len(dist))
        if mask is not None:
            scores[mask] = np.inf
        return scores

    def _exclude_mask(self, exclude: Any, n_texts: int) -> np.ndarray | None:
        if exclude is None:
            return None
        if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
            if exclude.shape != (n_texts, self.n_items):
                raise ValueError(f"exclude must be ({n_texts}, {self.n_items}) bool; got {exclude.shape}")
            return exclude
        rows = list(exclude)
        if len(rows) != n_texts:
            raise ValueError(f"exclude has {len(rows)} rows for {n_texts} texts; give one list of items per text")
        mask = np.zeros((n_texts, self.n_items), dtype=bool)
        lengths = [len(np.asarray(r).ravel()) for r in rows]
        if sum(lengths):
            cols = np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in rows])
            if cols.min() < 0 or cols.max() >= self.n_items:
                raise ValueError(f"exclude holds an item index outside [0, {self.n_items})")
            mask[np.repeat(np.arange(n_texts), lengths), cols] = True
        return mask

    def rank(
        self,
        texts: Sequence[str],
        k: int,
        *,
        popularity: npt.ArrayLike | None = None,
        gamma: float = 0.0,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` catalog items per text, by L2 distance re-weighted with popularity.

        Parameters
        ----------
        texts : sequence of str
            Generated texts (one row each).
        k : int
            Items per text.
        popularity : array_like of float or None
            One value per item (e.g. training counts); None: plain distances.
        gamma : float
            BIGRec's popularity strength (>= 0; default 0: plain L2).
        exclude : numpy.ndarray, sequence of sequences of int, or None
            Items a text must not get: an ``(n_texts, n_items)`` bool mask, or one list of item
            indices per text (e.g. the user's history).

        Returns
        -------
        items : numpy.ndarray
            ``(n_texts, k)`` int64 item indices, best (smallest score) first; -1 where fewer
            items qualify (an empty text gets none). Ties go to the lowest item index.
        scores : numpy.ndarray
            ``(n_texts, k)`` float64 ``(1 + x) ** (-gamma) * distance``; +inf at padding.

        Raises
        ------
        ValueError
            When ``k`` is not positive, ``gamma`` is negative, or ``popularity`` / ``exclude``
            have the wrong shape.
        """
        if k < 1:
            raise ValueError(f"k must be positive; got {k!r}")
        scores = self._scores(self.distances(texts), popularity, gamma, exclude)
        order = np.argsort(scores, axis=1, kind="stable")[:, : int(k)]
        top = np.take_along_axis(scores, order, axis=1)
        width = int(k) - order.shape[1]
        items = np.where(np.isfinite(top), order, -1).astype(np.int64)
        if width > 0:  # k beyond the catalog
            items = np.pad(items, ((0, 0), (0, width)), constant_values=-1)
            top = np.pad(top, ((0, 0), (0, width)), constant_values=np.inf)
        return items, np.where(items >= 0, top, np.inf)

    def tune_gamma(
        self,
        texts: Sequence[str],
        targets: npt.ArrayLike,
        popularity: npt.ArrayLike,
        *,
        grid: Sequence[float] = DEFAULT_GAMMAS,
        k: int = 10,
        metric: Literal["ndcg", "hit"] = "ndcg",
        exclude: Any = None,
    ) -> tuple[float, pd.DataFrame]:
        """Choose ``gamma`` on validation texts with known targets (BIGRec's popularity step).

        The texts are embedded once; each ``gamma`` of ``grid`` re-ranks the same distances.

        Parameters
        ----------
        texts : sequence of str
            Generated validation texts.
        targets : array_like of int
            The item each text should ground to (one per text).
        popularity : array_like of float
            One value per item.
        grid : sequence of float
            Candidate ``gamma`` values (>= 0).
        k : int
            Cut-off of the metric (default 10).
        metric : {"ndcg", "hit"}
            NDCG@k (one relevant item: ``1 / log2(rank + 2)`` inside the top k) or hit rate@k.
        exclude : numpy.ndarray, sequence of sequences of int, or None
            As in :meth:`rank`; an excluded target counts as a miss.

        Returns
        -------
        gamma : float
            The best ``gamma``; ties go to the smallest.
        table : pandas.DataFrame
            One row per ``gamma`` (ascending): ``gamma``, ``metric``, ``value`` (mean over texts;
            empty texts count as misses), ``n`` (texts).

        Raises
        ------
        ValueError
            When ``grid`` is empty, ``metric`` unknown, or ``targets`` not one valid item per text.
        """
        if metric not in ("ndcg", "hit"):
            raise ValueError(f"metric must be 'ndcg' or 'hit'; got {metric!r}")
        gammas = sorted({float(g) for g in grid})
        if not gammas:
            raise ValueError("grid holds no gamma")
        texts = list(texts)
        target = np.asarray(targets, dtype=np.int64).ravel()
        if len(target) != len(texts):
            raise ValueError(f"{len(target)} targets for {len(texts)} texts; give one target per text")
        if len(target) and (target.min() < 0 or target.max() >= self.n_items):
            raise ValueError(f"targets must be item indices in [0, {self.n_items})")
        dist = self.distances(texts)
        rows = np.arange(len(texts))
        index = np.arange(self.n_items)
        values = []
        for gamma in gammas:
            scores = self._scores(dist, popularity, gamma, exclude)
            own = scores[rows, target][:, None]
            position = (scores < own).sum(axis=1) + ((scores == own) & (index < target[:, None])).sum(axis=1)
            hit = np.isfinite(own[:, 0]) & (position < k)
            gain = 1.0 / np.log2(position + 2.0) if metric == "ndcg" else np.ones(len(texts))
            values.append(float(np.where(hit, gain, 0.0).mean()) if len(texts) else np.nan)
        table = pd.DataFrame({"gamma": gammas, "metric": f"{metric}@{k}", "value": values, "n": len(texts)})
        best = int(np.argmax(np.nan_to_num(np.asarray(values), nan=-np.inf)))  # first maximum: smallest gamma
        return gammas[best], table


def _accepts(model: Any, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def interleave_rankings(
    grounder: HiddenStateGrounder,
    texts: Sequence[str],
    owner: Sequence[int],
    n_rows: int,
    k: int,
    popularity: npt.ArrayLike | None,
    gamma: float,
) -> list[list[tuple[int, float]]]:
    """Per row, the catalog ranked from its texts (one text: its ranking; several: their rankings
    interleaved rank by rank, CFT's variant of BIGRec grounding), as ``(item, -score)`` pairs.

    Parameters
    ----------
    grounder : HiddenStateGrounder
        The grounder that ranks the catalog for each text.
    texts : sequence of str
        Generated texts, in row order then beam order.
    owner : sequence of int
        The row each text belongs to.
    n_rows : int
        Number of rows (rows without a text get an empty ranking).
    k : int
        Items ranked per text.
    popularity : array_like or None
        Training popularity per item for the re-weighting; None: plain distances.
    gamma : float
        The popularity exponent.

    Returns
    -------
    list of list of (int, float)
        Per row, ``(item, -score)`` best first (an item may repeat across beams; the caller
        keeps its first occurrence).
    """
    ranked: list[list[tuple[int, float]]] = [[] for _ in range(n_rows)]
    if not len(texts):
        return ranked
    items, scores = grounder.rank(list(texts), k, popularity=popularity, gamma=gamma)
    owner_arr = np.asarray(owner)
    for i in np.unique(owner_arr):
        mine = np.flatnonzero(owner_arr == i)
        flat_items, flat_scores = items[mine].T.ravel(), -scores[mine].T.ravel()
        ranked[int(i)] = [(int(a), float(b)) for a, b in zip(flat_items, flat_scores) if a >= 0]
    return ranked
