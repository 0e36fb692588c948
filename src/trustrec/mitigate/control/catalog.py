"""The catalog as constraints see it: item groups, years and titles (:class:`ControlCatalog`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from trustrec.data import readonly
from trustrec.errors import DataError

__all__ = ["YEAR_COLUMNS", "ControlCatalog"]


#: Item columns tried, in order, as the year column when none is named.
YEAR_COLUMNS = ("year", "release_year", "release_date", "date", "released", "publication_year", "pub_year")


# -- the catalog as constraints see it ---------------------------------------------------------------
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ARTICLES = ("the", "a", "an")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower().replace("\u2019", "'"))


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _title_variants(title: str) -> set[tuple[str, ...]]:
    """Token tuples a user may type for ``title``: as written, without a trailing "(1995)" or
    other parenthesised parts, with a trailing ", The" moved to the front, without the article."""
    base = re.sub(r"\s*\(\d{4}\)\s*$", "", title)
    forms = {title, base, re.sub(r"\([^)]*\)", " ", base)}
    out = set()
    for form in forms:
        toks = _tokens(form)
        if not toks:
            continue
        out.add(tuple(toks))
        if toks[-1] in _ARTICLES and len(toks) > 1:  # "Godfather, The"
            out.add((toks[-1], *toks[:-1]))
            out.add(tuple(toks[:-1]))
        if toks[0] in _ARTICLES and len(toks) > 1:
            out.add(tuple(toks[1:]))
    return out


def _years_of(values: pd.Series) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    text = values.astype("string").str.extract(r"(\d{4})", expand=False)
    from_text = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    years = np.where(np.isnan(numeric), from_text, numeric)
    return np.where((years >= 1000) & (years < 3000), np.floor(years), np.nan)


# Synonyms -> the key (see ``_key``) of the catalog group they mean; used only when the catalog has it.
_GROUP_ALIASES = {
    ("science", "fiction"): "scifi",
    ("scifi",): "scifi",
    ("sf",): "scifi",
    ("kids",): "childrens",
    ("kid's",): "childrens",
    ("children",): "childrens",
    ("childrens",): "childrens",
    ("animated",): "animation",
    ("cartoon",): "animation",
    ("cartoons",): "animation",
    ("romantic",): "romance",
    ("romcom",): "romance",
    ("noir",): "filmnoir",
    ("noirs",): "filmnoir",
    ("docs",): "documentary",
    ("documentaries",): "documentary",
}


def _plurals(phrase: tuple[str, ...]) -> set[tuple[str, ...]]:
    last = phrase[-1]
    forms = {last + "s", last + "es"}
    if last.endswith("y"):
        forms.add(last[:-1] + "ies")
    return {(*phrase[:-1], f) for f in forms}


@dataclass(frozen=True, eq=False)
class ControlCatalog:
    """What constraints read from the items table: titles, a 0/1 item-group membership
    (``membership[i, g]``), group names and a year per item (NaN when unknown).

    Parameters
    ----------
    titles : tuple of str
        The title of each item (row ``i`` = item index ``i``; empty when unknown).
    membership : numpy.ndarray
        (n_items, n_groups) boolean item-group membership (a flat array is reshaped to
        ``n_items`` rows).
    group_names : tuple of str
        The name of each group column of ``membership``.
    years : numpy.ndarray or None
        The year of each item, NaN when unknown; None: all unknown.
    group_column : str or None
        The items-table column the groups came from, if any.
    year_column : str or None
        The items-table column the years came from; None: the catalog has no years (a year
        constraint is then reported as not understood).

    Raises
    ------
    DataError
        When ``membership`` has another number of columns than ``group_names`` or ``years``
        another length than ``titles``.
    """

    titles: tuple[str, ...]
    membership: np.ndarray
    group_names: tuple[str, ...] = ()
    years: np.ndarray | None = None
    group_column: str | None = None
    year_column: str | None = None

    def __post_init__(self):
        n = len(self.titles)
        membership = np.asarray(self.membership, dtype=bool)
        membership = readonly(membership if membership.ndim == 2 else membership.reshape(n, -1))
        if membership.shape[1] != len(self.group_names):
            raise DataError(
                f"ControlCatalog: membership has {membership.shape[1]} group columns but "
                f"{len(self.group_names)} group names"
            )
        years = np.full(n, np.nan) if self.years is None else np.asarray(self.years, np.float64)
        if years.shape != (n,):
            raise DataError(f"ControlCatalog: {n} titles but {years.shape} years")
        object.__setattr__(self, "titles", tuple(str(t) for t in self.titles))
        object.__setattr__(self, "membership", membership)
        object.__setattr__(self, "group_names", tuple(str(g) for g in self.group_names))
        object.__setattr__(self, "years", readonly(years))

    @classmethod
    def from_items(
        cls,
        items: pd.DataFrame | None,
        *,
        n_items: int | None = None,
        group_column: str | None = None,
        year_column: str | None = None,
    ) -> ControlCatalog:
        """From a ``Dataset.items`` table (row ``i`` = item index ``i``). ``None`` columns are
        guessed (a group column as the fairness audits guess it, a year column from
        :data:`YEAR_COLUMNS`); a named column that does not exist raises ``DataError``. No
        items table gives a catalog of ``n_items`` untitled items with no groups or years.

        Parameters
        ----------
        items : pandas.DataFrame or None
            The items table (titles from its ``title`` column, when there is one).
        n_items : int or None
            The catalog size when there is no items table.
        group_column : str or None
            The item-group column; None: guessed.
        year_column : str or None
            The year column; None: the first of :data:`YEAR_COLUMNS` present (any case).

        Returns
        -------
        ControlCatalog
            The catalog.

        Raises
        ------
        DataError
            When a named column is not in the table, or there is neither a table nor
            ``n_items``.
        """
        from trustrec.data import guess_item_group_column, item_group_matrix

        if items is None:
            if n_items is None:
                raise DataError("ControlCatalog.from_items: no items table and no n_items")
            return cls(tuple("" for _ in range(n_items)), np.zeros((n_items, 0), bool))
        for label, col in (("group_column", group_column), ("year_column", year_column)):
            if col is not None and col not in items.columns:
                raise DataError(
                    f"ControlCatalog: {label} {col!r} is not an item column; the items have {list(items.columns)}"
                )
        group_column = group_column or guess_item_group_column(items)
        if year_column is None:
            lower = {c.lower(): c for c in items.columns}
            year_column = next((lower[c] for c in YEAR_COLUMNS if c in lower), None)
        titles = items["title"].astype("string").fillna("").tolist() if "title" in items.columns else [""] * len(items)
        if group_column is not None:
            m, names, _ = item_group_matrix(items, group_column)
            membership = np.asarray(m.todense()) > 0
        else:
            membership, names = np.zeros((len(items), 0), bool), []
        years = _years_of(items[year_column]) if year_column is not None else None
        return cls(tuple(titles), membership, tuple(names), years, group_column, year_column)

    @property
    def n_items(self) -> int:
        return len(self.titles)

    def group_index(self, name: str) -> int | None:
        """The column of group ``name`` (case- and punctuation-insensitive), or None.

        Parameters
        ----------
        name : str
            A group name.

        Returns
        -------
        int or None
            Its column in ``membership``; None when the catalog has no such group.
        """
        return self._group_keys.get(_key(name))

    @cached_property
    def _group_keys(self) -> dict[str, int]:
        return {_key(g): j for j, g in enumerate(self.group_names)}

    @cached_property
    def _lexicon(self) -> dict[tuple[str, ...], str]:
        """Token phrase -> group name: each name, its plural forms and the synonyms it has."""
        lex: dict[tuple[str, ...], str] = {}
        for g in self.group_names:
            phrase = tuple(_tokens(g))
            if phrase:
                lex.setdefault(phrase, g)
                for p in _plurals(phrase):
                    lex.setdefault(p, g)
            lex.setdefault((_key(g),), g)
        for phrase, key in _GROUP_ALIASES.items():
            j = self._group_keys.get(key)
            if j is not None:
                lex.setdefault(phrase, self.group_names[j])
        return lex

    @cached_property
    def _title_index(self) -> dict[tuple[str, ...], tuple[int, ...]]:
        index: dict[tuple[str, ...], list[int]] = {}
        for i, title in enumerate(self.titles):
            for variant in _title_variants(title):
                index.setdefault(variant, []).append(i)
        return {k: tuple(v) for k, v in index.items()}

    @cached_property
    def _longest_title(self) -> int:
        return max((len(k) for k in self._title_index), default=0)

    def items_titled(self, title: str) -> tuple[int, ...]:
        """Items whose title reads as ``title`` (see :func:`parse_constraint`).

        Parameters
        ----------
        title : str
            A title as a user may type it.

        Returns
        -------
        tuple of int
            The item indices with that title (several when titles are shared; empty: none).
        """
        return self._title_index.get(tuple(_tokens(title)), ())
