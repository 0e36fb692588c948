"""Knowledge hallucination (factuality): does the recommender's LLM know the catalog's facts?

The ``hallucination`` audit asks whether a generative recommender names items that exist. This
audit asks whether the LLM behind a recommender states facts about existing items that agree with
the catalog. For a seeded sample of catalog items (``n_items``, default 200) that have a known
attribute in the dataset's item table, the model's LLM is asked one short question per attribute,
through its backend (:class:`~trustrec.models.llm.LLMBackend`, greedy ``generate``):

* ``year``: "In what year was "<title>" released?" (``year_template``). The answer's first
  stand-alone 4-digit number is the parsed year; it is ``correct`` when it is within
  ``year_tolerance`` years of the catalog's (default 0: the same year), else it ``contradicts``
  the catalog; an answer without a 4-digit number has ``no_answer``. MovieLens titles often end in
  the year, "Toy Story (1995)": a trailing "(YYYY)" is stripped from the title in the question
  (``strip_title_year``), so the question does not give the answer away.
* ``genre``: "What genre or category is "<title>"?" (``genre_template``). The parsed value is the
  set of the catalog's genre names (every token of the genre column) that appear in the answer as
  whole words (case-insensitive; punctuation read as spaces, so "sci fi" names "Sci-Fi"). The
  answer is ``correct`` when one of them is a genre of the item, ``contradicts`` when it names
  only other catalog genres, ``no_answer`` when it names none.

Attribute columns are detected from the item table (``year_column``/``genre_column`` override):
the year from the first column whose name contains "year", then "release", then "date", with at
least one value holding a 4-digit year (ml-100k: ``release_year``); the genre from the first of
``genre``, ``genres``, ``class``, ``category``, ``categories`` (ml-100k: ``class``), split into
tokens as the item-group audits split them. An attribute without a column (or with no known
value) is reported as not applicable (``settings["attributes_not_applicable"]`` says why);
amazon-industrial, for one, has neither.

Estimates: ``correct_rate``, ``contradiction_rate`` and ``no_answer_rate`` per attribute
(``<rate> [year]``, shares of that attribute's questions, CI from a seeded bootstrap over the
questioned items) and over all attributes (the mean over sampled items of each item's share, so
every item weighs the same; CI over items). Evidence: ``answers`` (one row per question: item,
title, attribute, question, answer cut to 200 characters, parsed value, catalog value, verdict)
and ``rates`` (one row per attribute and verdict, drawn as a bar chart).

Models without an LLM backend (the ``llm_backend`` capability) are not applicable: they state no
facts in text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import NonNegativeInt, PositiveInt

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.data import split_group_values
from trustrec.eval import bootstrap_ci

__all__ = [
    "ATTRIBUTES",
    "VERDICTS",
    "KnowledgeHallucinationAudit",
    "KnowledgeHallucinationConfig",
    "detect_attribute_columns",
    "judge_genre",
    "judge_year",
    "parse_genres",
    "parse_year",
    "strip_title_year",
]

ATTRIBUTES: tuple[Literal["year", "genre"], ...] = ("year", "genre")
VERDICTS = ("correct", "contradicts", "no_answer")
RATE_NAMES = {"correct": "correct_rate", "contradicts": "contradiction_rate", "no_answer": "no_answer_rate"}
GENRE_COLUMNS = ("genre", "genres", "class", "category", "categories")
YEAR_NAME_PARTS = ("year", "release", "date")

_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_TITLE_YEAR = re.compile(r"\s*\(\s*\d{4}\s*\)\s*$")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_MAX_TEXT = 200  # characters of each answer kept in the evidence table


def parse_year(text: str | None) -> int | None:
    """The first stand-alone 4-digit number in ``text`` (not part of a longer number), or None.

    Parameters
    ----------
    text : str or None
        An answer, or a catalog value such as ``"01-Jan-1995"``.

    Returns
    -------
    int or None
        The year.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    match = _YEAR.search(str(text))
    return int(match.group(1)) if match else None


def strip_title_year(title: str) -> str:
    """``title`` without a trailing ``"(YYYY)"`` (``"Toy Story (1995)"`` -> ``"Toy Story"``).

    Parameters
    ----------
    title : str
        A catalog title.

    Returns
    -------
    str
        The title, stripped of surrounding whitespace.
    """
    return _TITLE_YEAR.sub("", str(title)).strip()


def _words(text: str) -> str:
    return " " + _NON_WORD.sub(" ", str(text).casefold()).strip() + " "


def parse_genres(text: str | None, genres: Sequence[str]) -> list[str]:
    """The catalog genre names that appear in ``text`` as whole words.

    Parameters
    ----------
    text : str or None
        An answer.
    genres : sequence of str
        Every genre name of the catalog.

    Returns
    -------
    list of str
        The names found, in the order of ``genres`` (case-insensitive; runs of characters other
        than letters and digits count as one space on both sides).
    """
    if not text:
        return []
    answer = _words(text)
    return [g for g in genres if _words(g).strip() and _words(g) in answer]


