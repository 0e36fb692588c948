"""Control over any recommender: user constraints stated in natural language, and platform rules.

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

    :class:`ConstrainedRecommender` wraps any fitted model: ``mode="candidates"`` passes the
    allowed items as the query's candidates (so a classic model ranks only them, an LLM ranker's
    retriever retrieves only them and a generative LLM decodes only them; the text stays in the
    query, so an LLM also reads the request verbatim); ``mode="post_filter"`` fetches the base's
    top ``n_candidates`` and drops what violates (cheaper, may return fewer than k). In both
    modes the final list is checked against the constraints again, so **a violating item is
    never returned**; a query whose constraints no item satisfies gets an empty list and is
    counted (:meth:`ConstrainedRecommender.recommend_with_report`).

System-initiated control
    :class:`PlatformRules`: blocked items and a per-item exposure cap (no item in more than
    ``max_exposure_share`` of the lists of one ``recommend`` call, at least one list).
    :func:`enforce_rules` applies them to a base's candidate lists: blocked items are dropped,
    then lists are filled position by position (a loop over candidate columns, vectorised over
    users); when more users propose an item than its remaining cap, the users who score it
    highest (min-max normalised per user) get it, ties by user order; the others move on to their
    next candidate. Lists may come out shorter than k when the caps leave nothing (counted, never
    violated). :class:`RuleEnforcedRecommender` wraps any fitted model with a rule set. Caps
    are over the users of one call: ask for the whole population at once to cap it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.data._arrays import readonly
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate._wrap import WrapperRecommender
from trustrec.models._registry import ModelSpec, register_model
from trustrec.models._topk import TopK

__all__ = ["Constraint", "ExcludeGroups", "IncludeGroups", "YearRange", "SimilarTo", "Different",
           "ParsedConstraint", "ControlCatalog", "parse_constraint", "allowed_items", "YEAR_COLUMNS",
           "ConstrainedConfig", "ConstrainedRecommender", "PlatformRules", "enforce_rules",
           "RuleEnforcedConfig", "RuleEnforcedRecommender"]

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
        if toks[-1] in _ARTICLES and len(toks) > 1:            # "Godfather, The"
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
    ("science", "fiction"): "scifi", ("scifi",): "scifi", ("sf",): "scifi",
    ("kids",): "childrens", ("kid's",): "childrens", ("children",): "childrens", ("childrens",): "childrens",
    ("animated",): "animation", ("cartoon",): "animation", ("cartoons",): "animation",
    ("romantic",): "romance", ("romcom",): "romance", ("noir",): "filmnoir", ("noirs",): "filmnoir",
    ("docs",): "documentary", ("documentaries",): "documentary",
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
    (``membership[i, g]``), group names and a year per item (NaN when unknown)."""

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
            raise DataError(f"ControlCatalog: membership has {membership.shape[1]} group columns but "
                            f"{len(self.group_names)} group names")
        years = np.full(n, np.nan) if self.years is None else np.asarray(self.years, np.float64)
        if years.shape != (n,):
            raise DataError(f"ControlCatalog: {n} titles but {years.shape} years")
        object.__setattr__(self, "titles", tuple(str(t) for t in self.titles))
        object.__setattr__(self, "membership", membership)
        object.__setattr__(self, "group_names", tuple(str(g) for g in self.group_names))
        object.__setattr__(self, "years", readonly(years))

    @classmethod
    def from_items(cls, items: pd.DataFrame | None, *, n_items: int | None = None, group_column: str | None = None,
                   year_column: str | None = None) -> ControlCatalog:
        """From a ``Dataset.items`` table (row ``i`` = item index ``i``). ``None`` columns are
        guessed (a group column as the fairness audits guess it, a year column from
        :data:`YEAR_COLUMNS`); a named column that does not exist raises ``DataError``. No
        items table gives a catalog of ``n_items`` untitled items with no groups or years."""
        from trustrec.data._groups import guess_item_group_column, item_group_matrix

        if items is None:
            if n_items is None:
                raise DataError("ControlCatalog.from_items: no items table and no n_items")
            return cls(tuple("" for _ in range(n_items)), np.zeros((n_items, 0), bool))
        for label, col in (("group_column", group_column), ("year_column", year_column)):
            if col is not None and col not in items.columns:
                raise DataError(f"ControlCatalog: {label} {col!r} is not an item column; the items have "
                                f"{list(items.columns)}")
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
        """The column of group ``name`` (case- and punctuation-insensitive), or None."""
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
        """Items whose title reads as ``title`` (see :func:`parse_constraint`)."""
        return self._title_index.get(tuple(_tokens(title)), ())


