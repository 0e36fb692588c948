"""Factuality (accountability) audits of LLM recommenders: does a generative model name items that
exist, and does it name new ones?

A model that writes item titles as free text can answer with a title that is not in the catalog
(hallucination), with a near miss that only fuzzy matching links to an item, with text that is not
an answer at all, or with an item the user already has or that it already named. Every generated
output gets exactly one category, checked in this order (the first that holds wins):

1. ``malformed``: not one title (the rule is :func:`malformed_reason`).
2. ``hallucinated``: the grounder maps it to no catalog item.
3. ``near_miss``: grounded only by the fuzzy fallback (TF-IDF or embedding nearest title), not by
   an exact normalised title match.
4. ``already_seen``: an exact match to an item in the user's history.
5. ``repeated``: an exact match to an item an earlier output (a better-ranked one) of this user
   already named; outputs earlier in the list that were ``near_miss`` also count as naming their item.
6. ``valid``: an exact match to a new item.

Rates are shares of outputs. Confidence intervals come from a seeded bootstrap over users of the
per-user rates (every user gets the same number of outputs, so the mean of per-user rates is the
pooled share).

The ``hallucination`` audit compares unconstrained decoding (the model's raw beam texts, from
``generate_titles``) under several groundings (exact only, the model's TF-IDF fallback, an
embedding fallback when a text encoder is available offline) with constrained decoding over the
catalog trie, the structural mitigation: its outputs are catalog items by construction, so it
cannot hallucinate or be malformed, but it can still repeat history (measured with
``exclude_seen=False``). Estimates: ``<rate> [<setting>]`` for every category and setting
(``hallucination_rate``, ``near_miss_rate``, ``malformed_rate``, ``already_seen_rate``,
``repeated_rate``, ``valid_rate``), the same names without a suffix for the setting the model is
configured to run, and ``mitigation_effect``: the drop in the share of outputs that are not exactly
a catalog title (malformed + hallucinated + near miss, which no grounding changes) from free text
to constrained decoding. Evidence: ``outputs`` (one row per output, text cut to 200 characters,
``row`` = position among the audited users, ``user`` = dataset user index) and ``rates`` (one row
per setting and category), drawn as a bar chart.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import PositiveInt

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.eval import bootstrap_ci

__all__ = [
    "CATEGORIES",
    "DEFAULT_SCAFFOLDING",
    "HallucinationAudit",
    "HallucinationConfig",
    "category_rates",
    "classify_generations",
    "classify_items",
    "malformed_reason",
    "per_user_rates",
]

CATEGORIES = ("malformed", "hallucinated", "near_miss", "already_seen", "repeated", "valid")
RATE_NAMES = {
    "malformed": "malformed_rate",
    "hallucinated": "hallucination_rate",
    "near_miss": "near_miss_rate",
    "already_seen": "already_seen_rate",
    "repeated": "repeated_rate",
    "valid": "valid_rate",
}

#: Prompt scaffolding that never belongs in an answer (matched case-insensitively as substrings):
#: role markers, the default template's wording, chat special-token brackets.
DEFAULT_SCAFFOLDING = (
    "recommend",
    "history:",
    "user:",
    "assistant:",
    "system:",
    "answer:",
    "interacted with",
    "which item",
    "<|",
    "|>",
)

_LIST_MARKER = re.compile(r"(?<!\S)\(?\d{1,3}[.)](?=\s|$)")
_MAX_TEXT = 200  # characters of each output kept in the evidence table


def malformed_reason(
    text: str, *, max_chars: int = 200, scaffolding: Sequence[str] = DEFAULT_SCAFFOLDING, exact: bool = False
) -> str | None:
    """Why ``text`` is not a single title, or None. Checked in order on ``text.strip()``:

    - ``"empty"``: nothing but whitespace;
    - ``"no_alnum"``: not one letter or digit (Unicode ``str.isalnum``);

    and, unless ``exact`` (the text is, after normalisation, a catalog title; a real title is
    never malformed):

    - ``"multi_line"``: more than one non-blank line (``str.splitlines``);
    - ``"list"``: two or more enumeration markers (``1.``, ``2)``, ``(3)`` standing alone), i.e.
      several titles written on one line;
    - ``"too_long"``: more than ``max_chars`` characters;
    - ``"scaffolding"``: contains one of ``scaffolding`` (case-insensitive substring), i.e. the
      model echoed the prompt instead of answering.
    """
    stripped = str(text).strip()
    if not stripped:
        return "empty"
    if not any(ch.isalnum() for ch in stripped):
        return "no_alnum"
    if exact:
        return None
    if sum(1 for line in stripped.splitlines() if line.strip()) > 1:
        return "multi_line"
    if len(_LIST_MARKER.findall(stripped)) >= 2:
        return "list"
    if len(stripped) > max_chars:
        return "too_long"
    folded = stripped.casefold()
    if any(marker.casefold() in folded for marker in scaffolding if marker):
        return "scaffolding"
    return None


def _check_aligned(name: str, rows: Sequence, histories: Sequence, users) -> np.ndarray:
    if len(rows) != len(histories):
        raise ValueError(
            f"{name}: {len(rows)} output lists but {len(histories)} histories; "
            "pass one history per user, in the same order"
        )
    users = np.arange(len(rows)) if users is None else np.asarray(users)
    if len(users) != len(rows):
        raise ValueError(f"{name}: {len(rows)} output lists but {len(users)} users")
    return users


def _frame(records: list[dict]) -> pd.DataFrame:
    columns = ["user", "rank", "text", "category", "detail", "item"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["rank"] = frame["rank"].astype(np.int64)
    frame["item"] = frame["item"].astype(np.int64)
    frame["category"] = pd.Categorical(frame["category"], categories=CATEGORIES)
    return frame


def classify_generations(
    texts: Sequence[Sequence[str]],
    ground: Callable[[str], tuple[int, str]],
    histories: Sequence[Sequence[int]],
    *,
    users: npt.ArrayLike | None = None,
    max_chars: int = 200,
    scaffolding: Sequence[str] = DEFAULT_SCAFFOLDING,
) -> pd.DataFrame:
    """One row per generated output, categorised (see the module docstring for the order).

    Parameters
    ----------
    texts : sequence of sequence of str
        ``texts[u]``: user ``u``'s outputs, best first.
    ground : callable
        ``ground(text) -> (item, how)`` with ``how`` in ``"exact"``/``"near"``/``"none"`` (e.g.
        ``GenerativeRecommender.grounder()``).
    histories : sequence of sequence of int
        ``histories[u]``: the item indices the user already has.
    users : array_like or None
        Labels for the ``user`` column (default ``0..n-1``).
    max_chars : int
        Longest output that is not malformed (:func:`malformed_reason`).
    scaffolding : sequence of str
        Prompt scaffolding whose echo makes an output malformed (:func:`malformed_reason`).

    Returns
    -------
    pandas.DataFrame
        Columns ``user``, ``rank`` (1 = first output), ``text``, ``category``, ``detail`` (the
        malformed reason, or how the item was grounded), ``item`` (-1 when none).
    """
    labels = _check_aligned("classify_generations", texts, histories, users)
    records = []
    for u, (row, history) in enumerate(zip(texts, histories)):
        seen = {int(i) for i in np.asarray(history).ravel()}
        named: set[int] = set()
        for rank, text in enumerate(row, start=1):
            text = "" if text is None else str(text)
            item, how = ground(text) if text.strip() else (-1, "none")
            item = int(item)
            reason = malformed_reason(text, max_chars=max_chars, scaffolding=scaffolding, exact=how == "exact")
            if reason is not None:
                category, detail, item = "malformed", reason, -1
            elif how == "none" or item < 0:
                category, detail, item = "hallucinated", "none", -1
            elif how != "exact":
                category, detail = "near_miss", how
            else:
                category, detail = _seen_or_repeated(item, seen, named), how
            if item >= 0:
                named.add(item)
            records.append(
                {"user": labels[u], "rank": rank, "text": text, "category": category, "detail": detail, "item": item}
            )
    return _frame(records)


def _seen_or_repeated(item: int, seen: set[int], named: set[int]) -> str:
    if item in seen:
        return "already_seen"
    if item in named:
        return "repeated"
    return "valid"


def classify_items(
    items: Sequence[Sequence[int]],
    histories: Sequence[Sequence[int]],
    *,
    users=None,
    titles: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`classify_generations` for outputs that are catalog items by construction
    (constrained decoding, ranking models): each is ``already_seen``, ``repeated`` or ``valid``;
    -1 entries (no item) are dropped. ``titles[item]`` fills the ``text`` column ("" without)."""
    users = _check_aligned("classify_items", items, histories, users)
    records = []
    for u, (row, history) in enumerate(zip(items, histories)):
        seen = {int(i) for i in np.asarray(history).ravel()}
        named: set[int] = set()
        row = [int(i) for i in np.asarray(row).ravel() if i >= 0]
        for rank, item in enumerate(row, start=1):
            records.append(
                {
                    "user": users[u],
                    "rank": rank,
                    "text": titles[item] if titles is not None else "",
                    "category": _seen_or_repeated(item, seen, named),
                    "detail": "catalog",
                    "item": item,
                }
            )
            named.add(item)
    return _frame(records)


