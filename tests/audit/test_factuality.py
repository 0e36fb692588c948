"""The hallucination audit: the output classifier on crafted texts (every category, the priority
order, hand-computed rates) and the audit on the tiny random generative checkpoint."""

import json

import numpy as np
import pandas as pd
import pytest

from trustrec.audit import AuditResult, audit_class
from trustrec.audit._factuality import (
    CATEGORIES,
    HallucinationAudit,
    _offline_encoder,
    category_rates,
    classify_generations,
    classify_items,
    malformed_reason,
    per_user_rates,
)
from trustrec.data import split_leave_one_out
from trustrec.models import FitOptions, make_model
from trustrec.testing import toy_dataset


@pytest.fixture(autouse=True)
def _offline(tmp_path_factory, monkeypatch):
    """No downloads and no developer model folders: an encoder is found only where a test puts it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRUSTREC_MODELS", raising=False)


# -- the classifier ------------------------------------------------------------------------------------
EXACT = {"toy story": 0, "heat": 1, "alien": 2, "recommended for you": 3}


def fake_ground(text):
    key = " ".join(text.casefold().split())
    if key in EXACT:
        return EXACT[key], "exact"
    if key in ("aliens", "heat 2") or key.startswith("history:"):
        return (2 if key == "aliens" else 1), "near"
    return -1, "none"


OUTPUTS = [
    # user 0, history [1]
    [
        ("Toy Story", "valid", "exact", 0),
        ("Heat", "already_seen", "exact", 1),
        ("toy  story", "repeated", "exact", 0),
        ("Aliens", "near_miss", "near", 2),
        ("Alien", "repeated", "exact", 2),  # the near miss above already named item 2
        ("  ", "malformed", "empty", -1),
        ("The Matrix", "hallucinated", "none", -1),
        ("heat", "already_seen", "exact", 1),
    ],  # seen beats repeated
    # user 1, empty history
    [
        ("Recommend: Heat", "malformed", "scaffolding", -1),
        ("Heat\nAlien", "malformed", "multi_line", -1),
        ("1. Heat 2. Alien", "malformed", "list", -1),
        ("!!!", "malformed", "no_alnum", -1),
        ("x" * 250, "malformed", "too_long", -1),
        ("Recommended for You", "valid", "exact", 3),  # a real title is never malformed
        ("Heat 2", "near_miss", "near", 1),
        ("History: Heat", "malformed", "scaffolding", -1),
    ],  # malformed beats near miss
]


def classified():
    texts = [[o[0] for o in row] for row in OUTPUTS]
    return classify_generations(texts, fake_ground, [[1], []], users=[10, 11])


def test_classify_generations_covers_every_category_in_priority_order():
    table = classified()
    expected = [o for row in OUTPUTS for o in row]
    assert list(table.columns) == ["user", "rank", "text", "category", "detail", "item"]
    assert table["category"].astype(str).tolist() == [o[1] for o in expected]
    assert table["detail"].tolist() == [o[2] for o in expected]
    assert table["item"].tolist() == [o[3] for o in expected]
    assert table["user"].tolist() == [10] * 8 + [11] * 8
    assert table["rank"].tolist() == list(range(1, 9)) * 2
    assert set(table["category"].astype(str)) == set(CATEGORIES)


def test_rates_are_hand_computed_shares():
    table = classified()
    rates = category_rates(table)
    expected = {"malformed": 7, "hallucinated": 1, "near_miss": 2, "already_seen": 2, "repeated": 2, "valid": 2}
    assert rates.to_dict() == pytest.approx({k: v / 16 for k, v in expected.items()})
    assert rates.sum() == pytest.approx(1.0)
    per_user = per_user_rates(table, users=[10, 11, 12])
    assert per_user.loc[10].tolist() == pytest.approx([1 / 8, 1 / 8, 1 / 8, 2 / 8, 2 / 8, 1 / 8])
    assert per_user.loc[11].tolist() == pytest.approx([6 / 8, 0, 1 / 8, 0, 0, 1 / 8])
    assert per_user.loc[12].isna().all()  # no output: NaN, not zero


def test_malformed_rule_details():
    assert malformed_reason("Heat") is None
    assert malformed_reason("2001: A Space Odyssey") is None
    assert malformed_reason("Ocean's 11") is None
    assert malformed_reason("Heat\n") is None  # trailing whitespace is not a second line
    assert malformed_reason("assistant: Heat") == "scaffolding"
    assert malformed_reason("<|im_end|>Heat") == "scaffolding"
    assert malformed_reason("x" * 12, max_chars=10) == "too_long"
    assert malformed_reason("Recommend", exact=True) is None
    assert malformed_reason(" ", exact=True) == "empty"


def test_classify_items_and_length_checks():
    table = classify_items([[0, 1, 0, -1]], [[1]], titles=["a", "b"])
    assert table["category"].astype(str).tolist() == ["valid", "already_seen", "repeated"]
    assert table["text"].tolist() == ["a", "b", "a"]
    with pytest.raises(ValueError, match="histories"):
        classify_generations([["a"]], fake_ground, [[], []])
    with pytest.raises(ValueError, match="users"):
        classify_items([[0]], [[]], users=[1, 2])
    empty = classify_generations([], fake_ground, [])
    assert len(empty) == 0 and category_rates(empty).isna().all()


# -- the audit -------------------------------------------------------------------------------------
TINY = {
    "model": "tiny-smollm2-random",
    "max_history_tokens": 48,
    "max_train_examples": 16,
    "batch_size": 8,
    "num_beams": 4,
    "learning_rate": 3e-3,
    "epochs": 1,
    "template": {"chat": False},
    "decoding": "unconstrained",
    "grounding": "tfidf",
    "max_new_tokens": 8,
}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A tiny random BERT sentence encoder folder whose vocabulary covers the toy titles."""
    pytest.importorskip("transformers")
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("enc") / "tiny-bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "item", *map(str, range(30))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64})
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