# -- constraints ---------------------------------------------------------------------------------------
class Constraint:
    """A structured constraint. ``mask(catalog, histories)`` gives the allowed items: shape
    ``(n_items,)`` when it does not depend on the user, else ``(len(histories), n_items)``."""

    kind: ClassVar[str] = ""

    def mask(self, catalog: ControlCatalog, histories: Ragged) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": self.kind, **asdict(self)}


def _group_columns(catalog: ControlCatalog, groups: Sequence[str]) -> list[int]:
    return [j for j in (catalog.group_index(g) for g in groups) if j is not None]


@dataclass(frozen=True)
class ExcludeGroups(Constraint):
    """Items in none of ``groups`` (and with a known group)."""

    groups: tuple[str, ...]
    kind: ClassVar[str] = "exclude_groups"

    def mask(self, catalog, histories):
        m = catalog.membership
        cols = _group_columns(catalog, self.groups)
        return m.any(1) & ~m[:, cols].any(1)

    def describe(self) -> str:
        return "not " + " or ".join(self.groups)


@dataclass(frozen=True)
class IncludeGroups(Constraint):
    """Items in at least one of ``groups``."""

    groups: tuple[str, ...]
    kind: ClassVar[str] = "include_groups"

    def mask(self, catalog, histories):
        return catalog.membership[:, _group_columns(catalog, self.groups)].any(1)

    def describe(self) -> str:
        return "only " + " or ".join(self.groups)


@dataclass(frozen=True)
class YearRange(Constraint):
    """Items whose year is in ``[low, high]`` (either bound may be None)."""

    low: int | None = None
    high: int | None = None
    kind: ClassVar[str] = "year_range"

    def mask(self, catalog, histories):
        y = catalog.years
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
    with the groups of any of ``items`` (several when a title is shared)."""

    items: tuple[int, ...]
    title: str = ""
    min_similarity: float = 0.5
    kind: ClassVar[str] = "similar_to"

    def mask(self, catalog, histories):
        m = catalog.membership.astype(np.float64)
        anchors = np.asarray([i for i in self.items if 0 <= i < catalog.n_items], dtype=np.int64)
        if not len(anchors) or not m.shape[1]:
            return np.zeros(catalog.n_items, bool)
        a = m[anchors]                                               # (n_anchors, n_groups)
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
    group listed first); any grouped item when the history has no grouped item."""

    n_groups: int = 1
    kind: ClassVar[str] = "different"

    def mask(self, catalog, histories):
        m = catalog.membership
        n, g = len(histories), m.shape[1]
        if not g:
            return np.zeros((n, catalog.n_items), bool)
        h = sp.csr_matrix((np.ones(len(histories.values)), (histories.row_ids(), histories.values)),
                          shape=(n, catalog.n_items))
        counts = np.asarray((h @ sp.csr_matrix(m, dtype=np.float64)).todense())    # (n, g)
        order = np.argsort(-counts, axis=1, kind="stable")[:, :self.n_groups]
        top = np.zeros((n, g), bool)
        np.put_along_axis(top, order, True, axis=1)
        top &= counts > 0
        clash = (top.astype(np.float64) @ m.T.astype(np.float64)) > 0             # (n, n_items)
        return m.any(1)[None, :] & ~clash

    def describe(self) -> str:
        return f"none of the user's {self.n_groups} most frequent group(s)"