def judge_year(answer: str | None, catalog_year: int, tolerance: int = 0) -> tuple[int | None, str]:
    """Parse a year answer and classify it against the catalog.

    Parameters
    ----------
    answer : str or None
        The model's answer.
    catalog_year : int
        The item's year in the catalog.
    tolerance : int
        Largest accepted difference in years (default 0).

    Returns
    -------
    parsed : int or None
        The parsed year (:func:`parse_year`).
    verdict : {"correct", "contradicts", "no_answer"}
        ``no_answer`` without a year, ``correct`` within ``tolerance``, else ``contradicts``.
    """
    parsed = parse_year(answer)
    if parsed is None:
        return None, "no_answer"
    return parsed, "correct" if abs(parsed - int(catalog_year)) <= tolerance else "contradicts"


def judge_genre(answer: str | None, item_genres: Sequence[str], genres: Sequence[str]) -> tuple[list[str], str]:
    """Parse a genre answer and classify it against the item's catalog genres.

    Parameters
    ----------
    answer : str or None
        The model's answer.
    item_genres : sequence of str
        The item's genres in the catalog.
    genres : sequence of str
        Every genre name of the catalog (what the answer is searched for).

    Returns
    -------
    parsed : list of str
        The catalog genres the answer names (:func:`parse_genres`).
    verdict : {"correct", "contradicts", "no_answer"}
        ``no_answer`` when it names none, ``correct`` when one of them is the item's, else
        ``contradicts``.
    """
    parsed = parse_genres(answer, genres)
    if not parsed:
        return parsed, "no_answer"
    own = {_words(g) for g in item_genres}
    return parsed, "correct" if any(_words(g) in own for g in parsed) else "contradicts"


def _year_values(column: pd.Series) -> np.ndarray:
    """Each value's year (:func:`parse_year`) as float64, NaN when unknown."""
    text = column.astype("string")
    years = text.str.extract(_YEAR.pattern, expand=False)
    return pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def detect_attribute_columns(items: pd.DataFrame | None) -> tuple[dict[str, str], dict[str, str]]:
    """The item-table columns holding each attribute, and why the others are missing.

    Parameters
    ----------
    items : pandas.DataFrame or None
        The dataset's item table.

    Returns
    -------
    columns : dict of str to str
        Attribute (``"year"``, ``"genre"``) to column name, for the attributes found.
    missing : dict of str to str
        Attribute to the reason it is not applicable.
    """
    columns: dict[str, str] = {}
    missing: dict[str, str] = {}
    if items is None:
        items = pd.DataFrame()
    names = [c for c in items.columns if c not in ("item_id", "title")]
    year = next(
        (
            c
            for part in YEAR_NAME_PARTS
            for c in names
            if part in str(c).casefold() and np.isfinite(_year_values(items[c])).any()
        ),
        None,
    )
    if year is None:
        missing["year"] = (
            f"the item table has no column with a 4-digit year and a name containing {' / '.join(YEAR_NAME_PARTS)}"
        )
    else:
        columns["year"] = year
    folded = {str(c).casefold(): c for c in names}
    genre = next((folded[g] for g in GENRE_COLUMNS if g in folded and items[folded[g]].notna().any()), None)
    if genre is None:
        missing["genre"] = f"the item table has no genre/category column ({', '.join(GENRE_COLUMNS)})"
    else:
        columns["genre"] = genre
    return columns, missing


# -- the audit -------------------------------------------------------------------------------------
class KnowledgeHallucinationConfig(AuditConfig):
    """Settings of the ``knowledge_hallucination`` audit.

    Parameters
    ----------
    n_items : int
        Catalog items questioned (a seeded sample of the items with a title and a known attribute;
        all of them when fewer).
    attributes : tuple of {"year", "genre"}
        Attributes asked about (each only where the item table has it).
    year_template, genre_template : str
        Question templates; ``{title}`` is replaced by the item's title.
    year_column, genre_column : str or None
        Item-table columns of the attributes (None: detected, see
        :func:`detect_attribute_columns`).
    year_tolerance : int
        Largest difference in years counted as correct (default 0).
    strip_title_year : bool
        Drop a trailing ``"(YYYY)"`` from titles in the questions (default True).
    max_new_tokens : int
        Tokens generated per answer (greedy).
    stop : tuple of str
        Strings that end an answer.
    chat : bool
        Wrap each question in the backend's chat template when it has one (default False: the
        template text is the prompt).
    """

    n_items: PositiveInt = 200
    attributes: tuple[Literal["year", "genre"], ...] = ATTRIBUTES
    year_template: str = 'Question: In what year was "{title}" released?\nAnswer:'
    genre_template: str = 'Question: What genre or category is "{title}"?\nAnswer:'
    year_column: str | None = None
    genre_column: str | None = None
    year_tolerance: NonNegativeInt = 0
    strip_title_year: bool = True
    max_new_tokens: PositiveInt = 16
    stop: tuple[str, ...] = ("\nQuestion:", "\n\n")
    chat: bool = False


