"""Checking generated explanations against the catalog.

Generated explanations (LLM recommenders, :func:`generate_explanations`)
    The LLM is asked, with a prompt template that is plain data (:data:`EXPLANATION_TEMPLATE`), to
    explain the recommended item from the user's history. :func:`check_explanations` checks each
    text against the catalog, never against another model's opinion:

    - *named items*: catalog titles found in the text (whole words; titles of two or more words
      case-insensitively, one-word titles as written in the catalog; a trailing ``(year)`` or
      ``, The`` is not needed; titles shorter than ``min_title_chars`` are not searched). A named
      item that is neither in the user's history nor the recommended item is a citation outside
      the history.
    - *attribute claims*: values of the item group column (genres) and years (``1995``) or decades
      (``1990s``, ``'90s``) the text mentions. A claim is *unsupported* when neither the recommended
      item nor any history item has it (a fact absent from the data), and an *item mismatch* when
      the recommended item does not have it (it may describe the history).
    - an explanation is *misleading* when it cites an item outside the history or makes an
      unsupported claim. Empty texts are counted apart, never as misleading.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import Ragged
from trustrec.errors import DataError

__all__ = ["ATTRIBUTE_SYNONYMS", "IGNORED_VALUES", "CatalogFacts", "check_explanations", "core_title"]


#: Other ways a text names an attribute value (casefolded), besides the value itself, its plural and
#: its spelling with a space or without the hyphen.
ATTRIBUTE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sci-fi": ("science fiction", "science-fiction", "scifi"),
    "film-noir": ("film noir", "noir"),
    "children's": ("children", "childrens", "children's film", "kids"),
}
#: Attribute values that are not claims (placeholders of a catalog).
IGNORED_VALUES = {"unknown", "other", "none", "misc", "(no genres listed)"}


# -- checking generated text against the catalog -----------------------------------------------------------
def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


_ARTICLE_SUFFIX = re.compile(r",\s*(the|a|an|les|la|le|il|el|die|der|das)$", re.IGNORECASE)
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def core_title(title: str) -> str:
    """A title as texts name it: normalised, without a trailing ``(year)`` or ``, The``.

    Parameters
    ----------
    title : str
        A catalog title.

    Returns
    -------
    str
        The core title.
    """
    t = _norm(title)
    t = _TITLE_YEAR.sub("", t)
    return _ARTICLE_SUFFIX.sub("", t).strip(" .\"'")


class CatalogFacts:
    """Title, attribute and year lookups over an items table: what :func:`check_explanations`
    checks text against, and what an explanation judge's tools look up.

    Parameters
    ----------
    items : DataFrame
        The dataset's items table.
    attribute_column : str or None
        Item column of attribute values; None: the guessed item group column.
    year_column : str or None
        Item column of years; None: a column with "year" in its name, else years in titles.
    min_title_chars : int
        Titles shorter than this are not searched for in texts.
    """

    def __init__(
        self,
        items: pd.DataFrame,
        *,
        attribute_column: str | None = None,
        year_column: str | None = None,
        min_title_chars: int = 4,
    ):
        from trustrec.data import guess_item_group_column, item_group_matrix

        self.n_items = len(items)
        titles = items["title"] if "title" in items.columns else pd.Series([""] * len(items))
        self.titles = [("" if pd.isna(t) else str(t)) for t in titles]
        by_key: dict[tuple[str, bool], list[int]] = {}
        for i, t in enumerate(self.titles):
            core = core_title(t)
            if len(core) < min_title_chars or not any(ch.isalpha() for ch in core):
                continue
            folded = " " in core
            by_key.setdefault((core.casefold() if folded else core, folded), []).append(i)
        self.title_items = by_key
        self._patterns = []
        for folded in (True, False):
            keys = sorted((k for k, f in by_key if f == folded), key=len, reverse=True)
            if keys:
                alt = "|".join(re.escape(k) for k in keys)
                self._patterns.append((folded, re.compile(rf"(?<!\w)(?:{alt})(?!\w)", re.IGNORECASE if folded else 0)))
        # attribute values (genres): membership and the words that name each value
        column = attribute_column or guess_item_group_column(items)
        if attribute_column is not None and attribute_column not in items.columns:
            raise DataError(
                f"check_explanations: attribute column {attribute_column!r} is not an item column; "
                f"the items have {list(items.columns)}"
            )
        self.attribute_column = column
        self.attr_names: list[str] = []
        self.attr_matrix = None
        self._attr_pattern: re.Pattern[str] | None = None
        self._attr_words: dict[str, int] = {}
        if column is not None:
            matrix, names, _ = item_group_matrix(items, column)
            self.attr_matrix, self.attr_names = matrix.tocsr(), names
            for j, name in enumerate(names):
                if name.casefold() in IGNORED_VALUES:
                    continue
                for form in _forms(name):
                    self._attr_words.setdefault(form, j)
            if self._attr_words:
                alt = "|".join(re.escape(w) for w in sorted(self._attr_words, key=len, reverse=True))
                self._attr_pattern = re.compile(rf"(?<!\w)(?:{alt})(?!\w)", re.IGNORECASE)
        # years
        if year_column is not None and year_column not in items.columns:
            raise DataError(
                f"check_explanations: year column {year_column!r} is not an item column; "
                f"the items have {list(items.columns)}"
            )
        year_column = year_column or next((c for c in items.columns if "year" in str(c).lower()), None)
        if year_column is not None:
            years = pd.to_numeric(items[year_column], errors="coerce").to_numpy(np.float64)
        else:
            years = np.array(
                [float(m.group(1)) if (m := _TITLE_YEAR.search(_norm(t))) else np.nan for t in self.titles]
            )
        self.year_column = year_column or ("title" if np.isfinite(years).any() else None)
        self.years = years

    def named_items(self, text: str) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """Catalog items each title mention in ``_norm(text)`` names (a list of items per mention),
        and the mentions' character spans."""
        text = _norm(text)
        spans: list[tuple[int, int]] = []
        found = []
        for folded, pattern in self._patterns:
            for match in pattern.finditer(text):
                a, b = match.span()
                if any(a < y and x < b for x, y in spans):
                    continue
                spans.append((a, b))
                key = match.group(0).casefold() if folded else match.group(0)
                found.append(self.title_items[(key, folded)])
        return found, spans

    def attributes_of(self, items: Collection[int] | np.ndarray) -> set[int]:
        """Indices (into ``attr_names``) of the attribute values any of ``items`` has."""
        if self.attr_matrix is None or not len(items):
            return set()
        return set(np.unique(self.attr_matrix[np.asarray(list(items), np.int64)].indices).tolist())

    def claimed_attributes(self, text: str, skip: Sequence[tuple[int, int]] = ()) -> set[int]:
        """Attribute values named in ``_norm(text)`` outside the character spans ``skip`` (titles)."""
        if self._attr_pattern is None:
            return set()
        return {
            self._attr_words[m.group(0).casefold()]
            for m in self._attr_pattern.finditer(_norm(text))
            if not _inside(m.span(), skip)
        }

    def years_of(self, items: Collection[int] | np.ndarray) -> np.ndarray:
        """The known years of ``items`` (unknown ones left out)."""
        y = self.years[np.asarray(list(items), np.int64)] if len(items) else np.empty(0)
        return y[np.isfinite(y)]