@dataclass(frozen=True)
class ParsedConstraint:
    """The outcome of :func:`parse_constraint`: the structured ``constraints`` (all must hold)
    and a message for each part of the text that was not understood."""

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
        return "; ".join(c.describe() for c in self.constraints) or "(no constraint)"


# -- the parser ------------------------------------------------------------------------------------------
_NEGATIONS = frozenset({"no", "not", "without", "except", "excluding", "exclude", "avoid", "never", "skip",
                        "hate", "dislike", "don't", "dont", "nothing", "none", "nor", "neither", "minus"})
_FILLERS = frozenset("""a an the only just some more please pls i i'm im me my we us our you your want
wanna would like love prefer need see watch watching to give show find recommend recommendations films
film movies movie items item titles title stuff things ones one something anything of with and or any in
from released made that are is be it also maybe really very for tonight today now rather let's lets do
can could should get kind kinds type types genre genres thanks thank hey so than too much other else
instead all what which mood feel feeling into on at by about s lot lots bit little fan fans enjoy enjoyed
fine ok okay into""".split())  # noqa: SIM905
_VAGUE = frozenset("""old older oldie oldies recent new newer newest classic classics modern latest good
best popular cheap short long famous great underrated""".split())  # noqa: SIM905
_SIMILAR = re.compile(r"\b(?:more like|similar to|something like|films? like|movies? like|in the style of)\s+")
_DIFFERENT = re.compile(r"\b(?:(?:something|anything) (?:different|new|else|unusual)|surprise me|out of my comfort "
                        r"zone|not the usual|something completely different)\b")
_CLAUSES = re.compile(r"[;,.!?]|\bbut\b|\bhowever\b|\balthough\b")
_Y = r"(\d{4})"
_YEAR_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), how) for p, how in (
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
))


def _year_constraint(how: str, groups: tuple[str, ...]) -> YearRange:
    v = [int(g) for g in groups]
    if how == "range":
        return YearRange(min(v), max(v))
    if how == "decade4":
        return YearRange(v[0] * 10, v[0] * 10 + 9)
    if how == "decade2":
        start = (2000 if v[0] <= 1 else 1900) + v[0] * 10
        return YearRange(start, start + 9)
    return {"low": YearRange(v[0], None), "high": YearRange(None, v[0]), "before": YearRange(None, v[0] - 1),
            "after": YearRange(v[0] + 1, None), "exact": YearRange(v[0], v[0])}[how]


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " ; " + text[end:]


def parse_constraint(text: str | None, catalog: ControlCatalog, *, min_similarity: float = 0.5,
                     n_different_groups: int = 1) -> ParsedConstraint:
    """Structured constraints from a request's free text, over ``catalog`` (module docstring:
    the rules, and what counts as not understood). Never raises on any text."""
    if text is None or not str(text).strip():
        return ParsedConstraint("" if text is None else str(text))
    original = str(text)
    work = " " + original.lower().replace("\u2019", "'") + " "
    constraints: list[Constraint] = []
    unparsed: list[str] = []

    # "more like <title>": the longest run of words that is a catalog title
    while (m := _SIMILAR.search(work)) is not None:
        rest = work[m.end():]
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
            unparsed.append(f"{(m.group().strip() + ' ' + clause).strip()!r}: no catalog title matches "
                            f"{clause!r}" if clause else f"{m.group().strip()!r}: no title given")
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
        include, exclude, left = [], [], []
        negated = False
        i = 0
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):
                group = lexicon.get(tuple(words[i:i + n]))
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
            why = (f"vague ({', '.join(vague)}): name a year, decade or genre" if vague
                   else "not understood (no catalog genre, year or title)")
            unparsed.append(f"{' '.join(words)!r}: {why}")
    return ParsedConstraint(original, tuple(dict.fromkeys(constraints)), tuple(unparsed))


