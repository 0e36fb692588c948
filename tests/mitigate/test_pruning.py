"""Structural pruning (PruneRec core): the pruned model against the masked unpruned one, the
checkpoint round trip, plan validation, parameter counts and the scoring functions, on the tiny
random SmolLM2-architecture model (4 query heads over 2 key/value heads, head_dim 16, MLP 128)."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from trustrec.errors import ConfigError, DataError
from trustrec.mitigate.training.pruning import (
    PruningPlan,
    apply_plan,
    drop_layers,
    load_pruned,
    masked_forward,
    prune_hidden,
    save_pruned,
)
from trustrec.mitigate.training.pruning_criteria import (
    channel_importance,
    head_importance,
    hidden_importance,
    layer_removal_order,
    plan_from_scores,
)
from trustrec.models.llm import load_causal_lm

PROMPTS = ["user 3 liked item 7 and item 2; next:", "hello", "a much longer prompt about films, books and songs"]
CALIBRATION = [f"user {i} liked item {i % 7} and item {(3 * i) % 11}; next item:" for i in range(6)]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_causal_lm("tiny-smollm2-random", progress=False)
    return model, tokenizer


@pytest.fixture(scope="module")
def deep(tiny):
    """The tiny architecture with 4 layers (random weights): removing a middle layer renumbers the rest."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(tiny[0].config)
    config.num_hidden_layers = 4
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tiny[1]


def _batch(tokenizer):
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert tokenizer.padding_side == "right" and (enc["attention_mask"] == 0).any()  # really right-padded
    return enc


def _logits(model, enc):
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def _plan(config, *, layers=None, heads=None, channels=None):
    full = PruningPlan.full(config)
    q, kv, ch = list(full.query_heads), list(full.kv_heads), list(full.channels)
    for i, (qi, kvi) in (heads or {}).items():
        q[i], kv[i] = qi, kvi
    for i, chi in (channels or {}).items():
        ch[i] = chi
    args = {k: getattr(full, k) for k in ("num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")}
    kept = full.kept_layers if layers is None else layers
    return PruningPlan(**args, kept_layers=kept, query_heads=q, kv_heads=kv, channels=ch)


def _channels(seed, n=128, keep=40):
    return tuple(sorted(np.random.default_rng(seed).choice(n, keep, replace=False).tolist()))


def _non_embedding(model):
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)


