"""User constraints (parser, semantics, the never-a-violator guarantee) and platform rules."""

import re
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, QueryBatch, Ragged, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate import (
    ConstrainedRecommender,
    ControlCatalog,
    Different,
    ExcludeGroups,
    IncludeGroups,
    PlatformRules,
    RuleEnforcedRecommender,
    SimilarTo,
    YearRange,
    allowed_items,
    enforce_rules,
    parse_constraint,
)
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import PrecomputedScores, RecommenderChecks

from ._data import genre_toy

QUIET = FitOptions(progress=False)
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Children's"]


def catalog_frames(n_users=60, n_items=48, per_user=8, seed=0):
    """Items with a multi-valued genre (some missing), a year column in mixed formats (some
    missing) and titles (one shared by two items, one with a trailing article)."""
    rng = np.random.default_rng(seed)
    genre = ["|".join(sorted({GENRES[i % 6], GENRES[(i * 5 + 1) % 6]})) if i % 11 else None for i in range(n_items)]
    year = [str(1930 + (i * 7) % 70) if i % 3 else f"01-Jan-{1930 + (i * 7) % 70}" for i in range(n_items)]
    year[5] = "unknown"
    titles = [f"Film {i}" for i in range(n_items)]
    titles[1], titles[2], titles[3] = "Godfather, The", "Babe", "Babe"
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(n_items)], "title": titles, "genre": genre, "release_year": year}
    )
    rows = [
        (f"u{u}", f"i{i}", t)
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return inter, items


@pytest.fixture(scope="module")
def data():
    inter, items = catalog_frames()
    ds = Dataset.from_frame(inter, name="control", items=items)
    return ds, split_leave_one_out(ds)


@pytest.fixture(scope="module")
def catalog(data):
    return ControlCatalog.from_items(data[0].items)


# -- an independent oracle, straight from the raw items table ---------------------------------------------
def _raw_genres(ds):
    return [set() if g is None or pd.isna(g) else set(str(g).split("|")) for g in ds.items["genre"]]


def _raw_years(ds):
    out = []
    for v in ds.items["release_year"]:
        m = re.search(r"\d{4}", str(v))
        out.append(int(m.group()) if m else None)
    return out


def oracle_ok(constraint, item, history, genres, years) -> bool:
    g = genres[item]
    if isinstance(constraint, ExcludeGroups):
        return bool(g) and not (g & set(constraint.groups))
    if isinstance(constraint, IncludeGroups):
        return bool(g & set(constraint.groups))
    if isinstance(constraint, YearRange):
        y = years[item]
        return (
            y is not None
            and (constraint.low is None or y >= constraint.low)
            and (constraint.high is None or y <= constraint.high)
        )
    if isinstance(constraint, SimilarTo):
        if item in constraint.items or not g:
            return False
        return any(
            len(g & genres[a]) / len(g | genres[a]) >= constraint.min_similarity for a in constraint.items if genres[a]
        )
    if isinstance(constraint, Different):
        counts = Counter(x for h in history for x in genres[h])
        if not g:
            return False
        if not counts:
            return True
        names = sorted(counts, key=lambda x: (-counts[x], sorted(set().union(*genres)).index(x)))
        return not (g & set(names[: constraint.n_groups]))
    raise AssertionError(constraint)


# -- the parser -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("no horror", [ExcludeGroups(("Horror",))]),
        ("only films before 1980", [YearRange(None, 1979)]),
        ("something different", [Different(1)]),
        ("comedy but no horror", [IncludeGroups(("Comedy",)), ExcludeGroups(("Horror",))]),
        ("no horror or comedy", [ExcludeGroups(("Horror", "Comedy"))]),
        ("only kids films between 1970 and 1980", [YearRange(1970, 1980), IncludeGroups(("Children's",))]),
        ("science fiction since 1995", [YearRange(1995, None), IncludeGroups(("Sci-Fi",))]),
        ("dramas from the 80s", [YearRange(1980, 1989), IncludeGroups(("Drama",))]),
        ("after 1990, no action", [YearRange(1991, None), ExcludeGroups(("Action",))]),
        ("not before 1990", [YearRange(1990, None)]),
        ("until 1960", [YearRange(None, 1960)]),
        ("in 1995", [YearRange(1995, 1995)]),
        ("surprise me", [Different(1)]),
        ("", []),
    ],
)
def test_parser_reads_the_documented_phrases(catalog, text, expected):
    parsed = parse_constraint(text, catalog)
    assert sorted(parsed.constraints, key=repr) == sorted(expected, key=repr)
    assert parsed.complete