def allowed_items(parsed: Sequence[ParsedConstraint | None], catalog: ControlCatalog,
                  histories: Ragged) -> np.ndarray:
    """``(n, n_items)`` boolean: row ``i`` allows the items satisfying every constraint of
    ``parsed[i]`` (all items when it is None or has none). Vectorised per distinct constraint."""
    n = len(parsed)
    if len(histories) != n:
        raise ValueError(f"allowed_items: {n} parsed constraints but {len(histories)} histories")
    out = np.ones((n, catalog.n_items), bool)
    rows: dict[Constraint, list[int]] = {}
    for i, p in enumerate(parsed):
        for c in (p.constraints if p is not None else ()):
            rows.setdefault(c, []).append(i)
    for c, idx in rows.items():
        idx = np.asarray(idx, np.int64)
        out[idx] &= c.mask(catalog, histories.take(idx))
    return out


def _compact(items: np.ndarray, scores: np.ndarray, keep: np.ndarray, k: int) -> TopK:
    """Keep the ``keep`` entries of each row in order, padding (-1, -inf) after them, first k."""
    keep = keep & (items >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")
    items = np.take_along_axis(np.where(keep, items, -1), order, 1)[:, :k]
    scores = np.take_along_axis(np.where(keep, scores, -np.inf), order, 1)[:, :k]
    if items.shape[1] < k:
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return TopK(items, scores)


# -- wrappers ------------------------------------------------------------------------------------------------
class _WrapperConfig(Config):
    base: ModelSpec = Field(default_factory=lambda: ModelSpec(name="item_knn"))
    n_candidates: PositiveInt = 100


class ConstrainedConfig(_WrapperConfig):
    """``mode``: ``candidates`` (the allowed items become the query's candidates) or
    ``post_filter`` (the base's top ``n_candidates`` minus violators); ``item_group_column`` /
    ``year_column``: the catalog columns (None: guessed); ``min_similarity`` and
    ``n_different_groups``: the parser's settings for "more like" and "something different"."""

    mode: Literal["candidates", "post_filter"] = "candidates"
    item_group_column: str | None = None
    year_column: str | None = None
    min_similarity: float = Field(0.5, gt=0, le=1)
    n_different_groups: PositiveInt = 1


@register_model
class ConstrainedRecommender(WrapperRecommender):
    """Any recommender, with the constraints stated in each query's text enforced (module
    docstring). Queries without text (or without a structured constraint) pass through."""

    name = "constrained"
    config_class = ConstrainedConfig
    capabilities = frozenset({"uses_history", "candidates", "text"})

    def _setup(self, train: Dataset) -> None:
        c = self.config
        catalog = ControlCatalog.from_items(train.items, n_items=train.n_items, group_column=c.item_group_column,
                                            year_column=c.year_column)
        m = sp.csr_matrix(catalog.membership)
        self.titles_ = list(catalog.titles)
        self.group_names_ = list(catalog.group_names)
        self.group_indptr_ = m.indptr.astype(np.int64)
        self.group_indices_ = m.indices.astype(np.int64)
        self.years_ = np.asarray(catalog.years, np.float64)
        self.columns_ = {"group": catalog.group_column, "year": catalog.year_column}

    def catalog(self) -> ControlCatalog:
        """The fitted catalog the constraints are checked against."""
        self._check_fitted()
        n = len(self.titles_)
        m = sp.csr_matrix((np.ones(len(self.group_indices_)), self.group_indices_, self.group_indptr_),
                          shape=(n, len(self.group_names_)))
        return ControlCatalog(tuple(self.titles_), m.toarray() > 0, tuple(self.group_names_), self.years_,
                              self.columns_["group"], self.columns_["year"])

    def parse(self, texts: Sequence[str | None], catalog: ControlCatalog | None = None) -> list[ParsedConstraint]:
        """:func:`parse_constraint` of each text with this wrapper's settings (each distinct text
        parsed once)."""
        catalog = catalog or self.catalog()
        c = self.config
        cache: dict[str | None, ParsedConstraint] = {}
        for t in texts:
            if t not in cache:
                cache[t] = parse_constraint(t, catalog, min_similarity=c.min_similarity,
                                            n_different_groups=c.n_different_groups)
        return [cache[t] for t in texts]

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        return self.recommend_with_report(queries, k, exclude_seen=exclude_seen)[0]

    def recommend_with_report(self, queries: QueryBatch, k: int = 10, *,
                              exclude_seen: bool = True) -> tuple[TopK, pd.DataFrame]:
        """:meth:`recommend` and one row per query: its text, the constraints understood
        (``constraints``, ``n_constraints``), what was not (``unparsed``), how many items satisfy
        them (``n_allowed``) and ``unsatisfiable`` (constraints present, no item satisfies them:
        the list is empty)."""
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
        keep = allowed[rows, np.where(top.items >= 0, top.items, 0)]   # the guarantee: never a violator
        out = _compact(top.items, top.scores, keep, min(k, self.n_items_))
        n_allowed = allowed.sum(1)
        n_con = np.array([len(p.constraints) for p in parsed], np.int64)
        report = pd.DataFrame({
            "text": texts, "constraints": [p.describe() for p in parsed], "n_constraints": n_con,
            "unparsed": [" | ".join(p.unparsed) for p in parsed],
            "n_unparsed": np.array([len(p.unparsed) for p in parsed], np.int64),
            "n_allowed": n_allowed, "unsatisfiable": (n_con > 0) & (n_allowed == 0)})
        return out, report


# -- platform rules ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlatformRules:
    """A platform's rule set: ``blocked`` item indices never shown, and ``max_exposure_share``:
    no item in more than that share of the lists of one ``recommend`` call (None: no cap)."""

    blocked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    max_exposure_share: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "blocked", readonly(np.unique(np.asarray(self.blocked, np.int64).ravel())))
        s = self.max_exposure_share
        if s is not None and not (0 < s <= 1):
            raise ConfigError(f"PlatformRules: max_exposure_share must be in (0, 1] or None; got {s}")

    @classmethod
    def from_ids(cls, dataset: Dataset, blocked_ids: Sequence[Any] = (), *,
                 max_exposure_share: float | None = None) -> tuple[PlatformRules, list[str]]:
        """Rules over raw item ids; also returns the ids not in the catalog (they cannot be shown,
        so they are reported and skipped)."""
        ids = [str(i) for i in blocked_ids]
        index = dataset.item_index(ids, missing="ignore") if ids else np.empty(0, np.int64)
        index = np.asarray(index)
        known = index >= 0
        return cls(index[known], max_exposure_share), [i for i, ok in zip(ids, known) if not ok]

    def cap(self, n_lists: int) -> int | None:
        """The most lists one item may appear in, for ``n_lists`` lists (at least 1)."""
        if self.max_exposure_share is None:
            return None
        return max(1, math.floor(self.max_exposure_share * n_lists + 1e-9))

    def violations(self, top: np.ndarray, n_items: int) -> dict[str, Any]:
        """What ``top`` (n_lists, k item indices, -1 = none) breaks: ``blocked_per_list`` (array),
        ``blocked_slots``, ``lists_with_blocked``, ``cap``, ``items_over_cap``,
        ``excess_slots`` (slots above the caps) and ``violating_slots`` (both) of ``slots``."""
        top = np.asarray(top)
        valid = top >= 0
        blocked = np.zeros(n_items, bool)
        blocked[self.blocked[self.blocked < n_items]] = True
        per_list = (blocked[np.where(valid, top, 0)] & valid).sum(1)
        cap = self.cap(len(top))
        exposure = np.bincount(top[valid], minlength=n_items)
        exposure[blocked] = 0                    # a blocked item's slots are counted once, as blocked
        excess = np.maximum(exposure - cap, 0) if cap is not None else np.zeros(n_items, np.int64)
        return {"blocked_per_list": per_list, "blocked_slots": int(per_list.sum()),
                "lists_with_blocked": int((per_list > 0).sum()), "cap": cap,
                "items_over_cap": int((excess > 0).sum()), "excess_slots": int(excess.sum()),
                "violating_slots": int(per_list.sum() + excess.sum()), "slots": int(valid.sum()),
                "lists": len(top)}