# -- pruned == masked ---------------------------------------------------------------------------------------------
CASES = {
    "heads": {"heads": {0: ((0, 2), (0, 1)), 1: ((2, 3), (1,))}},
    "channels": {"channels": {0: _channels(0), 1: _channels(1, keep=1)}},
    "layers": {"layers": (1,)},
    "all": {"layers": (1,), "heads": {1: ((1,), (0,))}, "channels": {1: _channels(2)}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_pruned_model_computes_what_the_masked_model_computes(tiny, case):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    plan = _plan(model.config, **CASES[case])
    pruned = apply_plan(model, plan)
    with masked_forward(model, plan):
        masked = _logits(model, enc)
    torch.testing.assert_close(_logits(pruned, enc), masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked, _logits(model, enc), atol=1e-3)  # the plan really changes the model


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_all_three_on_a_deeper_model_and_with_a_kv_cache(deep, attention):
    model, tokenizer = deep
    model = copy.deepcopy(model)
    model.set_attn_implementation(attention)
    enc = _batch(tokenizer)
    plan = _plan(
        model.config,
        layers=(0, 2, 3),
        heads={0: ((0, 1), (0,)), 2: ((1, 3), (0, 1)), 3: ((0, 1, 2, 3), (0, 1))},
        channels={0: _channels(3), 2: _channels(4), 3: _channels(5, keep=127)},
    )
    pruned = apply_plan(model, plan)
    assert len(pruned.model.layers) == 3 and pruned.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2]
    assert [layer.self_attn.num_key_value_groups for layer in pruned.model.layers] == [2, 1, 2]
    with masked_forward(model, plan):
        masked = _logits(model, enc)
    full = _logits(pruned, enc)
    torch.testing.assert_close(full, masked, atol=1e-5, rtol=1e-5)
    # incremental decoding: the renumbered layers each get their own cache slot
    ids = enc["input_ids"][:1, :6]
    with torch.no_grad():
        first = pruned(input_ids=ids[:, :5], use_cache=True)
        step = pruned(input_ids=ids[:, 5:], cache=first.cache, use_cache=True).logits
        whole = pruned(input_ids=ids).logits
    torch.testing.assert_close(step[:, -1], whole[:, -1], atol=1e-5, rtol=1e-5)


def test_apply_plan_leaves_the_input_model_untouched(tiny):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    before, n_params = _logits(model, enc), sum(p.numel() for p in model.parameters())
    pruned = apply_plan(model, _plan(model.config, **CASES["all"]))
    torch.testing.assert_close(_logits(model, enc), before, atol=0, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert not hasattr(model.config, "trustrec_pruning") or model.config.trustrec_pruning is None
    assert sum(p.numel() for p in pruned.parameters()) < n_params
    with pytest.raises(ConfigError, match="already pruned"):
        apply_plan(pruned, _plan(model.config))


def test_masked_forward_removes_its_hooks_also_after_an_error(tiny):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    before = _logits(model, enc)
    plan = _plan(model.config, **CASES["all"])
    with masked_forward(model, plan):
        pass
    torch.testing.assert_close(_logits(model, enc), before, atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="boom"), masked_forward(model, plan):
        raise RuntimeError("boom")
    torch.testing.assert_close(_logits(model, enc), before, atol=0, rtol=0)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


# -- checkpoint -------------------------------------------------------------------------------------------------------
def test_pruned_checkpoint_round_trips(tiny, tmp_path):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    plan = _plan(model.config, heads={0: ((0, 2), (0, 1))}, channels={1: _channels(6)})
    pruned = apply_plan(model, plan)
    folder = save_pruned(pruned, tokenizer, tmp_path / "pruned")
    recorded = json.loads((folder / "config.json").read_text())["trustrec_pruning"]
    assert PruningPlan.from_dict(recorded) == plan
    loaded, loaded_tokenizer = load_pruned(folder)
    torch.testing.assert_close(_logits(loaded, enc), _logits(pruned, enc), atol=0, rtol=0)
    assert loaded_tokenizer(PROMPTS[0])["input_ids"] == tokenizer(PROMPTS[0])["input_ids"]
    with pytest.raises(ConfigError, match="not an empty folder"):
        save_pruned(pruned, tokenizer, folder)


def test_layer_removal_round_trips_and_bad_files_are_named(deep, tmp_path):
    model, tokenizer = deep
    enc = _batch(tokenizer)
    pruned = apply_plan(model, _plan(model.config, layers=(1, 3), heads={3: ((2,), (1,))}))
    folder = save_pruned(pruned, None, tmp_path / "p")
    loaded, loaded_tokenizer = load_pruned(folder)
    assert loaded_tokenizer is None and loaded.config.num_hidden_layers == 2
    torch.testing.assert_close(_logits(loaded, enc), _logits(pruned, enc), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="records no pruning plan"):
        save_pruned(model, tokenizer, tmp_path / "unpruned")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"model\.safetensors"):
        load_pruned(folder)
    (folder / "config.json").write_text("{broken")
    with pytest.raises(DataError, match=r"config\.json"):
        load_pruned(folder)
    with pytest.raises(DataError, match=r"config\.json"):
        load_pruned(tmp_path / "missing")


# -- plan validation and counts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": {0: ((0, 4), (0, 1))}}, "out of range"),
        ({"channels": {1: (0, 128)}}, "out of range"),
        ({"layers": (0, 2)}, "out of range"),
        ({"heads": {0: ((0, 1, 2), (0, 1))}}, "uneven"),
        ({"heads": {0: ((0, 1), (0, 1))}}, "kv_heads"),
        ({"heads": {0: ((0, 1), ())}}, "kv_heads"),
        ({"heads": {0: ((), ())}}, "no query head"),
        ({"channels": {1: ()}}, "no MLP channel"),
        ({"layers": ()}, "at least one layer"),
        ({"channels": {1: (3, 3)}}, "twice"),
    ],
)
def test_plan_validation(tiny, change, message):
    with pytest.raises(ConfigError, match=message):
        _plan(tiny[0].config, **change)


