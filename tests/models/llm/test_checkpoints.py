"""Checkpoints on the tiny random model: deterministic build, safetensors round trip, loading."""

import json

import pytest

pytest.importorskip("transformers")

import torch
from safetensors import safe_open

from trustrec.errors import ConfigError
from trustrec.models.llm import (
    ModelNotFoundError,
    build_tiny_random,
    list_models,
    load_causal_lm,
    load_text_encoder,
    resolve_model,
    save_checkpoint,
)
from trustrec.models.llm._convert import TINY_SMOLLM2_CONFIG, tokenizer_asset

PROMPT = "User watched Toy Story (1995), Heat (1995). Next:"


def logits(model, tokenizer, text=PROMPT):
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_tiny_model_shape_and_tokenizer(tiny_checkpoint):
    model, tokenizer = load_causal_lm(tiny_checkpoint)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size) == (2, 64, 4, 49152)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert sum(p.numel() for p in model.parameters()) < 4_000_000
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    ).endswith("<|im_start|>assistant\n")
    out = model.generate(**tokenizer([PROMPT], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] == len(tokenizer(PROMPT)["input_ids"]) + 4


def test_tiny_build_is_deterministic_and_leaves_global_rng_alone(tiny_checkpoint, tmp_path):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    build_tiny_random(tmp_path / "again")
    assert torch.equal(torch.rand(1), expected_next)
    with (
        safe_open(tiny_checkpoint / "model.safetensors", "pt") as a,
        safe_open(tmp_path / "again" / "model.safetensors", "pt") as b,
    ):
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())  # noqa: SIM118 - safe_open is not iterable
    build_tiny_random(tmp_path / "other", seed=1)
    with (
        safe_open(tmp_path / "other" / "model.safetensors", "pt") as c,
        safe_open(tiny_checkpoint / "model.safetensors", "pt") as a,
    ):
        assert not torch.equal(c.get_tensor("model.embed_tokens.weight"), a.get_tensor("model.embed_tokens.weight"))


def test_save_checkpoint_round_trip_identical_logits(tiny_checkpoint, tmp_path):
    model, tokenizer = load_causal_lm(tiny_checkpoint)
    with torch.no_grad():  # make the weights differ from the built ones, so the round trip proves something
        model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    before = logits(model, tokenizer)
    folder = save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    with safe_open(folder / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys  # stored once
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    reloaded, reloaded_tok = load_causal_lm(folder)
    assert torch.equal(logits(reloaded, reloaded_tok), before)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_registered_tiny_model_builds_into_the_cache(tiny_checkpoint):
    assert {r.name: r.resolves_from for r in list_models()}["tiny-smollm2-random"] == "built-in"
    folder = resolve_model("tiny-smollm2-random", progress=False)
    assert {r.name: r.resolves_from for r in list_models()}["tiny-smollm2-random"] == "trustrec-cache"
    model, tokenizer = load_causal_lm("tiny-smollm2-random")
    reference, _ = load_causal_lm(tiny_checkpoint)
    assert torch.equal(logits(model, tokenizer), logits(reference, tokenizer))
    assert folder.name == "tiny-smollm2-random"


def test_loading_errors(tmp_path):
    with pytest.raises(
        ConfigError, match="'all-minilm-l6-v2' is a text-encoder, not a causal-lm; load it with load_text_encoder"
    ):
        load_causal_lm("all-minilm-l6-v2")
    with pytest.raises(ConfigError, match="is a causal-lm, not a text-encoder"):
        load_text_encoder("tiny-smollm2-random")
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'no-such-model'.*Registered models"):
        load_causal_lm("no-such-model")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"is not a model checkpoint: .* lacks weights"):
        load_causal_lm(tmp_path / "half")


def test_shipped_tokenizer_asset_is_small_and_documented():
    folder = tokenizer_asset("smollm2-tokenizer")
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert set(sizes) == {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "NOTICE"}
    assert sum(sizes.values()) < 2_000_000
    notice = (folder / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "HuggingFaceTB/SmolLM2-135M-Instruct" in notice
    assert TINY_SMOLLM2_CONFIG["vocab_size"] == 49152