def enforce_rules(items: np.ndarray, scores: np.ndarray, rules: PlatformRules, k: int, n_items: int) -> TopK:
    """Top-``k`` lists from ranked candidate lists ``items``/``scores`` (n, C) under ``rules``
    (module docstring: blocked items dropped, caps filled greedily column by column, the
    highest min-max-normalised score first). Never returns a blocked item or exceeds a cap."""
    from trustrec.mitigate._rerank import minmax_relevance

    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    n, width = items.shape
    k = int(max(0, min(k, n_items)))
    blocked = np.zeros(n_items, bool)
    blocked[rules.blocked[rules.blocked < n_items]] = True
    valid = (items >= 0) & ~blocked[np.where(items >= 0, items, 0)] & np.isfinite(scores)
    cap = rules.cap(n)
    if cap is None:
        return _compact(items, scores, valid, k)
    priority = minmax_relevance(np.where(valid, scores, 0.0), valid)
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf)
    filled = np.zeros(n, np.int64)
    left = np.full(n_items, cap, np.int64)
    for j in range(width):
        rows = np.flatnonzero(valid[:, j] & (filled < k))
        if not len(rows):
            continue
        its = items[rows, j]
        order = np.lexsort((rows, -priority[rows, j], its))          # by item, best claim first
        rows, its = rows[order], its[order]
        first = np.r_[True, its[1:] != its[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(its)), 0))
        take = (np.arange(len(its)) - start) < left[its]
        rows, its = rows[take], its[take]
        out_items[rows, filled[rows]] = its
        out_scores[rows, filled[rows]] = scores[rows, j]
        filled[rows] += 1
        left -= np.bincount(its, minlength=n_items)
    return TopK(out_items, out_scores)