def test_plan_round_trips_as_json_and_checks_the_model(tiny):
    plan = _plan(tiny[0].config, **CASES["all"])
    assert PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.query_heads[1] == (1,) and plan.kept_layers == (1,)
    other = copy.deepcopy(tiny[0].config)
    other.intermediate_size = 64
    with pytest.raises(ConfigError, match="intermediate_size"):
        plan.validate(other)
    with pytest.raises(DataError, match="missing"):
        PruningPlan.from_dict({"num_layers": 2})


@pytest.mark.parametrize("case", list(CASES))
def test_non_embedding_parameters_match_the_pruned_model(tiny, case):
    model = tiny[0]
    plan = _plan(model.config, **CASES[case])
    pruned = apply_plan(model, plan)
    kept, full = plan.non_embedding_parameters(model.config)
    assert kept == _non_embedding(pruned) < full == _non_embedding(model)
    assert plan.non_embedding_parameters(pruned.config) == (kept, full)  # the recorded sizes are used


# -- scores -----------------------------------------------------------------------------------------------------------
def _mean_last_kl(model, tokenizer, layer, head):
    enc = tokenizer(CALIBRATION, return_tensors="pt", padding=True)
    last = enc["attention_mask"].sum(1) - 1
    hd = model.config.head_dim

    def zero_head(module, args):
        x = args[0].clone()
        x[..., head * hd : (head + 1) * hd] = 0
        return (x,)

    base = torch.log_softmax(_logits(model, enc)[torch.arange(len(last)), last], -1)
    handle = model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(zero_head)
    try:
        masked = torch.log_softmax(_logits(model, enc)[torch.arange(len(last)), last], -1)
    finally:
        handle.remove()
    return float((base.exp() * (base - masked)).sum(-1).mean())


def test_head_importance(tiny):
    model, tokenizer = tiny
    scores = head_importance(model, tokenizer, CALIBRATION, batch_size=4)
    assert scores.shape == (2, 4) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores.max(axis=1), 1.0)
    # batching changes only rounding
    np.testing.assert_allclose(scores, head_importance(model, tokenizer, CALIBRATION, batch_size=2), atol=1e-4)
    raw = head_importance(model, tokenizer, CALIBRATION, smooth=False)
    np.testing.assert_array_equal(scores.argmax(axis=1), raw.argmax(axis=1))  # smoothing keeps each layer's order
    for layer in range(2):
        top, bottom = int(raw[layer].argmax()), int(raw[layer].argmin())
        assert _mean_last_kl(model, tokenizer, layer, top) > _mean_last_kl(model, tokenizer, layer, bottom)
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_channel_importance_and_plan_from_scores(tiny):
    model, tokenizer = tiny
    channels = channel_importance(model, tokenizer, CALIBRATION, top_k=16, batch_size=4)
    assert len(channels) == 2 and all(c.shape == (128,) for c in channels)
    n_tokens = sum(len(ids) for ids in tokenizer(CALIBRATION)["input_ids"])
    for c in channels:  # every token counts exactly top_k channels
        assert c.min() >= 0 and c.max() <= 1 and round(c.sum() * n_tokens) == 16 * n_tokens
    heads = np.array([[0.1, 0.9, 0.5, 0.3], [0.2, 0.1, 0.4, 0.8]])
    plan = plan_from_scores(model.config, heads, channels, head_ratio=0.5, channel_ratio=0.25)
    assert plan.query_heads == ((1, 2), (0, 3)) and plan.kv_heads == ((0, 1), (0, 1))
    assert all(len(c) == 96 for c in plan.channels)
    assert set(np.argsort(-channels[0], kind="stable")[:96].tolist()) == set(plan.channels[0])
    assert plan_from_scores(model.config, heads, channels, head_ratio=0.0, channel_ratio=0.0) == PruningPlan.full(
        model.config
    )
    # the ratio rounds to whole heads per group and always keeps one
    assert plan_from_scores(model.config, heads, channels, head_ratio=0.9, channel_ratio=0.0).query_heads[0] == (1, 2)
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="head_ratio"):
            plan_from_scores(model.config, heads, channels, head_ratio=bad, channel_ratio=0.1)
        with pytest.raises(ConfigError, match="channel_ratio"):
            plan_from_scores(model.config, heads, channels, head_ratio=0.1, channel_ratio=bad)
    with pytest.raises(DataError, match="head_scores"):
        plan_from_scores(model.config, heads[:1], channels, head_ratio=0.1, channel_ratio=0.1)
    with pytest.raises(ConfigError, match="top_k"):
        channel_importance(model, tokenizer, CALIBRATION, top_k=0)


