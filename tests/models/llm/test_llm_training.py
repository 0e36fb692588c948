"""The LLM side of the training layer: loss terms hand-checked on small tensors, LLMTrainer with
prompt variants and per-token weights on the tiny random checkpoint, rollouts through backends,
generation of the generative recommender through its backend."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# imported after the importorskip calls above (E402): without torch the module is skipped, not an error
from trustrec.errors import ConfigError  # noqa: E402
from trustrec.models.llm import LocalBackend  # noqa: E402
from trustrec.models.training import (  # noqa: E402
    IGNORE,
    CausalLMLoss,
    DistillationLoss,
    EarlyStopping,
    ListRewardLoss,
    LLMTrainer,
    PairwisePreferenceLoss,
    PromptVariant,
    RolloutSampler,
    TrainingExample,
    causal_lm_loss,
    distillation_loss,
    preference_loss,
    reinforce_loss,
    sequence_logprobs,
)


# -- loss terms on small tensors ---------------------------------------------------------------------
def _logits():
    # 2 rows, 3 positions, vocabulary 3; the answer is position 2 of row 0 and positions 1-2 of row 1
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            [[0.0, 2.0, 0.0], [0.0, 0.0, math.log(3.0)], [0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[IGNORE, IGNORE, 0], [IGNORE, 1, 2]])
    return logits, labels


def test_sequence_logprobs_by_hand():
    logits, labels = _logits()
    # row 0: token 0 after logits [1, 0, 0]: log(e / (e + 2))
    # row 1: token 1 after [0, 2, 0]: log(e^2 / (e^2 + 2)); token 2 after [0, 0, ln 3]: log(3 / 5)
    r0 = math.log(math.e / (math.e + 2))
    r1 = math.log(math.e**2 / (math.e**2 + 2)) + math.log(3 / 5)
    np.testing.assert_allclose(sequence_logprobs(logits, labels).numpy(), [r0, r1], rtol=1e-6)
    np.testing.assert_allclose(sequence_logprobs(logits, labels, average=True).numpy(), [r0, r1 / 2], rtol=1e-6)
    # causal LM loss is the mean negative token log-probability over the 3 answer tokens
    np.testing.assert_allclose(float(causal_lm_loss(logits, labels)), -(r0 + r1) / 3, rtol=1e-6)


def test_preference_loss_by_hand():
    c, r = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    want = -np.mean([math.log(1 / (1 + math.exp(-0.5 * 2.0))), math.log(1 / (1 + math.exp(-0.5 * -1.0)))])
    np.testing.assert_allclose(float(preference_loss(c, r, kind="dpo", beta=0.5)), want, rtol=1e-6)
    ref_c, ref_r = torch.tensor([-1.0, -1.0]), torch.tensor([-2.0, 0.0])  # reference margins 1 and -1
    want_ref = -np.mean([math.log(1 / (1 + math.exp(-0.5 * 1.0))), math.log(0.5)])
    np.testing.assert_allclose(float(preference_loss(c, r, ref_c, ref_r, beta=0.5)), want_ref, rtol=1e-6)
    # margin 1: max(0, 1 - 2) = 0 and max(0, 1 - (-1)) = 2
    assert float(preference_loss(c, r, kind="margin", margin=1.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kind"):
        preference_loss(c, r, kind="ipo")


def test_distillation_loss_by_hand():
    logits, labels = _logits()
    assert float(distillation_loss(logits, logits, labels)) == pytest.approx(0.0, abs=1e-7)
    teacher = torch.zeros_like(logits)  # uniform teacher
    # at each answer position: KL(uniform || p) = sum_v 1/3 (log 1/3 - log p_v)
    kls = []
    for row, pos in [(0, 1), (1, 0), (1, 1)]:
        p = torch.softmax(logits[row, pos], -1).numpy()
        kls.append(float(np.sum(1 / 3 * (np.log(1 / 3) - np.log(p)))))
    np.testing.assert_allclose(float(distillation_loss(logits, teacher, labels)), np.mean(kls), rtol=1e-6)
    # temperature T scales the logits by 1/T and the loss by T^2
    np.testing.assert_allclose(
        float(distillation_loss(logits * 2, teacher, labels, temperature=2.0)), 4 * np.mean(kls), rtol=1e-6
    )


def test_reinforce_loss_by_hand():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    loss = reinforce_loss(logp, [1.0, 0.0, 2.0])  # advantages 0, -1, 1
    assert float(loss.detach()) == pytest.approx(-(0 * -1 + -1 * -2 + 1 * -3) / 3)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [0.0, 1 / 3, -1 / 3])
    assert float(reinforce_loss(logp, [1.0, 1.0, 1.0], baseline="none").detach()) == pytest.approx(2.0)


def test_examples_validate_their_rows():
    with pytest.raises(ValueError, match="weights"):
        PromptVariant([1], [2, 3], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        TrainingExample(())
    with pytest.raises(ValueError, match="one rejected row per variant"):
        TrainingExample(([[1], [2]], [[1], [3]]), rejected=([[1], [4]],))


# -- the trainer on the tiny model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    from trustrec.models.llm._loading import load_causal_lm

    return lambda: load_causal_lm(str(tiny_checkpoint))


def _examples(tok):
    def enc(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    eos = tok.eos_token_id
    out = []
    for title, history in [("Heat", "Alien, Casino"), ("Fargo", "Toy Story"), ("Babe", "Heat, Fargo")]:
        answer = [*enc(" " + title), eos]
        weights = [2.0] * (len(answer) - 1) + [0.5]
        out.append(
            TrainingExample(
                (
                    PromptVariant(enc(f"Watched {history}. Next:"), answer, weights),  # with the history
                    PromptVariant(enc("Next:"), answer, weights),
                ),  # without it
                rejected=(
                    PromptVariant(enc(f"Watched {history}. Next:"), [*enc(" Casino"), eos]),
                    PromptVariant(enc("Next:"), [*enc(" Casino"), eos]),
                ),
                meta={"prompt": f"Watched {history}. Next:", "title": title},
            )
        )
    return out


def test_trainer_collates_every_variant_with_its_weights(tiny):
    model, tok = tiny()
    trainer = LLMTrainer(model, pad_id=tok.eos_token_id, batch_size=2)
    examples = _examples(tok)
    batch = trainer.collate(examples[:2])
    assert batch["example_index"].tolist() == [0, 0, 1, 1]
    row = examples[0].variants[1]
    n_prompt, n_answer = len(row.prompt_ids), len(row.answer_ids)
    assert batch["weights"][1, n_prompt : n_prompt + n_answer].tolist() == list(row.weights)
    assert batch["weights"][1, :n_prompt].sum() == 0
    # the causal-LM term is the weighted loss over all four rows
    with torch.no_grad():
        out = trainer.forward(batch)
        want = causal_lm_loss(out.logits, batch["labels"], batch["weights"])
        got = trainer.batch_loss(examples[:2], batch)
    torch.testing.assert_close(got, want)


def test_trainer_lowers_the_loss_and_is_seeded(tiny):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model, tok = tiny()
        trainer = LLMTrainer(model, pad_id=tok.eos_token_id, learning_rate=3e-3, batch_size=2)
        loop = trainer.fit(_examples(tok), np.random.default_rng(0), epochs=4)
        runs.append(loop.losses)
    assert runs[0] == runs[1] and runs[0][-1] < runs[0][0]


def test_composed_terms_add_up_and_train(tiny):
    model, tok = tiny()
    teacher, _ = tiny()
    teacher.eval()
    terms = [
        CausalLMLoss(),
        PairwisePreferenceLoss(kind="margin", margin=5.0, weight=0.5),
        DistillationLoss(
            lambda b: teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, weight=0.1
        ),
    ]
    trainer = LLMTrainer(model, pad_id=tok.eos_token_id, losses=terms, learning_rate=3e-3, batch_size=3)
    examples = _examples(tok)
    model.eval()
    with torch.no_grad():
        total = float(trainer.batch_loss(examples))
        parts = [float(LLMTrainer(model, pad_id=tok.eos_token_id, losses=[t]).batch_loss(examples)) for t in terms]
    assert total == pytest.approx(sum(parts), rel=1e-5)
    assert parts[2] == pytest.approx(0.0, abs=1e-5)  # the teacher is a copy of the untrained student
    loop = trainer.fit(
        examples, np.random.default_rng(0), epochs=3, callbacks=[EarlyStopping(lambda: 0.0, patience=10)]
    )
    assert len(loop.losses) == 3 and all(np.isfinite(loop.losses))


def test_list_reward_loss_with_rollouts_through_the_backend(tiny):
    model, tok = tiny()
    backend = LocalBackend.from_model(model, tok)
    sampler = RolloutSampler(backend, n=3, max_new_tokens=4, seed=1)
    calls = []

    def reward(example, rollouts):
        calls.append(len(rollouts))
        return [float(len(r)) for r in rollouts]  # caller-supplied list-level reward

    term = ListRewardLoss(sample=sampler.sample_ids, reward=reward)
    trainer = LLMTrainer(model, pad_id=tok.eos_token_id, losses=[CausalLMLoss(), term], batch_size=3)
    loss = trainer.train_epoch(_examples(tok), np.random.default_rng(0))
    assert np.isfinite(loss) and calls == [3, 3, 3]


# -- rollouts and generation through backends --------------------------------------------------------------
def test_rollout_sampler_is_seeded_free_and_constrained(tiny_checkpoint):
    from trustrec.models.llm._trie import TitleTrie

    backend = LocalBackend(str(tiny_checkpoint), batch_size=4)
    prompts = ["I watched Heat and", "Hi"]
    free = RolloutSampler(backend, n=3, max_new_tokens=5, seed=7)
    a, b = free.sample(prompts), free.sample(prompts)
    assert [[r.text for r in row] for row in a] == [[r.text for r in row] for row in b]
    assert len(a) == 2 and all(len(row) == 3 for row in a) and [r.seed for r in a[0]] == [7, 8, 9]
    assert [r.text for r in a[0]] != [r.text for r in free.sample(prompts, seed=100)[0]]
    titles = ["Heat", "Alien", "Toy Story", "Fargo", "Babe"]
    trie = TitleTrie(titles, backend.tokenizer)
    constrained = RolloutSampler(backend, n=4, seed=3, trie=trie)
    c1, c2 = constrained.sample(prompts), constrained.sample(prompts)
    assert [[(r.item, r.token_ids) for r in row] for row in c1] == [[(r.item, r.token_ids) for r in row] for row in c2]
    for row in c1:
        for r in row:
            assert 0 <= r.item < len(titles) and r.text == titles[r.item]


def test_http_backend_samples_and_refuses_beam_search(llm_server, tiny_checkpoint):
    from trustrec.models.llm import OpenAIBackend

    http = OpenAIBackend(llm_server, model="tiny-smollm2-random", timeout_s=30.0, max_retries=0)
    local = LocalBackend(str(tiny_checkpoint), batch_size=4)
    rows = RolloutSampler(http, n=2, max_new_tokens=4, seed=5).sample(["I watched Heat and"])
    assert len(rows[0]) == 2 and rows[0][0].token_ids is None
    again = RolloutSampler(http, n=2, max_new_tokens=4, seed=5).sample(["I watched Heat and"])
    assert [r.text for r in rows[0]] == [r.text for r in again[0]]
    want = local.sample(["I watched Heat and"], 2, 4, seed=5)
    assert [r.text for r in rows[0]] == want[0]  # the test server runs the same model
    with pytest.raises(ConfigError, match="no beam search"):
        http.beam_search(["x"], 2, 4)
    with pytest.raises(ConfigError, match="trie-constrained"):
        http.constrained_beam_search(["x"], None, num_beams=2, top_k=2)
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        http.sample(["x"], 0, 4)


def test_generative_generation_goes_through_its_backend(tiny_checkpoint):
    from trustrec.data import split_leave_one_out
    from trustrec.models import FitOptions
    from trustrec.models.llm._generative import GenerativeRecommender
    from trustrec.testing import toy_dataset

    split = split_leave_one_out(toy_dataset(), short_users="train")
    model = GenerativeRecommender(
        model=str(tiny_checkpoint),
        max_history_tokens=48,
        max_train_examples=4,
        batch_size=4,
        num_beams=3,
        epochs=1,
        template={"chat": False},
    ).fit(split, FitOptions(seed=0, progress=False))
    q = split.eval_set("test").queries
    assert isinstance(model.backend, LocalBackend) and model.backend.model is model.lm_
    texts = model.generate_titles(q, 2)

    calls = []

    class Spy(LocalBackend):
        def beam_search(self, *args, **kwargs):
            calls.append("beam")
            return super().beam_search(*args, **kwargs)

        def constrained_beam_search(self, *args, **kwargs):
            calls.append("constrained")
            return super().constrained_beam_search(*args, **kwargs)

    spy = Spy.from_model(model.lm_, model.tokenizer_)
    before = model.recommend(q, 2)
    assert model.use_backend(spy) is model
    assert model.generate_titles(q, 2) == texts
    after = model.recommend(q, 2)
    np.testing.assert_array_equal(before.items, after.items)
    assert calls == ["beam", "constrained"]
    model.use_backend(None)
    assert model.backend is not spy