def test_parser_finds_titles_and_reports_what_it_cannot_read(catalog):
    godfather = parse_constraint("more like the godfather", catalog)
    assert godfather.constraints == (SimilarTo((1,), "Godfather, The", 0.5),)
    babe = parse_constraint("More like Babe, but no drama", catalog)  # a shared title: both items anchor
    assert set(babe.constraints) == {SimilarTo((2, 3), "Babe", 0.5), ExcludeGroups(("Drama",))}
    missing = parse_constraint("more like Zorro Returns", catalog)
    assert not missing.constraints and "no catalog title matches" in missing.unparsed[0]
    vague = parse_constraint("old movies with explosions, no horror", catalog)
    assert vague.constraints == (ExcludeGroups(("Horror",)),)
    assert len(vague.unparsed) == 1 and "vague (old)" in vague.unparsed[0] and "explosions" in vague.unparsed[0]
    no_years = ControlCatalog.from_items(catalog_frames()[1].drop(columns=["release_year"]))
    assert "no year column" in parse_constraint("before 1980", no_years).unparsed[0]


def test_parser_never_raises_on_noise(catalog):
    rng = np.random.default_rng(1)
    alphabet = list("abcdefghij klmnopqrstuvwxyz0123456789,.;!?'-()[]{}|\\\"\u2019é")
    for _ in range(300):
        text = "".join(rng.choice(alphabet, rng.integers(0, 60)))
        parse_constraint(text, catalog)  # no exception is the test
    parse_constraint("more like", catalog)
    parse_constraint("between 2000 and 1990", catalog)


def test_unverifiable_items_satisfy_nothing(data, catalog):
    ds = data[0]
    no_genre = ds.items["genre"].isna().to_numpy()
    hist = Ragged.from_rows([[]])
    for c in (ExcludeGroups(("Horror",)), IncludeGroups(tuple(GENRES)), Different(1), SimilarTo((0,), "Film 0", 0.01)):
        assert not np.broadcast_to(c.mask(catalog, hist), (1, ds.n_items))[0, no_genre].any()
    assert not YearRange(None, 3000).mask(catalog, hist)[5]  # "unknown" year
    assert YearRange(None, 3000).mask(catalog, hist)[0]  # "01-Jan-1930" is read
    assert not IncludeGroups(("Western",)).mask(catalog, hist).any()  # unknown group: nothing
    assert (ExcludeGroups(("Western",)).mask(catalog, hist) == ~no_genre).all()  # vacuous exclusion
    assert not SimilarTo((2,), "Babe").mask(catalog, hist)[2]  # never the anchor itself


def test_different_avoids_the_users_most_frequent_genre(catalog):
    hist = Ragged.from_rows([[0, 6, 12], []])  # 0: no genre; 6, 12: Action|Comedy: tie, Action first
    mask = Different(1).mask(catalog, hist)
    m = catalog.membership
    action = catalog.group_index("Action")
    assert not (mask[0] & m[:, action]).any() and (mask[0] & m[:, catalog.group_index("Drama")]).any()
    assert (mask[1] == m.any(1)).all()  # no history: any grouped item


# -- the guarantee ----------------------------------------------------------------------------------------------
def _random_text(rng, ds) -> str:
    parts = []
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 8)
        g = rng.choice([*GENRES, "western"]).lower()
        y = int(rng.integers(1920, 2005))
        parts.append(
            [
                f"no {g}",
                f"only {g}",
                f"before {y}",
                f"after {y}",
                f"between {y} and {y + rng.integers(0, 30)}",
                f"more like {ds.items['title'].iloc[rng.integers(0, ds.n_items)]}",
                "something different",
                f"the {rng.integers(3, 10)}0s",
            ][kind]
        )
    return ", ".join(parts)