def _mean_nll(model, tokenizer):
    enc = tokenizer(CALIBRATION, return_tensors="pt", padding=True)
    logits, valid = _logits(model, enc)[:, :-1], enc["attention_mask"][:, 1:].bool()
    return float(torch.nn.functional.cross_entropy(logits[valid], enc["input_ids"][:, 1:][valid]))


def test_layer_removal_order(deep):
    model, tokenizer = deep
    plan = _plan(model.config, layers=(0, 1, 3), heads={1: ((0, 2), (0, 1))})
    order = layer_removal_order(model, tokenizer, CALIBRATION, plan, n_remove=2)
    assert len(order) == len(set(order)) == 2 and set(order) <= {0, 1, 3}
    # the first step is the layer whose removal, applied for real, gives the lowest NLL
    nll = {
        i: _mean_nll(
            apply_plan(model, _plan(model.config, layers=tuple({0, 1, 3} - {i}), heads={1: ((0, 2), (0, 1))})),
            tokenizer,
        )
        for i in (0, 1, 3)
    }
    assert order[0] == min(nll, key=nll.get)
    assert layer_removal_order(model, tokenizer, CALIBRATION, plan, n_remove=0) == []
    with pytest.raises(ConfigError, match="kept layers"):
        layer_removal_order(model, tokenizer, CALIBRATION, plan, n_remove=3)
    with pytest.raises(DataError, match="non-empty"):
        layer_removal_order(model, tokenizer, [], plan, n_remove=1)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


def test_drop_layers_from_an_unpruned_and_a_pruned_model(deep):
    model, tokenizer = deep
    enc = _batch(tokenizer)
    heads = {3: ((2,), (1,))}
    pruned = apply_plan(model, _plan(model.config, layers=(0, 1, 3), heads=heads))
    dropped = drop_layers(pruned, [1])
    assert dropped.config.num_hidden_layers == 2 and PruningPlan.of(dropped).kept_layers == (0, 3)
    assert pruned.config.num_hidden_layers == 3 and PruningPlan.of(pruned).kept_layers == (0, 1, 3)  # untouched
    with masked_forward(model, _plan(model.config, layers=(0, 3), heads=heads)):
        masked = _logits(model, enc)
    torch.testing.assert_close(_logits(dropped, enc), masked, atol=1e-5, rtol=1e-4)
    layer_ids = [m.layer_idx for layer in dropped.model.layers for m in layer.modules() if hasattr(m, "layer_idx")]
    assert sorted(set(layer_ids)) == [0, 1]
    direct = drop_layers(model, [1, 2])  # unpruned: the full plan without those layers
    assert PruningPlan.of(direct).kept_layers == (0, 3) and PruningPlan.of(model) == PruningPlan.full(model.config)
    with pytest.raises(ConfigError, match="not kept"):
        drop_layers(dropped, [1])
    with pytest.raises(ConfigError, match="one must stay"):
        drop_layers(dropped, [0, 3])


def test_layer_removal_order_on_a_pruned_model_as_it_is(deep):
    model, tokenizer = deep
    pruned = apply_plan(model, _plan(model.config, layers=(0, 1, 3), channels={0: _channels(4)}))
    order = layer_removal_order(pruned, tokenizer, CALIBRATION, n_remove=2)
    nll = {i: _mean_nll(drop_layers(pruned, [i]), tokenizer) for i in (0, 1, 3)}
    assert order[0] == min(nll, key=nll.get) and len(set(order)) == 2 and set(order) <= {0, 1, 3}
    nll_2 = {i: _mean_nll(drop_layers(pruned, [order[0], i]), tokenizer) for i in {0, 1, 3} - {order[0]}}
    assert order[1] == min(nll_2, key=nll_2.get)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in pruned.modules())


