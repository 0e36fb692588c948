"""User constraints stated in natural language, parsed against the catalog.

User-initiated control
    A query's free text (``Query.text``: "no horror", "only films before 1980", "more like Toy
    Story", "something different") is parsed by :func:`parse_constraint` into structured
    constraints over the catalog's own columns (plain frozen data):

    - :class:`ExcludeGroups` / :class:`IncludeGroups`: an item group column (genre, category,
      provider; guessed as :func:`trustrec.data._groups.guess_item_group_column` does). Include
      means "in at least one of the groups", exclude "in none of them".
    - :class:`YearRange`: a year column (``year``, ``release_year``, ``release_date`` ...; the
      first four-digit year of a text value, e.g. ``01-Jan-1995``), bounds inclusive.
    - :class:`SimilarTo`: the Jaccard similarity of an item's groups to a catalog item's
      (named by its title) is at least ``min_similarity`` (0.5 by default); the named item itself
      is excluded.
    - :class:`Different`: none of the item's groups is among the ``n_groups`` groups most
      frequent in the user's history (a user with no grouped history item can get any grouped
      item).

    **A constraint holds only when the catalog shows it does**: an item with no group value, or
    no year, satisfies no group, year, similarity or difference constraint (its genre may well be
    horror). A group name the catalog does not have matches no item (an exclusion of it is
    vacuous, an inclusion unsatisfiable). All constraints of a query must hold.

    The parser is small and rule-based (no model): the text is lower-cased; ``more like``,
    ``similar to``, ``something like``, ``films like``, ``movies like``, ``in the style of`` +
    the longest run of words that is a catalog title (ignoring case, punctuation, a trailing year
    in parentheses, other parenthesised parts and a leading or trailing article) give
    :class:`SimilarTo`; ``something/anything different/new/else/unusual``, ``surprise me``,
    ``out of my comfort zone``, ``not the usual`` give :class:`Different`; year phrases give
    :class:`YearRange` (``between Y1 and Y2``, ``from Y1 to Y2``, ``Y1-Y2``, ``the 1980s`` /
    ``80s``, ``before/earlier than/older than/prior to Y`` (up to Y-1), ``until/up to/through
    Y`` and ``Y or earlier`` (up to Y), ``after/later than/newer than Y`` (from Y+1),
    ``since Y``, ``from Y on``, ``Y or later``, ``not before Y`` (from Y), ``in Y``, ``from
    Y`` and ``Y films`` (exactly Y)). The rest is split into clauses at ``, ; . ! ?`` and
    ``but``; in a clause, a group name (case- and punctuation-insensitive, plural forms and a few
    synonyms such as ``sci-fi``/``science fiction``, ``kids``/``children's``, ``animated``) after
    a negation (``no, not, without, except, excluding, avoid, never, skip, hate, dislike, don't``)
    is excluded, and the other group names of the clause are included (any of them). Words left
    over that are not fillers ("only", "films", "please" ...) are **reported** in
    :attr:`ParsedConstraint.unparsed`, never silently dropped; vague words ("old", "recent",
    "classic") are named as such. A year phrase when the catalog has no year column, or a title
    that matches no catalog item, is reported the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from trustrec.data import Ragged
from trustrec.mitigate.control.catalog import (
    _TOKEN,
    ControlCatalog,
    _tokens,
)

__all__ = [
    "Constraint",
    "Different",
    "ExcludeGroups",
    "IncludeGroups",
    "ParsedConstraint",
    "SimilarTo",
    "YearRange",
    "allowed_items",
    "parse_constraint",
]


# -- constraints ---------------------------------------------------------------------------------------
class Constraint:
    """A structured constraint. ``mask(catalog, histories)`` gives the allowed items: shape
    ``(n_items,)`` when it does not depend on the user, else ``(len(histories), n_items)``.
    ``describe()`` states it in words; ``to_dict()`` gives its ``kind`` and fields."""

    kind: ClassVar[str] = ""

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        """The items allowed by this constraint.

        Parameters
        ----------
        catalog : ControlCatalog
            The catalog it is checked against.
        histories : Ragged
            The users' histories (used by user-dependent constraints).

        Returns
        -------
        numpy.ndarray
            Boolean, ``(n_items,)`` or ``(len(histories), n_items)``.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """The constraint in words, for reports.

        Returns
        -------
        str
            A short phrase (e.g. ``"not horror"``).
        """
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The constraint as plain data.

        Returns
        -------
        dict of str to object
            ``kind`` and the constraint's fields.
        """
        from dataclasses import asdict

        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]  # every concrete Constraint is a dataclass


def _group_columns(catalog: ControlCatalog, groups: Sequence[str]) -> list[int]:
    return [j for j in (catalog.group_index(g) for g in groups) if j is not None]


@dataclass(frozen=True)
class ExcludeGroups(Constraint):
    """Items in none of ``groups`` (and with a known group).

    Parameters
    ----------
    groups : tuple of str
        The excluded group names (a name the catalog does not have excludes nothing).
    """

    groups: tuple[str, ...]
    kind: ClassVar[str] = "exclude_groups"

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        m = catalog.membership
        cols = _group_columns(catalog, self.groups)
        return np.asarray(m.any(1) & ~m[:, cols].any(1))  # an array: numpy's stubs also allow a scalar

    def describe(self) -> str:
        return "not " + " or ".join(self.groups)


@dataclass(frozen=True)
class IncludeGroups(Constraint):
    """Items in at least one of ``groups``.

    Parameters
    ----------
    groups : tuple of str
        The group names, any of which will do (a name the catalog does not have matches no
        item).
    """

    groups: tuple[str, ...]
    kind: ClassVar[str] = "include_groups"

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        return np.asarray(catalog.membership[:, _group_columns(catalog, self.groups)].any(1))

    def describe(self) -> str:
        return "only " + " or ".join(self.groups)


@dataclass(frozen=True)
class YearRange(Constraint):
    """Items whose year is in ``[low, high]`` (either bound may be None).

    Parameters
    ----------
    low : int or None
        The first year allowed (inclusive); None: no lower bound.
    high : int or None
        The last year allowed (inclusive); None: no upper bound.
    """

    low: int | None = None
    high: int | None = None
    kind: ClassVar[str] = "year_range"

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        y = catalog.years
        assert y is not None, "ControlCatalog fills years (NaN where unknown)"
        ok = ~np.isnan(y)
        with np.errstate(invalid="ignore"):
            if self.low is not None:
                ok &= y >= self.low
            if self.high is not None:
                ok &= y <= self.high
        return ok

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"year {self.low}" if self.low == self.high else f"year {self.low}-{self.high}"
        return f"year >= {self.low}" if self.low is not None else f"year <= {self.high}"


@dataclass(frozen=True)
class SimilarTo(Constraint):
    """Items (other than ``items``) whose groups have Jaccard similarity >= ``min_similarity``
    with the groups of any of ``items`` (several when a title is shared).

    Parameters
    ----------
    items : tuple of int
        The item indices of the named item (several when a title is shared); they are
        themselves excluded.
    title : str
        The title as matched, for :meth:`describe`.
    min_similarity : float
        The least Jaccard similarity of group sets that counts as similar.
    """

    items: tuple[int, ...]
    title: str = ""
    min_similarity: float = 0.5
    kind: ClassVar[str] = "similar_to"

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        m = catalog.membership.astype(np.float64)
        anchors = np.asarray([i for i in self.items if 0 <= i < catalog.n_items], dtype=np.int64)
        if not len(anchors) or not m.shape[1]:
            return np.zeros(catalog.n_items, bool)
        a = m[anchors]  # (n_anchors, n_groups)
        inter = m @ a.T
        union = m.sum(1, keepdims=True) + a.sum(1)[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        ok = (jac >= self.min_similarity - 1e-12).any(1) & (m.sum(1) > 0)
        ok[anchors] = False
        return ok

    def describe(self) -> str:
        return f"like {self.title or list(self.items)} (genre Jaccard >= {self.min_similarity:g})"


@dataclass(frozen=True)
class Different(Constraint):
    """Items in none of the ``n_groups`` groups most frequent in the user's history (ties: the
    group listed first); any grouped item when the history has no grouped item.

    Parameters
    ----------
    n_groups : int
        How many of the history's most frequent groups are avoided.
    """

    n_groups: int = 1
    kind: ClassVar[str] = "different"

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        m = catalog.membership
        n, g = len(histories), m.shape[1]
        if not g:
            return np.zeros((n, catalog.n_items), bool)
        h = sp.csr_matrix(
            (np.ones(len(histories.values)), (histories.row_ids(), histories.values)), shape=(n, catalog.n_items)
        )
        counts = np.asarray((h @ sp.csr_matrix(m, dtype=np.float64)).todense())  # (n, g)
        order = np.argsort(-counts, axis=1, kind="stable")[:, : self.n_groups]
        top = np.zeros((n, g), bool)
        np.put_along_axis(top, order, True, axis=1)
        top &= counts > 0
        clash = (top.astype(np.float64) @ m.T.astype(np.float64)) > 0  # (n, n_items)
        return np.asarray(m.any(1))[None, :] & ~clash

    def describe(self) -> str:
        return f"none of the user's {self.n_groups} most frequent group(s)"


@dataclass(frozen=True)
class ParsedConstraint:
    """The outcome of :func:`parse_constraint`: the structured ``constraints`` (all must hold)
    and a message for each part of the text that was not understood. ``structured``: whether
    any constraint was understood; ``complete``: whether all of the text was.

    Parameters
    ----------
    text : str
        The request's text as given.
    constraints : tuple of Constraint
        The constraints understood (all must hold).
    unparsed : tuple of str
        A message per part of the text that was not understood.
    """

    text: str
    constraints: tuple[Constraint, ...] = ()
    unparsed: tuple[str, ...] = ()

    @property
    def structured(self) -> bool:
        return bool(self.constraints)

    @property
    def complete(self) -> bool:
        return not self.unparsed

    def describe(self) -> str:
        """The constraints understood, in words.

        Returns
        -------
        str
            Each constraint's :meth:`Constraint.describe`, joined by ``"; "``, or
            ``"(no constraint)"``.
        """
        return "; ".join(c.describe() for c in self.constraints) or "(no constraint)"


# -- the parser ------------------------------------------------------------------------------------------
_NEGATIONS = frozenset(
    {
        "no",
        "not",
        "without",
        "except",
        "excluding",
        "exclude",
        "avoid",
        "never",
        "skip",
        "hate",
        "dislike",
        "don't",
        "dont",
        "nothing",
        "none",
        "nor",
        "neither",
        "minus",
    }
)
_FILLERS = frozenset(
    """a an the only just some more please pls i i'm im me my we us our you your want
