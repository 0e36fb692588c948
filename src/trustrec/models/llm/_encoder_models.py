"""Recommenders that use a language model as an item encoder ("LLM as encoder").

Every catalog item is rendered as text and embedded once by a sentence encoder
(:func:`~trustrec.models.llm._text_items.item_text_embeddings`, cached). Because an item's vector
comes from its text, not from its interactions, both models score items that have no training
interactions (cold start) like any other:

- :class:`TextKNN` (``text_knn``): no training; a user's profile is the recency-weighted mean of
  the embeddings of their latest items, and every item is scored by cosine similarity to it.
- :class:`TextSASRec` (``sasrec_text``): SASRec whose item vectors are a learned projection of the
  frozen text embedding, plus (optionally) a learned ID embedding for items seen in training.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field, NonNegativeFloat, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models.classic._sasrec import SASRec, SASRecConfig, _make_net
from trustrec.models.llm._text_items import item_text_embeddings

__all__ = ["TextKNN", "TextKNNConfig", "TextSASRec", "TextSASRecConfig"]


class ItemTextConfig(Config):
    """How items become text: the encoder and what of each item it reads.

    Parameters
    ----------
    encoder : str
        Text encoder that embeds each item's text once (cached): a registered text-encoder name
        or a checkpoint folder (default ``"all-minilm-l6-v2"``).
    fields : tuple of str
        Item columns shown after the title in each item's text (default none: the title only).
    max_chars : int
        Character budget of one item's text (default 200).
    """

    encoder: str = "all-minilm-l6-v2"  # registered text-encoder name or checkpoint folder
    fields: tuple[str, ...] = ()  # item columns shown after the title
    max_chars: PositiveInt = 200  # character budget of one item's text


def _catalog_embeddings(model: TextKNN | TextSASRec, train: Dataset, options: FitOptions) -> np.ndarray:
    c = model.config
    return item_text_embeddings(train, c.encoder, fields=c.fields, max_chars=c.max_chars, progress=options.progress)


def _item_counts(train: Dataset) -> np.ndarray:
    return np.bincount(train.interactions.item, minlength=train.n_items)


class TextKNNConfig(ItemTextConfig):
    """Hyper-parameters of :class:`TextKNN`; ``encoder``, ``fields`` and ``max_chars`` are those
    of :class:`ItemTextConfig`.

    Parameters
    ----------
    recent : int
        Most recent history items that form the user's profile (default 20).
    decay : float
        Weight factor per step back, in ``(0, 1]``: the item ``k`` steps before the last weighs
        ``decay**k`` (default 0.9; 1: a plain mean).
    popularity_weight : float
        Weight of the popularity term added to every score, ``popularity_weight * log(1 + count)
        / log(1 + max count)`` with ``count`` the item's training interactions (default 0.0: none).
    """

    recent: PositiveInt = 20  # most recent history items that form the profile
    decay: float = Field(0.9, gt=0, le=1)  # weight of an item k steps before the last: decay**k
    popularity_weight: NonNegativeFloat = 0.0  # adds weight * log(1 + count) / log(1 + max count)


@register_model
class TextKNN(Recommender):
    """Content-based nearest neighbours in text-embedding space.

    ``score[u, i] = cos(e_i, sum_k decay**k * e_{h_k})`` over the ``recent`` latest history items
    ``h_0`` (most recent), ``h_1``, ... plus the optional popularity term. Users with no usable
    history get a NaN row (nothing to compare with), as in SASRec.

    Parameters
    ----------
    config : TextKNNConfig, mapping or None
        Hyper-parameters (see :class:`TextKNNConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "text_knn"
    config_class = TextKNNConfig
    config: TextKNNConfig
    capabilities = frozenset({"score", "uses_history", "text", "cold_start"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        embeddings = _catalog_embeddings(self, train, options)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.item_embeddings_ = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        log_counts = np.log1p(_item_counts(train)).astype(np.float32)
        self.popularity_ = log_counts / max(float(log_counts.max()), 1e-12)

    def with_item_text(self, items, *, injection_guard: str | None = None) -> TextKNN:
        """A fitted copy whose item vectors are re-encoded from ``items`` (same catalog, row ``i``
        = item index ``i``): what the deployed model scores after sellers edit their listings.
        It builds no prompt, so it has no injection guard."""
        import copy

        from trustrec.errors import ConfigError, DataError

        self._check_fitted()
        if injection_guard is not None:
            raise ConfigError(
                f"{type(self).__name__}.with_item_text: the model embeds item text and builds no "
                "prompt, so it has no injection guard"
            )
        clone = copy.copy(self)
        if items is not None:
            if len(items) != self.n_items_:
                raise DataError(
                    f"{type(self).__name__}.with_item_text: the items table has {len(items)} rows but "
                    f"the model knows {self.n_items_} items"
                )
            c = self.config
            embeddings = item_text_embeddings(items, c.encoder, fields=c.fields, max_chars=c.max_chars)
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            clone.item_embeddings_ = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        return clone

    def _profile_weights(self, queries: QueryBatch) -> sp.csr_matrix:
        """(n_queries, n_items) recency weights of each query's latest ``recent`` items."""
        recent = queries.histories.last(self.config.recent)
        lengths = recent.lengths
        position = np.arange(len(recent.values)) - np.repeat(recent.indptr[:-1], lengths)
        steps_back = np.repeat(lengths, lengths) - 1 - position
        weights = np.power(self.config.decay, steps_back, dtype=np.float64).astype(np.float32)
        return sp.csr_matrix((weights, recent.values, recent.indptr), shape=(len(recent), self.n_items_))

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        profiles = np.asarray(self._profile_weights(queries) @ self.item_embeddings_)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            profiles = profiles / norms  # no history: 0/0 -> NaN row
        scores = (profiles @ self.item_embeddings_.T).astype(np.float64)
        if self.config.popularity_weight:
            scores += self.config.popularity_weight * self.popularity_
        return scores


class TextSASRecConfig(SASRecConfig, ItemTextConfig):
    """Hyper-parameters of :class:`TextSASRec`: those of :class:`SASRecConfig` (network and
    training) and :class:`ItemTextConfig` (``encoder``, ``fields``, ``max_chars``), and:

    Parameters
    ----------
    id_embedding : bool
        Whether to add a learned ID embedding to the text-based vector of items seen in training
        (default True); False: item vectors come from text alone.
    id_dropout : float
        Probability, in ``[0, 1)``, that a warm item's ID vector is dropped at each training use,
        so the network also learns to rank from the text part alone (default 0.3).
    """

    id_embedding: bool = True  # add a learned ID embedding for items seen in training
    id_dropout: float = Field(0.3, ge=0, lt=1)  # chance a warm item's ID vector is dropped in training


def _text_item_embedding(text: np.ndarray, warm: np.ndarray, c: TextSASRecConfig):
    """An embedding-like module (see ``_make_net``) for item vectors built from text.

    Vector of model id ``j``: ``W t_j + b``, plus the learned ID vector when the item was seen in
    training (``warm``). During training, each ID vector is dropped with ``id_dropout``, so the
    network learns to rank from the text part alone, which is all a cold item has.
    """
    import torch
    from torch import nn

    class TextItemEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            padded = np.vstack([np.zeros((1, text.shape[1]), np.float32), text])  # model id 0 = padding
            self.register_buffer("text", torch.from_numpy(padded), persistent=False)
            self.register_buffer("warm", torch.from_numpy(np.concatenate([[False], warm])), persistent=False)
            self.project = nn.Linear(text.shape[1], c.embedding_size)
            self.ids = nn.Embedding(len(padded), c.embedding_size, padding_idx=0) if c.id_embedding else None

        def forward(self, ids):
            vectors = self.project(self.text[ids])
            if self.ids is None:
                return vectors
            keep = self.warm[ids]
            if self.training and c.id_dropout:
                keep = keep & (torch.rand(ids.shape, device=ids.device) >= c.id_dropout)
            return vectors + self.ids(ids) * keep.unsqueeze(-1)

        @property
        def weight(self):
            return self(torch.arange(len(self.text), device=self.text.device))

    return TextItemEmbedding()


@register_model
class TextSASRec(SASRec):
    """SASRec with text-based item vectors, tied between input and output.

    The text embeddings and the warm-item mask are fitted state (saved with the model), so a
    loaded model needs neither the encoder nor the cache.

    Parameters
    ----------
    config : TextSASRecConfig, mapping or None
        Hyper-parameters (see :class:`TextSASRecConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "sasrec_text"
    config_class = TextSASRecConfig
    config: TextSASRecConfig
    capabilities = frozenset({"score", "uses_history", "stochastic_training", "text", "cold_start", "unlearnable"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        # before SASRec seeds torch, so loading an encoder (or not, on a cache hit) cannot shift the seed
        self.item_text_embeddings_ = _catalog_embeddings(self, train, options)
        self.warm_items_ = _item_counts(train) > 0
        super()._fit(train, options)

    def _prepare_training(self, train: Dataset, rng) -> None:
        import torch

        super()._prepare_training(train, rng)
        self._train_cold = torch.from_numpy(~self.warm_items_)

    def _training_logits(self, hidden):
        # Items without training interactions are outside the training catalog. As never-chosen
        # negatives they would only teach the model to bury any text it has not seen chosen.
        return super()._training_logits(hidden).masked_fill(self._train_cold.to(hidden.device), float("-inf"))

    def _build_net(self, train: Dataset):
        return self._build_net_from_state({})

    def _build_net_from_state(self, values):
        item_emb = _text_item_embedding(self.item_text_embeddings_, self.warm_items_, self.config)
        return _make_net(self.n_items_, self.config, item_emb=item_emb)
