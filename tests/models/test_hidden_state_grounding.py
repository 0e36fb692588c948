"""HiddenStateGrounder (BIGRec grounding) on the tiny random Llama-architecture checkpoint: title
embeddings against a manual forward pass, L2 ranking against brute force, the popularity
re-weighting against hand-computed scores, gamma tuning on a constructed case."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trustrec.models.llm import HiddenStateGrounder, build_tiny_random, load_causal_lm  # noqa: E402
from trustrec.models.llm._grounding import normalize_popularity, popularity_reweight  # noqa: E402

TITLES = [
    "Toy Story",
    "GoldenEye",
    "Four Rooms",
    "Get Shorty",
    "Toy Story",  # duplicate of item 0
    "",  # empty title: never returned
    "Copycat",
    "Shanghai Triad (Yao a yao yao dao waipo qiao)",
    "Twelve Monkeys",
    "Babe",
]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    build_tiny_random(folder)
    model, tokenizer = load_causal_lm(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def grounder(lm):
    return HiddenStateGrounder(*lm, TITLES, batch_size=3)


def manual(lm, text):
    model, tokenizer = lm
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states[-1][0, -1].float().numpy()


def test_title_embedding_equals_a_manual_forward_pass(lm, grounder):
    emb = grounder.item_embeddings
    assert emb.shape[0] == len(TITLES)
    for i, title in enumerate(TITLES):
        if title:
            np.testing.assert_allclose(emb[i], manual(lm, title), rtol=1e-4, atol=1e-5)
    assert np.isnan(emb[5]).all() and grounder.empty_items.tolist() == [5]
    np.testing.assert_array_equal(emb[0], emb[4])  # duplicate titles: bit-identical


def test_embed_matches_the_titles_and_empty_text_is_nan(lm, grounder):
    texts = ["Babe", "", "a much longer generated text about a film", "Get Shorty"]
    emb = grounder.embed(texts)
    assert np.isnan(emb[1]).all()
    for i in (0, 2, 3):
        np.testing.assert_allclose(emb[i], manual(lm, texts[i]), rtol=1e-4, atol=1e-5)


def test_grounding_returns_catalog_items_only_and_never_excluded(grounder):
    texts = ["Toy Story", "something that is not a title", "Babe", "   "]
    items, scores = grounder.rank(texts, 20, exclude=[[0], [], [9, 8], []])
    assert items.shape == scores.shape == (4, 20)
    valid = items >= 0
    assert np.all(items[valid] < len(TITLES)) and not np.any(items == 5)
    assert valid[:3].sum(axis=1).tolist() == [8, 9, 7]  # 9 embeddable items minus exclusions
    assert 0 not in items[0] and not {8, 9} & set(items[2].tolist())
    assert not valid[3].any() and np.all(np.isinf(scores[3]))  # empty text: grounded to nothing
    assert np.all(np.isinf(scores[~valid]))
    assert np.all(np.diff(scores[valid[:, 0]][:, :7], axis=1) >= 0)


def test_exact_title_grounds_to_itself_and_duplicates_tie_to_the_lowest_index(grounder):
    items, scores = grounder.rank(["Toy Story", "Four Rooms"], 3)
    assert items[0, :2].tolist() == [0, 4] and scores[0, 0] == scores[0, 1] == 0
    assert items[1, 0] == 2


def test_gamma_zero_is_brute_force_l2(lm, grounder):
    texts = ["Toy", "GoldenEye 2", "the monkeys"]
    items, scores = grounder.rank(texts, 9)
    cat = np.stack([manual(lm, t) if t else np.full(64, np.nan) for t in TITLES]).astype(np.float64)
    for r, text in enumerate(texts):
        d = np.linalg.norm(cat - manual(lm, text).astype(np.float64), axis=1)
        d[5] = np.inf
        expected = np.argsort(d, kind="stable")[:9]
        dist_of_ranked = d[items[r]]
        assert np.all(np.diff(dist_of_ranked) >= -1e-4)  # ordered by true L2 up to float rounding
        assert set(items[r].tolist()) == set(expected.tolist())
        span = d[np.isfinite(d)].max() - d.min()
        np.testing.assert_allclose(scores[r], (dist_of_ranked - d.min()) / span, atol=1e-4)


def test_raw_distances_are_cdist(lm, grounder):
    d = grounder.distances(["Babe"])
    assert np.isinf(d[0, 5]) and d[0, 9] == pytest.approx(0, abs=1e-4)
    expected = np.linalg.norm(manual(lm, "Copycat") - manual(lm, "Babe"))
    assert d[0, 6] == pytest.approx(expected, rel=1e-4)


def test_popularity_reweight_by_hand():
    pop = np.array([0, 5, 10, 10])  # x = 0, 0.5, 1, 1
    np.testing.assert_allclose(normalize_popularity(pop), [0, 0.5, 1, 1])
    dist = np.array([[1.0, 1.2, 1.5, np.inf]])
    # gamma = 2: 1 * 1.0, 1.2 / 1.5**2 = 0.5333.., 1.5 / 2**2 = 0.375
    np.testing.assert_allclose(popularity_reweight(dist, pop, 2.0), [[1.0, 1.2 / 2.25, 0.375, np.inf]])
    np.testing.assert_array_equal(popularity_reweight(dist, pop, 0.0), dist)
    np.testing.assert_array_equal(normalize_popularity([3, 3]), [0, 0])
    with pytest.raises(ValueError, match="gamma"):
        popularity_reweight(dist, pop, -1)


def constructed(lm, normalize):
    """A grounder whose distances are set by hand (the cached catalog and the text embedding)."""
    g = HiddenStateGrounder(*lm, ["a", "b", "c"], normalize_distance=normalize)
    g._catalog = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 6.0]])
    g._inverse = np.array([0, 1, 2])
    text = torch.tensor([[0.0, 1.0]])  # distances 1, sqrt(10) = 3.162, 5

    def embed(texts):
        has = np.array([bool(t.strip()) for t in texts], dtype=bool)
        return text.repeat(int(has.sum()), 1), has

    g._embed_tensor = embed
    return g


def test_gamma_moves_popular_items_up_as_the_formula_says(lm):
    pop = np.array([0.0, 1.0, 4.0])  # x = 0, 0.25, 1
    g = constructed(lm, normalize=False)
    items, scores = g.rank(["q"], 3, popularity=pop, gamma=0.0)
    assert items[0].tolist() == [0, 1, 2]
    # gamma = 2: 1, sqrt(10) / 1.5625 = 2.0239, 5 / 4 = 1.25
    items, scores = g.rank(["q"], 3, popularity=pop, gamma=2.0)
    assert items[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(scores[0], [1.0, 1.25, np.sqrt(10) / 1.5625])
    # gamma = 3: 1, sqrt(10) / 1.953125 = 1.619, 5 / 8 = 0.625: the most popular item first
    items, scores = g.rank(["q"], 3, popularity=pop, gamma=3.0)
    assert items[0].tolist() == [2, 0, 1]
    np.testing.assert_allclose(scores[0], [0.625, 1.0, np.sqrt(10) / 1.953125])


def test_normalized_distances_keep_the_nearest_item_first(lm):
    pop = np.array([0.0, 1.0, 4.0])
    g = constructed(lm, normalize=True)  # normalised distances 0, (sqrt(10) - 1) / 4 = 0.5406, 1
    items, scores = g.rank(["q"], 3, popularity=pop, gamma=1.0)
    # gamma = 1: 0, 0.5406 / 1.25 = 0.4325, 1 / 2 = 0.5
    assert items[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[0], [0.0, (np.sqrt(10) - 1) / 4 / 1.25, 0.5])


def test_tune_gamma_picks_the_best_gamma(lm):
    pop = np.array([0.0, 1.0, 4.0])
    g = constructed(lm, normalize=False)
    # every text's target is item 2: first only once gamma >= log(5) / log(2) = 2.32
    gamma, table = g.tune_gamma(["q"] * 3, [2, 2, 2], pop, grid=(4, 0, 1, 2, 3, 8), k=1, metric="hit")
    assert gamma == 3.0
    assert table["gamma"].tolist() == [0, 1, 2, 3, 4, 8]
    assert table["value"].tolist() == [0, 0, 0, 1, 1, 1]
    # target item 0: best at small gamma, ties go to the smallest
    gamma, table = g.tune_gamma(["q", "q"], [0, 0], pop, grid=(0, 0.5, 1, 2), k=3)
    assert gamma == 0.0 and table["value"].tolist()[:2] == [1.0, 1.0]
    # NDCG: item 1 ranks second at gamma 0 (1 / log2 3), third at gamma 2
    gamma, table = g.tune_gamma(["q", ""], [1, 1], pop, grid=(0, 2), k=3)
    np.testing.assert_allclose(table["value"], [0.5 / np.log2(3), 0.5 / np.log2(4)])  # the empty text misses
    assert gamma == 0.0
