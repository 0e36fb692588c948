"""Labelled explanations for judging: every label comes from the catalog check.

A case is *misleading* when :func:`~trustrec.audit.explainability.check_explanations` finds a
cited item outside the user's history, an attribute neither the item nor the history has, or a
year no item here has. :func:`planted_cases` writes one explanation per user and kind from a
fixed template (:data:`PLANTED_KINDS`); :func:`checked_cases` labels any texts (an LLM
recommender's explanations, an agent's reasons) the same way. The judges that read them are in
:mod:`trustrec.audit.explainability.judges`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.audit.explainability.explanation_checks import (
    IGNORED_VALUES,
    CatalogFacts,
    check_explanations,
    core_title,
)
from trustrec.data import Ragged
from trustrec.errors import DataError

__all__ = ["PLANTED_KINDS", "JudgeCases", "checked_cases", "planted_cases"]

#: The planted explanation kinds: one faithful, three with one false fact each.
PLANTED_KINDS = ("faithful", "outside_citation", "wrong_attribute", "wrong_year")


# -- labelled cases --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class JudgeCases:
    """Explanations to judge, each labelled by the catalog check.

    Parameters
    ----------
    items : numpy.ndarray
        ``(n,)`` the recommended (explained) item of each case.
    histories : Ragged
        Each case's user history.
    texts : list of str
        The explanations.
    kinds : list of str
        How each text was made (a :data:`PLANTED_KINDS` value, or ``"given"``).
    users : numpy.ndarray
        ``(n,)`` the row of the user each case came from (several cases may share one).
    checks : DataFrame
        :func:`~trustrec.audit.explainability.check_explanations`'s rows, one per case in order.
    titles : list of str
        The catalog title of each case's recommended item.
    """

    items: np.ndarray
    histories: Ragged
    texts: list[str]
    kinds: list[str]
    users: np.ndarray
    checks: pd.DataFrame
    titles: list[str]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def misleading(self) -> np.ndarray:
        """``(n,)`` bool: the checker's label."""
        return self.checks["misleading"].to_numpy(bool)

    def to_frame(self) -> pd.DataFrame:
        """One row per case: ``user``, ``item``, ``kind``, ``text``, ``misleading``, ``reason``."""
        return pd.DataFrame(
            {
                "user": self.users,
                "item": self.items,
                "kind": self.kinds,
                "text": self.texts,
                "misleading": self.misleading,
                "reason": self.checks["reason"].to_numpy(object),
            }
        )


def _histories(histories: Ragged | Sequence[npt.ArrayLike], n: int, owner: str) -> Ragged:
    rows = histories if isinstance(histories, Ragged) else Ragged.from_rows([np.asarray(h) for h in histories])
    if len(rows) != n:
        raise DataError(f"{owner}: {n} items but {len(rows)} histories; give one history per item")
    return rows


def _item_indices(items: npt.ArrayLike, n_items: int, owner: str) -> np.ndarray:
    arr = np.asarray(items)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{owner}: items must be a 1-D array of item indices; got {arr.dtype} of shape {arr.shape}")
    bad = (arr < 0) | (arr >= n_items)
    if bad.any():
        raise DataError(
            f"{owner}: item index {int(arr[bad][0])} (case {int(np.flatnonzero(bad)[0])}) is outside the catalog "
            f"of {n_items} items"
        )
    return arr.astype(np.int64)


def checked_cases(
    texts: Sequence[str],
    items: npt.ArrayLike,
    histories: Ragged | Sequence[npt.ArrayLike],
    catalog_items: pd.DataFrame,
    **check: Any,
) -> JudgeCases:
    """Any explanations, labelled by the catalog check.

    Parameters
    ----------
    texts : sequence of str
        ``texts[i]`` explains ``items[i]`` to the user with ``histories[i]``.
    items : array_like of int
        The explained items.
    histories : Ragged or sequence of array_like
        The users' histories.
    catalog_items : DataFrame
        The dataset's items table.
    **check : object
        ``attribute_column``, ``year_column``, ``min_title_chars`` of
        :func:`~trustrec.audit.explainability.check_explanations`.

    Returns
    -------
    JudgeCases
        Kind ``"given"``; ``users`` numbers the cases.

    Raises
    ------
    DataError
        When the lengths differ, an item is outside the catalog or a text is not a string.
    """
    items = _item_indices(items, len(catalog_items), "checked_cases")
    rows = _histories(histories, len(items), "checked_cases")
    texts = list(texts)
    if len(texts) != len(items):
        raise DataError(f"checked_cases: {len(items)} items but {len(texts)} texts")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"checked_cases: text {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
    checks = check_explanations([[t] for t in texts], items, rows, catalog_items, **check)
    return JudgeCases(
        items, rows, texts, ["given"] * len(items), np.arange(len(items)), checks, _titles(catalog_items, items)
    )


