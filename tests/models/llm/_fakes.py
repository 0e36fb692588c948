"""Test doubles that are real files: wheels served by pip, checkpoints, a tiny GGUF."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np


def write_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> tuple[Path, str]:
    """A minimal pure-python wheel that ``pip download --no-index --find-links folder`` serves."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    members = dict(files)
    members[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members[f"{dist}/RECORD"] = b""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    wheel.write_bytes(buf.getvalue())
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def fake_checkpoint_files(tag: str = "x") -> dict[str, bytes]:
    """The files that make a folder look like a checkpoint (not loadable by transformers)."""
    return {
        "config.json": json.dumps({"model_type": "llama", "tag": tag}).encode(),
        "model.safetensors": b"weights-" + tag.encode(),
        "tokenizer.json": b"{}",
    }


def _permute_for_gguf(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rotary q/k rows in GGUF's interleaved order (transformers undoes this on load)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(model, tokenizer_json: Path, path: Path) -> Path:
    """Write a LlamaForCausalLM (float32 tensors) and a byte-level BPE tokenizer as a GGUF file."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_vocab_size(cfg.vocab_size)

    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, idx in vocab.items():
        tokens[idx] = token
    special = {t["id"] for t in spec["added_tokens"] if t.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(cfg.bos_token_id)
    writer.add_eos_token_id(cfg.eos_token_id)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(cfg.pad_token_id)
    writer.add_add_bos_token(False)
    template = Path(tokenizer_json).parent / "chat_template.jinja"
    if template.is_file():
        writer.add_chat_template(template.read_text(encoding="utf-8"))

    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for layer in range(cfg.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            weight = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weight = _permute_for_gguf(weight, cfg.num_attention_heads)
            elif gguf_name == "attn_k":
                weight = _permute_for_gguf(weight, cfg.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