@pytest.mark.parametrize("mode", ["candidates", "post_filter"])
def test_constraint_filtering_never_returns_a_violating_item(data, mode):
    """Property-style: 400 random requests (one to three parts, some naming a genre the catalog
    lacks), a base with random scores, every returned item checked against an oracle computed
    from the raw items table, and every list as full as the allowed items permit."""
    ds, split = data
    rng = np.random.default_rng(7)
    genres, years = _raw_genres(ds), _raw_years(ds)
    base = PrecomputedScores(rng.random((ds.n_users, ds.n_items))).fit(split, QUIET)
    wrapper = ConstrainedRecommender.from_fitted(base, split, mode=mode, n_candidates=ds.n_items)
    q = split.eval_set("test").queries
    n = 400
    rows = rng.integers(0, len(q), n)
    texts = [_random_text(rng, ds) for _ in range(n)]
    asked = QueryBatch(q.users[rows], q.histories.take(rows), None, tuple(texts))
    top, report = wrapper.recommend_with_report(asked, 10)
    parsed = wrapper.parse(texts)
    checked = unsat = 0
    for i in range(n):
        items = top.row(i)
        history = asked.histories.row(i)
        for item in items:
            for c in parsed[i].constraints:
                assert oracle_ok(c, int(item), history, genres, years), (texts[i], c, item)
            checked += 1
        expected_allowed = [
            j
            for j in range(ds.n_items)
            if j not in set(history) and all(oracle_ok(c, j, history, genres, years) for c in parsed[i].constraints)
        ]
        assert len(items) == min(10, len(expected_allowed))  # filled when items exist
        unsat += bool(report.unsatisfiable[i])
        if report.unsatisfiable[i]:
            assert len(items) == 0
    assert checked > 1000 and 0 < unsat < n  # both cases were exercised
    assert (report.n_constraints > 0).mean() > 0.9


def test_unsatisfiable_and_unparsed_requests_are_reported_not_raised(data):
    _ds, split = data
    model = make_model("most_popular").fit(split, QUIET)
    wrapper = ConstrainedRecommender.from_fitted(model, split)
    q = split.eval_set("test").queries[:3]
    asked = q.with_texts(["only horror, no horror", "old stuff", None])
    top, report = wrapper.recommend_with_report(asked, 5)
    assert report.unsatisfiable.tolist() == [True, False, False]
    assert len(top.row(0)) == 0
    assert report.n_unparsed.tolist() == [0, 1, 0] and "vague" in report.unparsed[1]
    np.testing.assert_array_equal(top.items[1:], model.recommend(q[1:], 5).items)  # nothing understood: as is


def test_an_llm_style_base_still_sees_the_request_text(data):
    ds, split = data
    seen = {}

    class Recorder(PrecomputedScores):
        def recommend(self, queries, k=10, *, exclude_seen=True):
            seen["texts"], seen["cands"] = queries.texts, queries.candidates
            return super().recommend(queries, k, exclude_seen=exclude_seen)

    base = Recorder(np.random.default_rng(0).random((ds.n_users, ds.n_items))).fit(split, QUIET)
    wrapper = ConstrainedRecommender.from_fitted(base, split)
    q = split.eval_set("test").queries[:2].with_texts(["no horror", "no horror"])
    wrapper.recommend(q, 5)
    assert seen["texts"] == ("no horror", "no horror")
    allowed = ExcludeGroups(("Horror",)).mask(wrapper.catalog(), q.histories)
    assert set(seen["cands"].row(0)) == set(np.flatnonzero(allowed))


def test_allowed_items_checks_lengths(catalog):
    with pytest.raises(ValueError, match="histories"):
        allowed_items([None, None], catalog, Ragged.from_rows([[]]))


def test_wrapper_refuses_a_mismatched_base(data):
    ds, split = data
    other = make_model("most_popular").fit(genre_toy(), QUIET)
    with pytest.raises(ConfigError, match="items"):
        ConstrainedRecommender.from_fitted(other, split)
    with pytest.raises(DataError, match="year_column"):
        ControlCatalog.from_items(ds.items, year_column="nope")


# -- platform rules ---------------------------------------------------------------------------------------------
def test_enforce_rules_by_hand():
    items = np.array([[0, 5, 6], [1, 6, 5], [2, 5, 6]])
    scores = np.array([[3.0, 2.0, 1.0], [9.0, 5.0, 1.0], [5.0, 4.9, 0.0]])
    rules = PlatformRules(np.array([2]), max_exposure_share=0.34)  # cap = floor(0.34 * 3) = 1
    top = enforce_rules(items, scores, rules, 2, 7)
    # column 0: user 2's item 2 is blocked; users 0 and 1 get items 0 and 1.
    # column 1: users 0 and 2 both want item 5; user 2 scores it 1.0 (min-max over its valid
    # candidates 5 and 6), user 0 only 0.5, so user 2 wins; user 1 gets item 6.
    # column 2: item 6 is at its cap, so users 0 and 2 get nothing more.
    assert top.items.tolist() == [[0, -1], [1, 6], [5, -1]]
    assert top.scores[1].tolist() == [9.0, 5.0] and top.scores[2, 0] == 4.9