# -- hidden dimensions -----------------------------------------------------------------------------------------------
def _hidden_plan(config, keep, **kwargs):
    return dataclasses.replace(_plan(config, **kwargs), hidden_size=config.hidden_size, hidden=keep)


def test_hidden_pruning_slices_the_residual_stream_and_round_trips(tiny, tmp_path):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    keep = (*range(0, 64, 2), 1, 3)
    plan = _hidden_plan(model.config, keep, heads={0: ((0, 2), (0, 1))})
    pruned = apply_plan(model, plan)
    assert pruned.model.embed_tokens.embedding_dim == len(keep) and pruned.model.norm.weight.shape == (len(keep),)
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight  # still tied
    torch.testing.assert_close(pruned.model.embed_tokens.weight, model.model.embed_tokens.weight[:, sorted(keep)])
    assert pruned.model.layers[0].self_attn.q_proj.in_features == len(keep)
    assert pruned.model.layers[1].mlp.down_proj.out_features == len(keep)
    assert torch.isfinite(_logits(pruned, enc)).all()
    kept, _ = plan.non_embedding_parameters(model.config)
    assert kept == _non_embedding(pruned)
    assert PruningPlan.of(pruned) == plan and PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    loaded, _ = load_pruned(save_pruned(pruned, None, tmp_path / "h"))
    torch.testing.assert_close(_logits(loaded, enc), _logits(pruned, enc), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="no exact masked form"), masked_forward(model, plan):
        pass
    with pytest.raises(ConfigError, match="hidden needs hidden_size"):
        dataclasses.replace(_plan(model.config), hidden_size=None, hidden=(0,))
    with pytest.raises(ConfigError, match="out of range"):
        _hidden_plan(model.config, (0, 64))


def test_prune_hidden_on_a_pruned_model_equals_one_plan_on_the_unpruned(tiny):
    model, tokenizer = tiny
    enc = _batch(tokenizer)
    width = apply_plan(model, _plan(model.config, channels={1: _channels(5)}))
    keep = tuple(range(10, 60))
    twice = prune_hidden(prune_hidden(width, range(5, 64)), keep)
    once = apply_plan(model, _hidden_plan(model.config, keep, channels={1: _channels(5)}))
    torch.testing.assert_close(_logits(twice, enc), _logits(once, enc), atol=1e-6, rtol=1e-5)
    assert PruningPlan.of(twice) == PruningPlan.of(once)
    assert width.model.embed_tokens.embedding_dim == 64  # the input is untouched
    with pytest.raises(ConfigError, match="not kept"):
        prune_hidden(twice, [0])
    with pytest.raises(ConfigError, match="keep at least one"):
        prune_hidden(twice, [])


def test_hidden_importance_is_the_first_order_loss_change(tiny):
    model, tokenizer = tiny
    texts = CALIBRATION[:3]
    scores = hidden_importance(model, tokenizer, texts, batch_size=2)
    assert scores.shape == (64,) and (scores >= 0).all() and scores.max() > 0

    def loss_with(d, factor):  # the last layer's output dimension d scaled by factor
        def scale(module, args, kwargs, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h.clone()
            h[..., d] *= factor
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = model.model.layers[-1].register_forward_hook(scale, with_kwargs=True)
        try:
            total, count = 0.0, 0
            with torch.no_grad():
                for text in texts:
                    ids = tokenizer(text, return_tensors="pt")["input_ids"]
                    logits = model(input_ids=ids).logits[0, :-1].double()
                    total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
                    count += ids.shape[1] - 1
            return total / count
        finally:
            handle.remove()

    eps = 1e-3
    for d in (int(np.argmax(scores)), 7, 33):
        derivative = (loss_with(d, 1 + eps) - loss_with(d, 1 - eps)) / (2 * eps)  # = sum_t g_td h_td
        assert abs(derivative) == pytest.approx(scores[d], rel=2e-2, abs=1e-6)
    assert not any(p.grad is not None for p in model.parameters())
