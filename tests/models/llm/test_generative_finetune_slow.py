"""The real SmolLM2 fine-tuned on the BIGRec / D3 protocol beats the zero-shot model (slow)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_fine_tuning_on_a_small_sample_beats_zero_shot(shared_data):
    from trustrec.data import load_dataset, make_split, position_eval_set
    from trustrec.eval import paired_estimate
    from trustrec.models import FitOptions, make_model

    ds = load_dataset("amazon-industrial", data_dir=shared_data)
    split = make_split(ds, "global_positions")
    test = position_eval_set(split, "test")
    rows = np.sort(np.random.default_rng(0).choice(len(test), 40, replace=False))
    test = test[rows]
    params = {
        "template": {"preset": "bigrec"},
        "answer_format": '"{title}"\n',
        "targets_per_user": None,
        "max_history_items": 10,
        "max_history_tokens": 96,
        "max_train_examples": 96,
        "learning_rate": 3e-4,
        "warmup_steps": 4,
        "autocast": "auto",
        "length_bucketing": True,
        "inference_batch_size": 8,
    }
    tuned = make_model("llm_generative", **params).fit(split, FitOptions(progress=False, seed=0))
    zero = make_model("llm_generative", **{**params, "epochs": 0}).fit(split, FitOptions(progress=False, seed=0))
    assert tuned.history_["n_examples"] == 96 and zero.history_["n_examples"] == 0
    # Per-token loss of the true next item's answer ("title" + newline + eos) on held-out test rows.
    tuned_loss = tuned.answer_losses(test.queries, test.targets.values)
    zero_loss = zero.answer_losses(test.queries, test.targets.values)
    gain = paired_estimate(zero_loss, tuned_loss, n_boot=1000, seed=0)
    print(f"\nanswer loss zero-shot {zero_loss.mean():.3f}, fine-tuned {tuned_loss.mean():.3f}, gain {gain}")
    assert gain.ci_low > 0
    # constrained decoding names catalog items only
    top = tuned.recommend(test.queries[:4], 5, exclude_seen=False)
    assert ((top.items >= 0) & (top.items < ds.n_items)).all()