wanna would like love prefer need see watch watching to give show find recommend recommendations films
film movies movie items item titles title stuff things ones one something anything of with and or any in
from released made that are is be it also maybe really very for tonight today now rather let's lets do
can could should get kind kinds type types genre genres thanks thank hey so than too much other else
instead all what which mood feel feeling into on at by about s lot lots bit little fan fans enjoy enjoyed
fine ok okay into""".split()  # noqa: SIM905  # a word list reads best as text
)
_VAGUE = frozenset(
    """old older oldie oldies recent new newer newest classic classics modern latest good
best popular cheap short long famous great underrated""".split()  # noqa: SIM905  # a word list reads best as text
)
_SIMILAR = re.compile(r"\b(?:more like|similar to|something like|films? like|movies? like|in the style of)\s+")
_DIFFERENT = re.compile(
    r"\b(?:(?:something|anything) (?:different|new|else|unusual)|surprise me|out of my comfort "
    r"zone|not the usual|something completely different)\b"
)
_CLAUSES = re.compile(r"[;,.!?]|\bbut\b|\bhowever\b|\balthough\b")
_Y = r"(\d{4})"
_YEAR_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(p), how)
    for p, how in (
        (rf"\bbetween (?:the years? )?{_Y} and {_Y}\b", "range"),
        (rf"\bfrom {_Y} (?:to|until|till|through) {_Y}\b", "range"),
        (rf"\b{_Y} ?(?:-|\u2013|to) ?{_Y}\b", "range"),
        (r"\b(?:the )?(\d{3})0'?s\b", "decade4"),
        (r"(?:(?<=\s)|^)(?:the )?'?(\d)0'?s\b", "decade2"),
        (rf"\b(?:not before|no earlier than)(?: the year)? {_Y}\b", "low"),
        (rf"\b(?:not after|no later than)(?: the year)? {_Y}\b", "high"),
        (rf"\b{_Y} or (?:earlier|before|older)\b", "high"),
        (rf"\b{_Y} or (?:later|after|newer)\b", "low"),
        (rf"\b(?:from|starting(?: in| from)?) {_Y} (?:on(?:wards?)?|onwards?|and later)\b", "low"),
        (rf"\b(?:before|earlier than|older than|prior to|pre)[ -]?(?:the year )?{_Y}\b", "before"),
        (rf"\b(?:until|till|up to|through)(?: the year)? {_Y}\b", "high"),
        (rf"\b(?:after|later than|newer than|post)[ -]?(?:the year )?{_Y}\b", "after"),
        (rf"\bsince(?: the year)? {_Y}\b", "low"),
        (rf"\b(?:in|from|released in|of)(?: the year)? {_Y}\b", "exact"),
        (rf"\b{_Y} (?:films?|movies?)\b", "exact"),
    )
)


def _year_constraint(how: str, groups: tuple[str, ...]) -> YearRange:
    v = [int(g) for g in groups]
    if how == "range":
        return YearRange(min(v), max(v))
    if how == "decade4":
        return YearRange(v[0] * 10, v[0] * 10 + 9)
    if how == "decade2":
        start = (2000 if v[0] <= 1 else 1900) + v[0] * 10
        return YearRange(start, start + 9)
    return {
        "low": YearRange(v[0], None),
        "high": YearRange(None, v[0]),
        "before": YearRange(None, v[0] - 1),
        "after": YearRange(v[0] + 1, None),
        "exact": YearRange(v[0], v[0]),
    }[how]


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " ; " + text[end:]


def parse_constraint(
    text: str | None, catalog: ControlCatalog, *, min_similarity: float = 0.5, n_different_groups: int = 1
) -> ParsedConstraint:
    """Structured constraints from a request's free text, over ``catalog`` (module docstring:
    the rules, and what counts as not understood). Never raises on any text.

    Parameters
    ----------
    text : str or None
        The request's free text; None or blank: no constraint.
    catalog : ControlCatalog
        The catalog the constraints are stated over (group names, titles, years).
    min_similarity : float
        The ``min_similarity`` of a :class:`SimilarTo` ("more like ...").
    n_different_groups : int
        The ``n_groups`` of a :class:`Different` ("something different").

    Returns
    -------
    ParsedConstraint
        The constraints understood and what was not.
    """
    if text is None or not str(text).strip():
        return ParsedConstraint("" if text is None else str(text))
    original = str(text)
    work = " " + original.lower().replace("\u2019", "'") + " "
    constraints: list[Constraint] = []
    unparsed: list[str] = []

    # "more like <title>": the longest run of words that is a catalog title
    while (m := _SIMILAR.search(work)) is not None:
        rest = work[m.end() :]
        spans = [(t.start(), t.end(), t.group()) for t in _TOKEN.finditer(rest)]
        words = [s[2] for s in spans]
        found = None
        for n in range(min(len(words), catalog._longest_title), 0, -1):
            items = catalog._title_index.get(tuple(words[:n]))
            if items:
                found = (n, items)
                break
        if found is None:
            clause = _CLAUSES.split(rest, maxsplit=1)[0].strip()
            unparsed.append(
                f"{(m.group().strip() + ' ' + clause).strip()!r}: no catalog title matches {clause!r}"
                if clause
                else f"{m.group().strip()!r}: no title given"
            )
            work = _blank(work, m.start(), m.end() + len(_CLAUSES.split(rest, maxsplit=1)[0]))
            continue
        n, items = found
        title = catalog.titles[items[0]]
        constraints.append(SimilarTo(tuple(int(i) for i in items), title, min_similarity))
        work = _blank(work, m.start(), m.end() + spans[n - 1][1])

    while (m := _DIFFERENT.search(work)) is not None:
        constraints.append(Different(n_different_groups))
        work = _blank(work, m.start(), m.end())

    for pattern, how in _YEAR_RULES:
        while (m := pattern.search(work)) is not None:
            if catalog.year_column is None:
                unparsed.append(f"{m.group().strip()!r}: the catalog has no year column")
            else:
                constraints.append(_year_constraint(how, m.groups()))
            work = _blank(work, m.start(), m.end())

    lexicon = catalog._lexicon
    longest = max((len(k) for k in lexicon), default=0)
    for clause in _CLAUSES.split(work):
        words = _tokens(clause)
        include: list[str] = []
        exclude: list[str] = []
        left = []
        negated = False
        i = 0
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):
                group = lexicon.get(tuple(words[i : i + n]))
                if group is not None:
                    (exclude if negated else include).append(group)
                    i += n
                    break
            else:
                w = words[i]
                if w in _NEGATIONS:
                    negated = True
                elif w not in _FILLERS:
                    left.append(w)
                i += 1
        if include:
            constraints.append(IncludeGroups(tuple(dict.fromkeys(include))))
        if exclude:
            constraints.append(ExcludeGroups(tuple(dict.fromkeys(exclude))))
        if left:
            vague = [w for w in left if w in _VAGUE]
            why = (
                f"vague ({', '.join(vague)}): name a year, decade or genre"
                if vague
                else "not understood (no catalog genre, year or title)"
            )
            unparsed.append(f"{' '.join(words)!r}: {why}")
    return ParsedConstraint(original, tuple(dict.fromkeys(constraints)), tuple(unparsed))


def allowed_items(parsed: Sequence[ParsedConstraint | None], catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
    """``(n, n_items)`` boolean: row ``i`` allows the items satisfying every constraint of
    ``parsed[i]`` (all items when it is None or has none). Vectorised per distinct constraint.

    Parameters
    ----------
    parsed : sequence of ParsedConstraint or None
        One parsed request per user (None: unconstrained).
    catalog : ControlCatalog
        The catalog the constraints are checked against.
    histories : Ragged
        The users' histories, rows aligned with ``parsed`` (for :class:`Different`).

    Returns
    -------
    numpy.ndarray
        ``(len(parsed), catalog.n_items)`` boolean: the items each request allows.
    """
    n = len(parsed)
    if len(histories) != n:
        raise ValueError(f"allowed_items: {n} parsed constraints but {len(histories)} histories")
    out = np.ones((n, catalog.n_items), bool)
    rows: dict[Constraint, list[int]] = {}
    for i, p in enumerate(parsed):
        for c in p.constraints if p is not None else ():
            rows.setdefault(c, []).append(i)
    for c, row_list in rows.items():
        idx = np.asarray(row_list, np.int64)
        out[idx] &= c.mask(catalog, histories.take(idx))
    return out