@pytest.fixture(scope="module")
def generative(split, tiny_encoder):
    from trustrec.models.llm._generative import GenerativeRecommender

    return GenerativeRecommender(**TINY, encoder=str(tiny_encoder)).fit(split, FitOptions(seed=0, progress=False))


def test_generate_titles_and_grounder_are_what_recommend_uses(split, generative):
    q = split.eval_set("test").queries[:3]
    texts = generative.generate_titles(q, 4)
    assert len(texts) == 3 and all(len(row) == 4 for row in texts)
    assert all(np.all(np.diff([s for _, s in row]) <= 0) for row in texts)
    ground = generative.grounder()
    hows = [ground(t)[1] for row in texts for t, _ in row]
    _, stats = generative.recommend_with_stats(q, 4)
    assert (stats["n_exact"], stats["n_near_miss"], stats["n_out_of_catalog"]) == (
        hows.count("exact"),
        hows.count("near"),
        hows.count("none"),
    )
    assert generative.grounder("exact")("Item 7") == (7, "exact")
    assert generative.grounder("exact")("item 17!") == (-1, "none")
    top, _ = generative.recommend_with_stats(q, 4, decoding="constrained")
    assert np.all(top.items >= 0)


def test_audit_on_tiny_generative_model(split, generative):
    audit = HallucinationAudit(n_outputs=4, max_users=6, n_boot=50)
    result = audit.run(generative, split)
    assert isinstance(result, AuditResult) and result.dimension == "factuality"
    settings = ["unconstrained/exact", "unconstrained/tfidf", "unconstrained/embedding", "constrained"]
    assert result.settings["settings_measured"] == settings
    rates = result.evidence["rates"]
    assert set(rates["setting"]) == set(settings)
    assert rates["rate"].between(0, 1).all()
    for _setting, group in rates.groupby("setting"):
        assert group["rate"].sum() == pytest.approx(1.0)
        assert (group["ci_low"] <= group["ci_high"] + 1e-12).all()
    rate = rates.set_index(["setting", "category"])["rate"]
    for cat in ("hallucinated", "malformed", "near_miss"):
        assert rate[("constrained", cat)] == 0
    assert result.estimates["hallucination_rate [constrained]"].value == 0
    assert rate[("unconstrained/exact", "near_miss")] == 0
    # a fallback only turns "none" into "near": the exact-only hallucinations split into the two
    for fuzzy in ("unconstrained/tfidf", "unconstrained/embedding"):
        assert rate[(fuzzy, "hallucinated")] + rate[(fuzzy, "near_miss")] == pytest.approx(
            rate[("unconstrained/exact", "hallucinated")]
        )
    assert result.estimates["hallucination_rate"].value == rate[("unconstrained/tfidf", "hallucinated")]
    effect = result.estimates["mitigation_effect"]
    assert effect.value == pytest.approx(
        rate[("unconstrained/exact", "hallucinated")] + rate[("unconstrained/exact", "malformed")]
    )
    assert effect.ci_low <= effect.value <= effect.ci_high
    outputs = result.evidence["outputs"]
    assert (outputs["setting"] == "unconstrained/exact").sum() == 6 * 4
    assert (outputs["setting"] == "constrained").sum() == 6 * 4
    assert outputs["text"].str.len().max() <= 200
    assert result.plots and result.plots[0].kind == "bar" and result.plots[0].table == "rates"
    json.dumps(result.to_dict())


def test_embedding_grounding_skipped_with_a_reason_when_no_encoder_is_local():
    from types import SimpleNamespace

    encoder, why = _offline_encoder(SimpleNamespace(config=SimpleNamespace(encoder="all-minilm-l6-v2")))
    assert encoder is None and "all-minilm-l6-v2" in why and "offline" in why


def test_not_applicable_to_a_model_without_free_text():
    split = split_leave_one_out(toy_dataset(), short_users="train")
    model = make_model("most_popular").fit(split, FitOptions(progress=False))
    result = HallucinationAudit().run(model, split)
    assert result.verdict.status == "not_applicable"
    assert "most_popular" in result.verdict.reasons[0] and "cannot hallucinate" in result.verdict.reasons[0]
    assert audit_class("hallucination") is HallucinationAudit
    assert isinstance(result.estimate_frame(), pd.DataFrame)