def test_enforce_rules_never_breaks_a_rule_and_fills_when_it_can():
    rng = np.random.default_rng(3)
    for trial in range(60):
        n, n_items, width, k = rng.integers(5, 40), rng.integers(5, 60), rng.integers(3, 30), rng.integers(1, 8)
        width = min(width, n_items)
        items = np.stack([rng.permutation(n_items)[:width] for _ in range(n)])
        scores = np.sort(rng.random((n, width)), 1)[:, ::-1]  # ranked lists: scores fall
        rules = PlatformRules(
            rng.choice(n_items, rng.integers(0, 4), replace=False), max_exposure_share=float(rng.uniform(0.05, 1.0))
        )
        top = enforce_rules(items, scores, rules, k, n_items)
        v = rules.violations(top.items, n_items)
        assert v["violating_slots"] == 0, trial
        shown = np.where(top.items >= 0, top.scores, -1e300)
        assert (np.diff(shown, axis=1)[top.items[:, 1:] >= 0] <= 0).all()  # order kept
        free = PlatformRules(rules.blocked)  # no cap: only blocking
        full = enforce_rules(items, scores, free, k, n_items)
        unblocked = (~np.isin(items, rules.blocked)).sum(1)
        assert ((full.items >= 0).sum(1) == np.minimum(k, unblocked)).all()


def test_platform_rules_violations_and_ids(data):
    ds, _ = data
    rules, unknown = PlatformRules.from_ids(ds, ["i1", "nope", "i2"], max_exposure_share=0.5)
    assert rules.blocked.tolist() == [1, 2] and unknown == ["nope"]
    top = np.array([[1, 3, 4], [3, 4, -1], [3, 5, 6], [3, 2, 7]])
    v = rules.violations(top, ds.n_items)
    assert v["cap"] == 2 and v["blocked_slots"] == 2 and v["lists_with_blocked"] == 2
    assert v["items_over_cap"] == 1 and v["excess_slots"] == 2 and v["violating_slots"] == 4
    with pytest.raises(ConfigError, match="max_exposure_share"):
        PlatformRules(max_exposure_share=1.5)


def test_rule_enforced_wrapper_blocks_and_caps(data):
    ds, split = data
    base = make_model("most_popular").fit(split, QUIET)
    q = split.eval_set("test").queries
    popular = base.recommend(q, 3).items[0, :2]
    wrapper = RuleEnforcedRecommender.from_fitted(
        base, split, blocked_items=(*tuple(ds.item_ids[popular]), "x"), max_exposure_share=0.2
    )
    top = wrapper.recommend(q, 5).items
    v = wrapper.rules.violations(top, ds.n_items)
    assert v["violating_slots"] == 0 and not np.isin(top, popular).any()
    assert np.bincount(top[top >= 0]).max() <= wrapper.rules.cap(len(q))
    assert wrapper.unknown_blocked_ == ["x"]


# -- the wrappers pass the recommender suite ------------------------------------------------------------------------
class _GenreData:
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = genre_toy()
        return ds, split_leave_one_out(ds, short_users="train")


class TestConstrainedCandidates(_GenreData, RecommenderChecks):
    component = ConstrainedRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {"base": {"name": "item_knn", "params": {"k": 10}}, "mode": "candidates"}
    ]


class TestConstrainedPostFilter(_GenreData, RecommenderChecks):
    component = ConstrainedRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {"base": {"name": "most_popular"}, "mode": "post_filter", "n_candidates": 8}
    ]


class TestRuleEnforced(_GenreData, RecommenderChecks):
    # caps are over the users of one call, so batched != unbatched with a cap: blocking only here
    component = RuleEnforcedRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {"base": {"name": "item_knn", "params": {"k": 10}}, "blocked_items": ("3", "7", "nope")}
    ]


def test_saved_constrained_model_loads_by_name(data, tmp_path):
    _ds, split = data
    model = ConstrainedRecommender(base={"name": "most_popular"}).fit(split, QUIET)
    q = split.eval_set("test").queries[:4].with_texts(["no horror"] * 4)
    loaded = Recommender.load(model.save(tmp_path / "c"))
    np.testing.assert_array_equal(loaded.recommend(q, 5).items, model.recommend(q, 5).items)