def _forms(name: str) -> set[str]:
    base = name.casefold()
    forms = {base, base.replace("-", " "), base.replace("-", "")}
    for f in list(forms):  # noqa: PERF101 (forms grows inside the loop)
        forms.add(f[:-1] + "ies" if f.endswith("y") else f + "s")
        if f.endswith("'s"):
            forms.add(f[:-2])
    forms.update(ATTRIBUTE_SYNONYMS.get(base, ()))
    return {f for f in forms if f.strip()}


_YEAR = re.compile(r"(?<![\d'])(1[89]\d{2}|20\d{2})(?![\d])(?!s)")
_DECADE = re.compile(r"(?<![\d])(1[89]\d0|20\d0)s(?!\w)|(?<![\w\d])'?([2-9]0)s(?!\w)")


def _inside(span: tuple[int, int], spans) -> bool:
    return any(span[0] < b and a < span[1] for a, b in spans)


def _claimed_years(text: str, skip=()) -> tuple[list[int], list[int]]:
    """Years and decades named in ``_norm(text)`` outside the character spans ``skip``."""
    text = _norm(text)
    years = [int(m.group(1)) for m in _YEAR.finditer(text) if not _inside(m.span(), skip)]
    decades = [
        int(m.group(1)) if m.group(1) else 1900 + int(m.group(2))
        for m in _DECADE.finditer(text)
        if not _inside(m.span(), skip)
    ]
    return years, decades