class RuleEnforcedConfig(_WrapperConfig):
    """``blocked_items``: raw item ids never shown; ``max_exposure_share``: the exposure cap
    (None: none); ``n_candidates``: how deep into the base's ranking lists are filled from (see
    :meth:`RuleEnforcedRecommender.depth`)."""

    blocked_items: tuple[str, ...] = ()
    max_exposure_share: float | None = Field(None, gt=0, le=1)


@register_model
class RuleEnforcedRecommender(WrapperRecommender):
    """Any recommender, with a platform rule set enforced on every call (module docstring).
    Blocked ids that are not in the catalog are counted in ``unknown_blocked_``."""

    name = "rule_enforced"
    config_class = RuleEnforcedConfig

    def _setup(self, train: Dataset) -> None:
        rules, unknown = PlatformRules.from_ids(train, self.config.blocked_items)
        self.blocked_ = np.asarray(rules.blocked, np.int64)
        self.unknown_blocked_ = unknown

    def depth(self, k: int) -> int:
        """How far down the base's ranking lists are filled from: ``n_candidates``, at least
        ``k / max_exposure_share`` (enough to fill identical lists under the cap), plus the
        blocked items."""
        share = self.config.max_exposure_share
        need = max(k, self.config.n_candidates, math.ceil(k / share - 1e-9) if share else 0)
        return need + len(self.blocked_)

    @property
    def rules(self) -> PlatformRules:
        self._check_fitted()
        return PlatformRules(self.blocked_, self.config.max_exposure_share)

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        top = self.base_.recommend(queries, self.depth(k), exclude_seen=exclude_seen)
        return enforce_rules(top.items, top.scores, self.rules, k, self.n_items_)
