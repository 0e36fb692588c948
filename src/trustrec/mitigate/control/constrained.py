"""User-initiated control: a recommender with the constraints in each query's text enforced.

:class:`ConstrainedRecommender` wraps any fitted model: ``mode="candidates"`` passes the
allowed items as the query's candidates (so a classic model ranks only them, an LLM ranker's
retriever retrieves only them and a generative LLM decodes only them; the text stays in the
query, so an LLM also reads the request verbatim); ``mode="post_filter"`` fetches the base's
top ``n_candidates`` and drops what violates (cheaper, may return fewer than k). In both
modes the final list is checked against the constraints again, so **a violating item is
never returned**; a query whose constraints no item satisfies gets an empty list and is
counted (:meth:`ConstrainedRecommender.recommend_with_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, PositiveInt

from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.errors import ConfigError
from trustrec.mitigate._wrap import WrapperRecommender
from trustrec.mitigate.control._common import _compact, _WrapperConfig
from trustrec.mitigate.control.catalog import (
    ControlCatalog,
)
from trustrec.mitigate.control.constraints import (
    ParsedConstraint,
    allowed_items,
    parse_constraint,
)
from trustrec.models import TopK, register_model

__all__ = ["ConstrainedConfig", "ConstrainedRecommender"]


class ConstrainedConfig(_WrapperConfig):
    """Settings of :class:`ConstrainedRecommender`.

    Parameters
    ----------
    base : ModelSpec
        The recommender to wrap (registered name + params; built and fitted by ``fit``, or
        taken as is by ``from_fitted``); default ``item_knn``.
    n_candidates : int
        With ``mode="post_filter"``: how many of the base's top items are filtered (positive;
        default 100).
    mode : {"candidates", "post_filter"}
        ``candidates``: the allowed items become the query's candidates; ``post_filter``: the
        base's top ``n_candidates`` minus violators (may return fewer than k).
    item_group_column : str or None
        The catalog's item-group column (None: guessed).
    year_column : str or None
        The catalog's year column (None: guessed from
        :data:`~trustrec.mitigate.control.YEAR_COLUMNS`).
    min_similarity : float
        The parser's least genre Jaccard similarity for "more like ...", in (0, 1] (default
        0.5).
    n_different_groups : int
        The parser's number of most frequent history groups avoided for "something
        different" (positive; default 1).
    """

    mode: Literal["candidates", "post_filter"] = "candidates"
    item_group_column: str | None = None
    year_column: str | None = None
    min_similarity: float = Field(0.5, gt=0, le=1)
    n_different_groups: PositiveInt = 1


@register_model
class ConstrainedRecommender(WrapperRecommender):
    """Any recommender, with the constraints stated in each query's text enforced (module
    docstring). Queries without text (or without a structured constraint) pass through.

    Parameters
    ----------
    config : ConstrainedConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`ConstrainedConfig` fields) as keyword arguments.
    """

    name = "constrained"
    config: ConstrainedConfig
    config_class = ConstrainedConfig
    capabilities = frozenset({"uses_history", "candidates", "text"})

    def _setup(self, train: Dataset) -> None:
        c = self.config
        catalog = ControlCatalog.from_items(
            train.items, n_items=train.n_items, group_column=c.item_group_column, year_column=c.year_column
        )
        m = sp.csr_matrix(catalog.membership)
        self.titles_ = list(catalog.titles)
        self.group_names_ = list(catalog.group_names)
        self.group_indptr_ = m.indptr.astype(np.int64)
        self.group_indices_ = m.indices.astype(np.int64)
        self.years_ = np.asarray(catalog.years, np.float64)
        self.columns_ = {"group": catalog.group_column, "year": catalog.year_column}

    def catalog(self) -> ControlCatalog:
        """The fitted catalog the constraints are checked against.

        Returns
        -------
        ControlCatalog
            Titles, groups and years of the training items.
        """
        self._check_fitted()
        n = len(self.titles_)
        m = sp.csr_matrix(
            (np.ones(len(self.group_indices_)), self.group_indices_, self.group_indptr_),
            shape=(n, len(self.group_names_)),
        )
        return ControlCatalog(
            tuple(self.titles_),
            m.toarray() > 0,
            tuple(self.group_names_),
            self.years_,
            self.columns_["group"],
            self.columns_["year"],
        )

    def parse(self, texts: Sequence[str | None], catalog: ControlCatalog | None = None) -> list[ParsedConstraint]:
        """:func:`parse_constraint` of each text with this wrapper's settings (each distinct text
        parsed once).

        Parameters
        ----------
        texts : sequence of str or None
            The requests' texts.
        catalog : ControlCatalog or None
            The catalog to parse against; None: the fitted one (:meth:`catalog`).

        Returns
        -------
        list of ParsedConstraint
            One per text.
        """
        catalog = catalog or self.catalog()
        c = self.config
        cache: dict[str | None, ParsedConstraint] = {}
        for t in texts:
            if t not in cache:
                cache[t] = parse_constraint(
                    t, catalog, min_similarity=c.min_similarity, n_different_groups=c.n_different_groups
                )
        return [cache[t] for t in texts]

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The lists of :meth:`recommend_with_report`, without the report.

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Length of the lists (at least 0).
        exclude_seen : bool
            Whether items in a query's history are left out.

        Returns
        -------
        TopK
            The lists; no item violates its query's constraints (padding -1).

        Raises
        ------
        ConfigError
            When ``k`` is negative.
        """
        return self.recommend_with_report(queries, k, exclude_seen=exclude_seen)[0]

    def recommend_with_report(
        self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True
    ) -> tuple[TopK, pd.DataFrame]:
        """:meth:`recommend` and one row per query: its text, the constraints understood
        (``constraints``, ``n_constraints``), what was not (``unparsed``), how many items satisfy
        them (``n_allowed``) and ``unsatisfiable`` (constraints present, no item satisfies them:
        the list is empty).

        Parameters
        ----------
        queries : QueryBatch
            The queries; each one's text states its constraints.
        k : int
            Length of the lists (at least 0).
        exclude_seen : bool
            Whether items in a query's history are left out.

        Returns
        -------
        tuple of (TopK, pandas.DataFrame)
            The lists (no item violates its query's constraints) and the report.

        Raises
        ------
        ConfigError
            When ``k`` is negative.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        catalog = self.catalog()
        texts = list(queries.texts) if queries.texts is not None else [None] * len(queries)
        parsed = self.parse(texts, catalog)
        allowed = allowed_items(parsed, catalog, queries.histories)
        if queries.candidates is not None:
            allowed &= queries.candidates.to_dense_mask(self.n_items_)
        if self.config.mode == "candidates":
            rows, cols = np.nonzero(allowed)
            asked = queries.with_candidates(Ragged.from_groups(rows, cols, len(queries)))
            top = self.base_.recommend(asked, k, exclude_seen=exclude_seen)
        else:
            top = self.base_.recommend(queries, max(k, self.config.n_candidates), exclude_seen=exclude_seen)
        rows = np.arange(len(queries))[:, None]
        keep = allowed[rows, np.where(top.items >= 0, top.items, 0)]  # the guarantee: never a violator
        out = _compact(top.items, top.scores, keep, min(k, self.n_items_))
        n_allowed = allowed.sum(1)
        n_con = np.array([len(p.constraints) for p in parsed], np.int64)
        report = pd.DataFrame(
            {
                "text": texts,
                "constraints": [p.describe() for p in parsed],
                "n_constraints": n_con,
                "unparsed": [" | ".join(p.unparsed) for p in parsed],
                "n_unparsed": np.array([len(p.unparsed) for p in parsed], np.int64),
                "n_allowed": n_allowed,
                "unsatisfiable": (n_con > 0) & (n_allowed == 0),
            }
        )
        return out, report