def check_explanations(
    texts: Sequence[Sequence[str]],
    items: npt.ArrayLike,
    histories: Ragged | Sequence[npt.ArrayLike],
    catalog_items: pd.DataFrame,
    *,
    attribute_column: str | None = None,
    year_column: str | None = None,
    min_title_chars: int = 4,
    cited: np.ndarray | Sequence[Sequence[npt.ArrayLike]] | None = None,
) -> pd.DataFrame:
    """Check generated explanations against the catalog (module docstring).

    ``texts[q][j]`` explains item ``items[q, j]`` ((n, m) indices, -1 = none, skipped) for a user
    with history ``histories[q]`` (a ``Ragged`` or a list of item arrays); ``catalog_items`` is the
    dataset's items table (``title`` and the attribute/year columns; ``None`` columns are guessed:
    the item group column, a column with "year" in its name, else years in titles). ``cited``
    ((n, m, c) item indices, -1 = none), e.g. an attribution's cited items, adds
    ``n_named_in_cited`` (history items the text names that the attribution also cites).

    One row per explanation: ``row``, ``slot``, ``item``, ``text``, ``empty_text``, ``named_items``
    (";"-joined indices), ``n_named_history``, ``n_named_outside`` and ``named_outside`` (titles),
    ``claimed_attributes``, ``unsupported_attributes``, ``item_mismatch_attributes`` (";"-joined
    values), ``claimed_years``, ``unsupported_years``, ``n_named_in_cited``, ``misleading`` and
    ``reason``.

    Parameters
    ----------
    texts : sequence of sequence of str
        ``texts[q][j]`` explains item ``items[q, j]``.
    items : array_like of int
        (n,) or (n, m) explained item indices; -1 = none, skipped.
    histories : Ragged or sequence of array_like
        Each user's history.
    catalog_items : DataFrame
        The dataset's items table (``title`` and the attribute/year columns).
    attribute_column : str or None
        Item column of attribute values (genres); None: the guessed item group column.
    year_column : str or None
        Item column of years; None: a column with "year" in its name, else years in titles.
    min_title_chars : int
        Titles shorter than this are not searched for in the texts.
    cited : array_like of int or None
        (n, m, c) cited item indices (-1 = none), e.g. an attribution's cited items; given, adds
        ``n_named_in_cited``.

    Returns
    -------
    DataFrame
        One row per explanation, with the columns above.

    Raises
    ------
    DataError
        If ``attribute_column`` or ``year_column`` is not an item column.
    """
    items = np.asarray(items)
    items = items[:, None] if items.ndim == 1 else items
    if len(texts) != len(items) or len(histories) != len(items):
        raise ValueError(
            f"check_explanations: {len(items)} rows of items but {len(texts)} rows of texts and "
            f"{len(histories)} histories"
        )
    facts = CatalogFacts(
        catalog_items, attribute_column=attribute_column, year_column=year_column, min_title_chars=min_title_chars
    )
    rows_out = []
    for q in range(len(items)):
        history = histories.row(q) if isinstance(histories, Ragged) else np.asarray(histories[q])
        hist_set = {int(i) for i in history}
        hist_attrs = facts.attributes_of(hist_set)
        hist_years = facts.years_of(sorted(hist_set))
        for j in range(items.shape[1]):
            item = int(items[q, j])
            if item < 0:
                continue
            text = texts[q][j] or ""
            empty = not text.strip()
            mentions, spans = facts.named_items(text)
            named = sorted({i for group in mentions for i in group})
            in_history = [g for g in mentions if hist_set.intersection(g)]
            outside = [g for g in mentions if not hist_set.intersection(g) and item not in g]
            item_attrs = facts.attributes_of([item])
            claimed = facts.claimed_attributes(text, spans)  # words inside a named title are not claims
            unsupported = sorted(claimed - item_attrs - hist_attrs)
            mismatch = sorted(claimed - item_attrs)
            years, decades = _claimed_years(text, spans)
            support = np.concatenate([facts.years_of([item]), hist_years])
            bad_years = (
                []
                if not len(support)
                else (
                    [y for y in years if y not in set(support.astype(int).tolist())]
                    + [f"{d}s" for d in decades if not ((support >= d) & (support < d + 10)).any()]
                )
            )
            n_in_cited = np.nan
            if cited is not None:
                c = {int(x) for x in np.asarray(cited[q][j]).ravel() if x >= 0}
                n_in_cited = sum(1 for g in in_history if c.intersection(g))
            reasons = []
            if outside:
                reasons.append("names items outside the history: " + "; ".join(facts.titles[g[0]] for g in outside))
            if unsupported:
                reasons.append(
                    "claims attributes no item here has: " + "; ".join(facts.attr_names[a] for a in unsupported)
                )
            if bad_years:
                reasons.append("claims years no item here has: " + "; ".join(map(str, bad_years)))
            rows_out.append(
                {
                    "row": q,
                    "slot": j,
                    "item": item,
                    "text": text,
                    "empty_text": empty,
                    "named_items": ";".join(map(str, named)),
                    "n_named_history": len(in_history),
                    "n_named_outside": len(outside),
                    "named_outside": "; ".join(facts.titles[g[0]] for g in outside),
                    "claimed_attributes": ";".join(facts.attr_names[a] for a in sorted(claimed)),
                    "unsupported_attributes": ";".join(facts.attr_names[a] for a in unsupported),
                    "item_mismatch_attributes": ";".join(facts.attr_names[a] for a in mismatch),
                    "claimed_years": ";".join([*map(str, years), *(f"{d}s" for d in decades)]),
                    "unsupported_years": ";".join(map(str, bad_years)),
                    "n_named_in_cited": n_in_cited,
                    "misleading": bool(not empty and (outside or unsupported or bad_years)),
                    "reason": "; ".join(reasons),
                }
            )
    columns = [
        "row",
        "slot",
        "item",
        "text",
        "empty_text",
        "named_items",
        "n_named_history",
        "n_named_outside",
        "named_outside",
        "claimed_attributes",
        "unsupported_attributes",
        "item_mismatch_attributes",
        "claimed_years",
        "unsupported_years",
        "n_named_in_cited",
        "misleading",
        "reason",
    ]
    return pd.DataFrame(rows_out, columns=columns)