@register_audit
class KnowledgeHallucinationAudit(Audit):
    """How often a recommender's LLM states item facts (release year, genre) that contradict the
    catalog, answers them correctly, or gives no usable answer."""

    name: ClassVar[str] = "knowledge_hallucination"
    dimension: ClassVar[str] = "factuality"
    description: ClassVar[str] = (
        "LLM answers about catalog items (release year, genre) checked against the item table: "
        "correct, contradicting the catalog, or no usable answer"
    )
    needs: ClassVar[str] = (
        "a model with an LLM backend (llm_backend capability) and an item table with a year or genre column"
    )
    config: KnowledgeHallucinationConfig
    config_class = KnowledgeHallucinationConfig

    def _columns(self, inputs: AuditInputs) -> tuple[dict[str, str], dict[str, str]]:
        c = self.config
        items = inputs.dataset.items
        found, missing = detect_attribute_columns(items)
        for attr, given in (("year", c.year_column), ("genre", c.genre_column)):
            if given is None:
                continue
            if items is None or given not in items.columns:
                found.pop(attr, None)
                missing[attr] = f"the configured {attr}_column {given!r} is not in the item table"
            else:
                found[attr], _ = given, missing.pop(attr, None)
        for attr in ATTRIBUTES:
            if attr not in c.attributes:
                found.pop(attr, None)
                missing[attr] = "not requested (attributes)"
        return found, missing

    def _why_not(self, inputs: AuditInputs) -> str | None:
        from trustrec.models import has_capability

        model = inputs.model
        if not has_capability(model, "llm_backend"):
            name = getattr(model, "name", "") or type(model).__name__
            return f"{name} has no LLM backend (llm_backend capability): it writes no text, so it states no item facts"
        found, missing = self._columns(inputs)
        if not found:
            return "no attribute to ask about: " + "; ".join(f"{a}: {why}" for a, why in missing.items())
        return None

    def _questions(self, inputs: AuditInputs, found: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
        """One row per (sampled item, attribute with a known value): the question and the
        catalog value; and the catalog's genre names."""
        c = self.config
        items = inputs.dataset.items
        titles = items["title"].astype("string").fillna("").str.strip().to_numpy(dtype=object)
        known = {}
        if "year" in found:
            known["year"] = _year_values(items[found["year"]])
        genre_rows: list[list[str]] = []
        vocabulary: list[str] = []
        if "genre" in found:
            genre_rows, _ = split_group_values(items[found["genre"]], None)
            vocabulary = list(dict.fromkeys(g for row in genre_rows for g in row))
        has_title = np.array([bool(t) for t in titles])
        has_value = {
            "year": np.isfinite(known["year"]) if "year" in known else np.zeros(len(items), dtype=bool),
            "genre": np.array([bool(r) for r in genre_rows]) if genre_rows else np.zeros(len(items), dtype=bool),
        }
        eligible = np.flatnonzero(has_title & (has_value["year"] | has_value["genre"]))
        rng = np.random.default_rng(c.seed)
        chosen = np.sort(rng.choice(eligible, size=min(c.n_items, len(eligible)), replace=False))
        records = []
        for item in chosen:
            shown = strip_title_year(titles[item]) if c.strip_title_year else str(titles[item])
            shown = shown or str(titles[item])
            for attr in ATTRIBUTES:
                if attr not in found or not has_value[attr][item]:
                    continue
                template = c.year_template if attr == "year" else c.genre_template
                catalog = str(int(known["year"][item])) if attr == "year" else "|".join(genre_rows[item])
                records.append(
                    {
                        "item": int(item),
                        "title": str(titles[item]),
                        "attribute": attr,
                        "question": template.replace("{title}", shown),
                        "catalog": catalog,
                    }
                )
        columns = ["item", "title", "attribute", "question", "catalog"]
        return pd.DataFrame.from_records(records, columns=columns), vocabulary

    def _prompts(self, backend: Any, questions: list[str]) -> tuple[list[str], str | None]:
        if not self.config.chat:
            return questions, None
        try:
            return [backend.apply_chat_template([{"role": "user", "content": q}]) for q in questions], None
        except Exception as exc:  # noqa: BLE001  # no chat template (any backend's error): plain prompts
            return (
                questions,
                f"chat requested but the backend has no chat template ({type(exc).__name__}); plain prompts used",
            )

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        model: Any = inputs.model  # llm_backend checked in _why_not
        found, missing = self._columns(inputs)
        table, vocabulary = self._questions(inputs, found)
        warnings = [f"{attr} not applicable: {why}" for attr, why in missing.items() if attr in c.attributes]
        prompts, note = self._prompts(model.backend, table["question"].tolist())
        if note:
            warnings.append(note)
        answers = (
            model.backend.generate(prompts, c.max_new_tokens, temperature=0.0, seed=c.seed, stop=list(c.stop))
            if prompts
            else []
        )
        parsed, verdicts = [], []
        for attr, answer, catalog in zip(table["attribute"], answers, table["catalog"]):
            if attr == "year":
                value, verdict = judge_year(answer, int(catalog), c.year_tolerance)
                parsed.append("" if value is None else str(value))
            else:
                names, verdict = judge_genre(answer, catalog.split("|"), vocabulary)
                parsed.append("|".join(names))
            verdicts.append(verdict)
        table["answer"] = [str(a).strip()[:_MAX_TEXT] for a in answers]
        table["parsed"] = parsed
        table["verdict"] = verdicts
        table = table[["item", "title", "attribute", "question", "answer", "parsed", "catalog", "verdict"]]

        estimates: dict[str, Estimate] = {}
        rows = []
        measured = [a for a in ATTRIBUTES if a in found and (table["attribute"] == a).any()]
        for attr in measured:
            part = table[table["attribute"] == attr]
            for verdict in VERDICTS:
                hits = (part["verdict"] == verdict).to_numpy(dtype=np.float64)
                lo, hi = bootstrap_ci(hits, n_boot=c.n_boot, seed=c.seed)
                rows.append(
                    {"attribute": attr, "verdict": verdict, "rate": hits.mean(), "ci_low": lo, "ci_high": hi}
                    | {"n": len(hits)}
                )
                estimates[f"{RATE_NAMES[verdict]} [{attr}]"] = Estimate(
                    float(hits.mean()),
                    lo,
                    hi,
                    len(hits),
                    description=f"share of {attr} answers that are {_label(verdict)} (CI over items)",
                )
        if len(table):
            shares = pd.crosstab(table["item"], pd.Categorical(table["verdict"], categories=VERDICTS), dropna=False)
            shares = shares.reindex(columns=list(VERDICTS), fill_value=0)
            shares = shares.div(shares.sum(axis=1), axis=0)
            for verdict in VERDICTS:
                per_item = shares[verdict].to_numpy(dtype=np.float64)
                lo, hi = bootstrap_ci(per_item, n_boot=c.n_boot, seed=c.seed)
                rows.append(
                    {"attribute": "all", "verdict": verdict, "rate": per_item.mean(), "ci_low": lo, "ci_high": hi}
                    | {"n": len(per_item)}
                )
                estimates[RATE_NAMES[verdict]] = Estimate(
                    float(per_item.mean()),
                    lo,
                    hi,
                    len(per_item),
                    description=f"share of answers that are {_label(verdict)}, mean over items of each "
                    "item's share (CI over items)",
                )
        else:
            warnings.append("no sampled item has a known value of a measured attribute")
        rates = pd.DataFrame(rows, columns=["attribute", "verdict", "rate", "ci_low", "ci_high", "n"])
        plots = (
            (
                Plot(
                    "bar",
                    "rates",
                    "verdict",
                    "rate",
                    "answers about catalog facts per attribute (95% CI)",
                    series="attribute",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    x_label="verdict",
                    y_label="share of answers",
                ),
            )
            if len(rates)
            else ()
        )
        settings = {
            "attributes_measured": measured,
            "attributes_not_applicable": {a: why for a, why in missing.items() if a in c.attributes},
            "columns": dict(found),
            "n_items_sampled": int(table["item"].nunique()) if len(table) else 0,
            "n_questions": len(table),
            "n_genres": len(vocabulary),
            "titles_year_stripped": int(sum(strip_title_year(t) != t.strip() for t in table["title"].drop_duplicates()))
            if c.strip_title_year
            else 0,
        }
        return self._result(
            estimates,
            evidence={"answers": table.reset_index(drop=True), "rates": rates},
            settings=settings,
            warnings=tuple(warnings),
            plots=plots,
            summary=_summary(rates),
        )


def _label(verdict: str) -> str:
    return {"correct": "correct", "contradicts": "contradicting the catalog", "no_answer": "not usable"}[verdict]


def _summary(rates: pd.DataFrame) -> str:
    if not len(rates):
        return "no question asked"
    value = rates.set_index(["attribute", "verdict"])["rate"]
    parts = [
        f"{attr}: {value[(attr, 'correct')]:.1%} correct, {value[(attr, 'contradicts')]:.1%} contradict the "
        f"catalog, {value[(attr, 'no_answer')]:.1%} no answer"
        for attr in dict.fromkeys(rates["attribute"])
    ]
    return "; ".join(parts)