def category_rates(table: pd.DataFrame) -> pd.Series:
    """Share of outputs in each category.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`classify_generations`' table.

    Returns
    -------
    pandas.Series
        One rate per category (indexed by :data:`CATEGORIES`; NaN when there is no output).
    """
    counts = table["category"].value_counts().reindex(list(CATEGORIES), fill_value=0)
    total = int(counts.sum())
    return (counts / total if total else counts * np.nan).astype(np.float64).rename("rate")


def per_user_rates(table: pd.DataFrame, users: npt.ArrayLike | None = None) -> pd.DataFrame:
    """Per user, the share of the user's outputs in each category.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`classify_generations`' table.
    users : array_like or None
        Every user to report (those without output get NaN rows); None: the users in ``table``.

    Returns
    -------
    pandas.DataFrame
        One row per user, one column per category (:data:`CATEGORIES`).
    """
    counts = pd.crosstab(table["user"], pd.Categorical(table["category"], categories=CATEGORIES), dropna=False)
    counts = counts.reindex(columns=list(CATEGORIES), fill_value=0)
    rates = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).astype(np.float64)
    if users is not None:
        rates = rates.reindex(pd.Index(users, name=rates.index.name))
    rates.columns = list(CATEGORIES)
    return rates


# -- the audit ---------------------------------------------------------------------------------------
class HallucinationConfig(AuditConfig):
    """Settings of the ``hallucination`` audit (its ``max_users`` defaults to 100).

    Parameters
    ----------
    n_outputs : int
        Free-text beams (and constrained items) per user.
    groundings : tuple of {"exact", "tfidf", "embedding"}
        How free text is matched to the catalog, each one setting (``embedding`` only when a
        text encoder is available offline).
    constrained : bool
        Also measure constrained decoding (the mitigation).
    max_chars, scaffolding : int, tuple of str
        The malformed rule (:func:`malformed_reason`): the longest well-formed output, and the
        scaffolding phrases that mark an output as malformed.
    """

    max_users: PositiveInt | None = 100
    n_outputs: PositiveInt = 10
    groundings: tuple[Literal["exact", "tfidf", "embedding"], ...] = ("exact", "tfidf", "embedding")
    constrained: bool = True
    max_chars: PositiveInt = 200
    scaffolding: tuple[str, ...] = DEFAULT_SCAFFOLDING