def _titles(catalog_items: pd.DataFrame, items: np.ndarray) -> list[str]:
    if "title" not in catalog_items.columns:
        return [f"item {int(i)}" for i in items]
    return ["" if pd.isna(t) else str(t) for t in catalog_items["title"].to_numpy(object)[items]]


def _pick(rng: np.random.Generator, values: Sequence[Any] | np.ndarray) -> Any:
    return values[int(rng.integers(len(values)))] if len(values) else None


def planted_cases(
    histories: Ragged | Sequence[npt.ArrayLike],
    items: npt.ArrayLike,
    catalog_items: pd.DataFrame,
    *,
    kinds: Sequence[str] = PLANTED_KINDS,
    seed: int = 0,
    **check: Any,
) -> JudgeCases:
    """One templated explanation per user and kind, labelled by the catalog check.

    The template: "We recommend <item> because you enjoyed <cited>. It is a <attribute> title
    from <year>." (the attribute or year sentence part is left out when the catalog has none for
    the item). ``faithful`` cites a history item with the item's own attribute and year;
    ``outside_citation`` cites an item the user never interacted with; ``wrong_attribute``
    states a value neither the item nor the history has; ``wrong_year`` a year no item here has.
    A (user, kind) with no such fact to state (no searchable history title, every attribute
    covered, no known year) is left out. Draws are seeded.

    Parameters
    ----------
    histories : Ragged or sequence of array_like
        Each user's history.
    items : array_like of int
        Each user's recommended item (e.g. the held-out item).
    catalog_items : DataFrame
        The dataset's items table.
    kinds : sequence of str
        Which :data:`PLANTED_KINDS` to write (default all).
    seed : int
        Seed of the draws (default 0).
    **check : object
        ``attribute_column``, ``year_column``, ``min_title_chars`` of the check.

    Returns
    -------
    JudgeCases
        Cases ordered by user, then kind.

    Raises
    ------
    DataError
        When a kind is unknown, the lengths differ or an item is outside the catalog.
    """
    unknown = sorted(set(kinds) - set(PLANTED_KINDS))
    if unknown or not len(kinds):
        raise DataError(f"planted_cases: kinds must be among {PLANTED_KINDS}; got {list(kinds)}")
    items = _item_indices(items, len(catalog_items), "planted_cases")
    rows = _histories(histories, len(items), "planted_cases")
    facts = CatalogFacts(catalog_items, **check)
    searchable = np.zeros(facts.n_items, bool)
    for group in facts.title_items.values():
        searchable[group] = True
    cores = [core_title(t) for t in facts.titles]
    usable_attrs = [j for j, name in enumerate(facts.attr_names) if name.casefold() not in IGNORED_VALUES]
    rng = np.random.default_rng(seed)
    out_items, out_rows, out_texts, out_kinds, out_users = [], [], [], [], []
    for q in range(len(items)):
        item, history = int(items[q]), rows.row(q)
        in_history = np.zeros(facts.n_items, bool)
        in_history[history] = True
        cited_pool = np.flatnonzero(searchable & in_history)
        own_attrs = sorted(facts.attributes_of([item]) & set(usable_attrs))
        covered = facts.attributes_of(history.tolist()) | set(own_attrs)
        year = facts.years[item]
        support = {int(y) for y in facts.years_of([item, *history.tolist()])}
        for kind in kinds:
            cited, attr, said_year = _pick(rng, cited_pool), _pick(rng, own_attrs), year
            if kind == "outside_citation":
                outside = searchable & ~in_history
                outside[item] = False
                cited = _pick(rng, np.flatnonzero(outside))
            elif kind == "wrong_attribute":
                attr = _pick(rng, [j for j in usable_attrs if j not in covered])
                if attr is None:
                    continue
            elif kind == "wrong_year":
                said_year = _pick(rng, [y for y in range(1920, 2021) if y not in support])
                if not np.isfinite(year) or said_year is None:
                    continue
            if cited is None:
                continue
            detail = []
            if attr is not None:
                name = facts.attr_names[attr]
                detail.append(f"{'an' if name[:1].casefold() in 'aeiou' else 'a'} {name} title")
            if said_year is not None and np.isfinite(said_year):
                detail.append(f"from {int(said_year)}")
            text = f"We recommend {cores[item]} because you enjoyed {cores[int(cited)]}."
            if detail:
                text += " It is " + " ".join(detail) + "."
            out_items.append(item)
            out_rows.append(history)
            out_texts.append(text)
            out_kinds.append(kind)
            out_users.append(q)
    if not out_items:
        raise DataError("planted_cases: no case could be written (no history item has a searchable title)")
    planted = Ragged.from_rows(out_rows)
    checks = check_explanations([[t] for t in out_texts], np.asarray(out_items), planted, catalog_items, **check)
    chosen = np.asarray(out_items, np.int64)
    return JudgeCases(
        chosen, planted, out_texts, out_kinds, np.asarray(out_users), checks, _titles(catalog_items, chosen)
    )