@register_audit
class HallucinationAudit(Audit):
    """How often a free-text LLM recommender names items that do not exist (or are not answers,
    or are old or repeated), per grounding, and what constrained decoding removes."""

    name: ClassVar[str] = "hallucination"
    dimension: ClassVar[str] = "factuality"
    description: ClassVar[str] = (
        "free-text LLM outputs that name no catalog item, near misses, malformed "
        "answers, seen/repeated items; constrained decoding as the mitigation"
    )
    needs: ClassVar[str] = "a model that writes item titles as free text (generate_titles), e.g. llm_generative"
    config: HallucinationConfig
    config_class = HallucinationConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        model = inputs.model
        if not (callable(getattr(model, "generate_titles", None)) and callable(getattr(model, "grounder", None))):
            name = getattr(model, "name", "") or type(model).__name__
            return (
                f"{name} returns catalog items by index (it has no generate_titles method); it cannot "
                "produce free text, so it cannot hallucinate items"
            )
        if not len(inputs.eval_set):
            return f"no users to audit in part {inputs.part!r}"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        # an LLM recommender (_why_not checked): generate_titles and grounder are not on Recommender
        model: Any = inputs.model
        queries = inputs.queries
        histories = [queries.histories.row(i) for i in range(len(queries))]
        positions = np.arange(len(queries))  # per-user rates by row: cold-start users share user index -1
        warnings: list[str] = []
        tables: dict[str, pd.DataFrame] = {}

        generated = model.generate_titles(queries, c.n_outputs)
        texts = [[t for t, _ in row] for row in generated]
        scores = np.array([s for row in generated for _, s in row], dtype=np.float64)
        encoder_note = None
        for mode in dict.fromkeys(c.groundings):
            if mode == "embedding":
                encoder, encoder_note = _offline_encoder(model)
                if encoder is None:
                    warnings.append(encoder_note)
                    continue
                ground = model.grounder("embedding", encoder=encoder)
            else:
                ground = model.grounder(mode)
            table = classify_generations(texts, ground, histories, max_chars=c.max_chars, scaffolding=c.scaffolding)
            table["score"] = scores
            tables[f"unconstrained/{mode}"] = table

        if c.constrained:
            if _accepts_decoding(model):
                top, _ = model.recommend_with_stats(queries, c.n_outputs, exclude_seen=False, decoding="constrained")
                titles = model.titles() if callable(getattr(model, "titles", None)) else None
                table = classify_items([top.row(i) for i in range(len(top))], histories, titles=titles)
                table["score"] = np.concatenate(
                    [top.scores[i][top.items[i] >= 0] for i in range(len(top))] or [np.empty(0)]
                )
                tables["constrained"] = table
            else:
                warnings.append(
                    f"constrained decoding not measured: {getattr(model, 'name', type(model).__name__)}"
                    ".recommend_with_stats takes no decoding argument"
                )

        estimates: dict[str, Estimate] = {}
        rows = []
        per_user: dict[str, pd.DataFrame] = {}
        for setting, table in tables.items():
            pooled = category_rates(table)
            per_user[setting] = rates = per_user_rates(table, users=positions)
            for cat in CATEGORIES:
                lo, hi = bootstrap_ci(rates[cat].to_numpy(), n_boot=c.n_boot, seed=c.seed)
                rows.append(
                    {
                        "setting": setting,
                        "category": cat,
                        "rate": pooled[cat],
                        "ci_low": lo,
                        "ci_high": hi,
                        "n_outputs": len(table),
                        "n_users": int(rates[cat].notna().sum()),
                    }
                )
                estimates[f"{RATE_NAMES[cat]} [{setting}]"] = Estimate(
                    pooled[cat],
                    lo,
                    hi,
                    int(rates[cat].notna().sum()),
                    description=f"share of outputs that are {cat.replace('_', '-')} ({setting}; CI over users)",
                )
        rate_table = pd.DataFrame(
            rows, columns=["setting", "category", "rate", "ci_low", "ci_high", "n_outputs", "n_users"]
        )

        deployed = _deployed_setting(model)
        if deployed in tables:
            for cat in CATEGORIES:
                est = estimates[f"{RATE_NAMES[cat]} [{deployed}]"]
                estimates[RATE_NAMES[cat]] = Estimate(
                    est.value, est.ci_low, est.ci_high, est.n, description=f"{est.description}; the model as configured"
                )
        elif deployed is not None:
            warnings.append(
                f"the model's own setting {deployed!r} was not measured (see groundings), so the "
                "headline rates without a [setting] suffix are missing"
            )

        reference = _reference_setting(model, tables)
        if reference is not None and "constrained" in tables:
            diff = _off_catalog(per_user[reference]) - _off_catalog(per_user["constrained"])
            lo, hi = bootstrap_ci(diff.to_numpy(), n_boot=c.n_boot, seed=c.seed)
            before = _off_catalog(category_rates(tables[reference]))
            after = _off_catalog(category_rates(tables["constrained"]))
            estimates["mitigation_effect"] = Estimate(
                before - after,
                lo,
                hi,
                int(diff.notna().sum()),
                description="drop in the share of outputs that are not exactly a catalog title (malformed + "
                "hallucinated + near miss) from free text to constrained decoding (CI over users, "
                "paired)",
            )

        frames = [t.assign(setting=s) for s, t in tables.items()]
        outputs = (
            pd.concat(frames, ignore_index=True)
            if frames
            else _frame([]).assign(score=np.empty(0), setting=pd.Series([], dtype=object))
        )
        outputs = outputs.rename(columns={"user": "row"})
        outputs["user"] = np.asarray(queries.users)[outputs["row"].to_numpy(np.int64)]
        outputs["text"] = outputs["text"].str.slice(0, _MAX_TEXT)
        outputs["category"] = outputs["category"].astype(str)
        outputs = outputs[["setting", "row", "user", "rank", "text", "category", "detail", "item", "score"]]

        plots = (
            (
                Plot(
                    "bar",
                    "rates",
                    "category",
                    "rate",
                    "output categories per decoding/grounding setting (95% CI)",
                    series="setting",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    x_label="category",
                    y_label="share of outputs",
                ),
            )
            if len(rate_table)
            else ()
        )
        summary = _summary(rate_table, reference)
        settings = {
            "settings_measured": list(tables),
            "deployed_setting": deployed,
            "n_outputs": c.n_outputs,
            "embedding_grounding": encoder_note
            or ("measured" if "unconstrained/embedding" in tables else "not requested"),
        }
        return self._result(
            estimates,
            evidence={"outputs": outputs, "rates": rate_table},
            settings=settings,
            warnings=tuple(warnings),
            plots=plots,
            summary=summary,
        )


def _offline_encoder(model):
    """(encoder, None) when the model's text encoder loads without downloading, else (None, why)."""
    name = getattr(getattr(model, "config", None), "encoder", None)
    if not name:
        return None, "embedding grounding skipped: the model names no text encoder"
    try:
        from trustrec.models.llm import load_text_encoder

        return load_text_encoder(name, download=False, progress=False), None
    except Exception as exc:  # noqa: BLE001  # a missing extra, a checkpoint not cached here, a damaged folder: all mean "skip"
        return None, (
            f"embedding grounding skipped: text encoder {name!r} is not available offline "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        )


def _accepts_decoding(model) -> bool:
    method = getattr(model, "recommend_with_stats", None)
    if not callable(method):
        return False
    try:
        return "decoding" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _deployed_setting(model) -> str | None:
    config = getattr(model, "config", None)
    decoding = getattr(config, "decoding", None)
    if decoding == "constrained":
        return "constrained"
    grounding = getattr(config, "grounding", None)
    return f"unconstrained/{grounding}" if grounding else None


def _reference_setting(model, tables) -> str | None:
    """The free-text setting the mitigation is compared with (any gives the same off-catalog
    share): the model's own grounding when it was measured, else the last measured one."""
    own = f"unconstrained/{getattr(getattr(model, 'config', None), 'grounding', '')}"
    if own in tables:
        return own
    free = [s for s in tables if s.startswith("unconstrained/")]
    return free[-1] if free else None


def _off_catalog(rates):
    """Malformed + hallucinated + near miss: the same under every grounding (a fallback only
    moves outputs from hallucinated to near miss), so the mitigation does not depend on it."""
    return rates["malformed"] + rates["hallucinated"] + rates["near_miss"]


def _summary(rates: pd.DataFrame, reference: str | None) -> str:
    if not len(rates):
        return "no setting measured"
    value = rates.set_index(["setting", "category"])["rate"]
    parts = [
        f"{setting}: {value[(setting, 'hallucinated')]:.1%} hallucinated, "
        f"{value[(setting, 'malformed')]:.1%} malformed, {value[(setting, 'valid')]:.1%} valid"
        for setting in dict.fromkeys(rates["setting"])
    ]
    text = "; ".join(parts)
    if reference is not None and "constrained" in set(rates["setting"]):
        text += " (constrained decoding names only catalog items)"
    return text
